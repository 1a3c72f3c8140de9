"""Validation during training: PSNR/SSIM per source dataset and router accuracy.

Kept minimal and private to training (the benchmark metrics live in demoe.evaluation).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field

import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader

from demoe.model import DeblurUNet


def psnr(restored: torch.Tensor, sharp: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB for images in [0, 1]. Shape: (B, C, H, W) x 2 -> (B,)."""
    mse = (restored - sharp).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(1 / mse.clamp_min(1e-10))


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    kernel = torch.exp(-(coords**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    return torch.outer(kernel, kernel)  # (size, size)


def ssim(restored: torch.Tensor, sharp: torch.Tensor) -> torch.Tensor:
    """Per-image SSIM (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5, valid region,
    mean over channels) for images in [0, 1]. Shape: (B, C, H, W) x 2 -> (B,)."""
    channels = restored.shape[1]
    window = _gaussian_window().to(restored)
    window = window.expand(channels, 1, *window.shape)  # (C, 1, 11, 11)
    x, y = restored.double(), sharp.double()
    window = window.double()

    def blur(image: torch.Tensor) -> torch.Tensor:
        return F.conv2d(image, window, groups=channels)

    c1, c2 = 0.01**2, 0.03**2
    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    numerator = (2 * mu_x * mu_y + c1) * (2 * cov + c2)
    denominator = (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    return (numerator / denominator).flatten(1).mean(1).to(restored.dtype)


@dataclass
class ValidationResult:
    psnr: dict[str, float]  # per source dataset
    ssim: dict[str, float]
    router_accuracy: float | None  # fraction of images whose blur type the router gets right
    count: int
    psnr_by_task: dict[str, float] = field(default_factory=dict)  # per blur type (label)
    input_psnr_by_task: dict[str, float] = field(default_factory=dict)  # blurry input vs sharp
    samples: list[torch.Tensor] = field(default_factory=list)  # (3, S, 3S): blurry|restored|sharp

    def scalars(self) -> dict[str, float]:
        values = {}
        for name in sorted(self.psnr):
            values[f"val/psnr/{name}"] = self.psnr[name]
            values[f"val/ssim/{name}"] = self.ssim[name]
        for task in sorted(self.psnr_by_task):
            values[f"val/psnr_task/{task}"] = self.psnr_by_task[task]
            if task in self.input_psnr_by_task:
                values[f"val/gain_task/{task}"] = self.psnr_by_task[task] - self.input_psnr_by_task[task]
        values["val/psnr"] = _mean(self.psnr.values())
        values["val/ssim"] = _mean(self.ssim.values())
        if self.router_accuracy is not None:
            values["val/router_accuracy"] = self.router_accuracy
        return values


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values) if values else math.nan


@torch.no_grad()
def validate(
    model: DeblurUNet,
    loader: DataLoader,
    device: torch.device,
    autocast_dtype: torch.dtype | None,
    num_samples: int = 0,
) -> ValidationResult:
    """Run the model in eval mode (its default top-k routing) over the loader; PSNR/SSIM on
    outputs clamped to [0, 1], averaged per source dataset and per blur type.

    Leaves the model in eval mode; the training loop restores its own modes.
    """
    model.eval()
    psnr_sums: dict[str, float] = defaultdict(float)
    ssim_sums: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    task_sums: dict[str, float] = defaultdict(float)
    task_counts: dict[str, int] = defaultdict(int)
    input_sums: dict[str, float] = defaultdict(float)
    correct = total = 0
    samples: list[torch.Tensor] = []
    for batch in loader:
        blurry = batch["blurry"].to(device)
        sharp = batch["sharp"].to(device).float()
        with torch.autocast(device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
            output = model(blurry)
        restored = output.image.float().clamp(0, 1)
        batch_psnr = psnr(restored, sharp).cpu()
        batch_ssim = ssim(restored, sharp).cpu()
        input_psnr = psnr(blurry.float().clamp(0, 1), sharp).cpu()
        for index, name in enumerate(batch["dataset"]):
            psnr_sums[name] += float(batch_psnr[index])
            ssim_sums[name] += float(batch_ssim[index])
            counts[name] += 1
            task = model.task_names[int(batch["label"][index])]
            task_sums[task] += float(batch_psnr[index])
            input_sums[task] += float(input_psnr[index])
            task_counts[task] += 1
        if output.router_logits is not None:
            predicted = output.router_logits.argmax(1).cpu()
            correct += int((predicted == batch["label"]).sum())
            total += predicted.numel()
        for index in range(min(num_samples - len(samples), blurry.shape[0])):
            row = torch.cat([blurry[index].float().clamp(0, 1), restored[index], sharp[index]], dim=2)
            samples.append(row.cpu())
    return ValidationResult(
        psnr={name: psnr_sums[name] / counts[name] for name in counts},
        ssim={name: ssim_sums[name] / counts[name] for name in counts},
        router_accuracy=correct / total if total else None,
        count=sum(counts.values()),
        psnr_by_task={task: task_sums[task] / task_counts[task] for task in task_counts},
        input_psnr_by_task={task: input_sums[task] / task_counts[task] for task in task_counts},
        samples=samples,
    )
