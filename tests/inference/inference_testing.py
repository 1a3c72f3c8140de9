"""Shared helpers of the inference tests: tiny random models and synthetic photographs.

(A module with a unique name rather than a conftest.py, so that `from conftest import ...` in
other test folders keeps resolving to tests/conftest.py.)
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import numpy as np
import torch

import demoe
from demoe.model import DeblurUNet
from random_weights import randomize_


def random_model(preset: str = "demoe-tiny", residual_std: float = 0.05, seed: int = 0) -> DeblurUNet:
    """A model of `preset` with every weight random (so every block and expert is active), and
    the last conv scaled so that the restoration differs from the input by about
    `residual_std` (like a trained deblurring network; unscaled random nets saturate)."""
    model = randomize_(demoe.create_model(preset), seed=seed)
    with torch.no_grad():
        model.eval()
        probe = torch.from_numpy(photo(64, 64, 3, seed=seed)).permute(2, 0, 1)[None]
        residual = model(probe).image - probe
        scale = residual_std / float(residual.std())
        model.ending.weight.mul_(scale)
        model.ending.bias.mul_(scale)
    return model


@functools.cache
def _cached_state(preset: str) -> dict:
    return random_model(preset).state_dict()


def tiny_model(preset: str = "demoe-tiny") -> DeblurUNet:
    """A fresh copy of the cached random model of `preset` (eval mode)."""
    model = demoe.create_model(preset)
    model.load_state_dict(_cached_state(preset))
    return model.eval()


def photo(height: int, width: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    """A deterministic photo-like (H, W, C) float32 image in [0, 1]: smooth gradients, edges
    and fine texture."""
    rng = np.random.default_rng(seed)
    rows = np.linspace(0, 1, height, dtype=np.float32)[:, None]
    cols = np.linspace(0, 1, width, dtype=np.float32)[None, :]
    planes = []
    for c in range(channels):
        phase = rng.uniform(0, 2 * np.pi)
        base = 0.5 + 0.3 * np.sin(6 * rows + 4 * cols * (c + 1) + phase)
        edges = 0.15 * ((rows * 5 + cols * 3 + c) % 1.0 > 0.5)
        texture = 0.05 * rng.standard_normal((height, width))
        planes.append(base + edges + texture)
    return np.clip(np.stack(planes, axis=2), 0, 1).astype(np.float32)


def quantized(image: np.ndarray, dtype) -> np.ndarray:
    peak = 255 if np.dtype(dtype) == np.uint8 else 65535
    return np.round(image * peak).astype(dtype)


def file_hash(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def tree_hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): file_hash(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def psnr(first: np.ndarray, second: np.ndarray, peak: float = 1.0) -> float:
    mse = float(np.mean((np.asarray(first, np.float64) - np.asarray(second, np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(peak**2 / mse)
