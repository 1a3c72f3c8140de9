"""Model cost: parameters, multiply-accumulates and latency (Table 1's cost column).

MACs are counted with `torch.utils.flop_counter` (convolutions and matrix products: every
multiply-accumulate of conv/linear layers); element-wise work (norms, gates, activations,
pooling, additions) is not counted. That is why DeMoE at 256x256 with top-1 counts 10.84 G
here and 11.05 G in the paper, whose counter also charges those operations.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from demoe.config import ModelConfig
from demoe.model import DeblurUNet, build_model


@dataclass(frozen=True)
class Cost:
    params: int  # all parameters
    macs_g: float  # multiply-accumulates (conv + linear), in billions
    latency_ms: float  # median wall time of one forward pass

    def to_dict(self) -> dict:
        return asdict(self)


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _forward(model: DeblurUNet, x: torch.Tensor, top_k: int | None, task: str):
    if model.config.is_moe:
        return model(x, task=task, top_k=top_k if task == "auto" else None)
    return model(x)


def count_macs(model: DeblurUNet, size: int = 256, top_k: int | None = 1, task: str = "auto") -> float:
    """Multiply-accumulates (in G) of one forward pass on a (1, 3, size, size) input."""
    model = model.eval()
    x = torch.rand(1, model.config.image_channels, size, size)
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        _forward(model, x, top_k, task)
    return counter.get_total_flops() / 2 / 1e9  # the counter reports 2 FLOPs per MAC


def macs_by_operator(config: ModelConfig, size: int = 256) -> dict[str, float]:
    """Multiply-accumulates (in G) of one forward pass on a (1, 3, size, size) input, per
    operator kind: "conv" (convolutions), "linear" (fully connected layers), "matmul" (matrix
    products of activations: attention maps, einsum mixing). Traced on the meta device, so a
    100 M-parameter network costs neither memory nor compute. MoE models run top-1 (the
    first expert; every expert of a block has the same cost)."""
    with torch.device("meta"):
        model = build_model(config).eval()
    x = torch.empty(1, config.image_channels, size, size, device="meta")
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(x, task=config.task_names[0]) if config.is_moe else model(x)
    kinds = {"convolution": "conv", "mm": "linear", "addmm": "linear", "bmm": "matmul", "baddbmm": "matmul"}
    macs = {"conv": 0.0, "linear": 0.0, "matmul": 0.0}
    for operator, flops in counter.get_flop_counts()["Global"].items():
        name = str(operator).split(".")[1]  # aten.convolution.default -> convolution
        macs[kinds.get(name, "matmul")] += flops / 2 / 1e9
    return macs


def count_macs_of_config(config: ModelConfig, size: int = 256) -> float:
    """`count_macs` of a freshly built model of `config` (top-1), without building it in memory."""
    return sum(macs_by_operator(config, size).values())


def count_parameters_of_config(config: ModelConfig) -> int:
    """Parameters of the network of `config`, counted on the meta device (nothing allocated)."""
    with torch.device("meta"):
        return count_parameters(build_model(config))


def measure_latency_ms(
    model: DeblurUNet,
    size: int = 256,
    top_k: int | None = 1,
    task: str = "auto",
    batch: int = 1,
    warmup: int = 3,
    repeats: int = 10,
    device: str | torch.device = "cpu",
) -> float:
    """Median wall time (ms) of a forward pass on (batch, 3, size, size) random input."""
    model = model.eval().to(device)
    x = torch.rand(batch, model.config.image_channels, size, size, device=device)
    times = []
    with torch.inference_mode():
        for step in range(warmup + repeats):
            if torch.device(device).type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            _forward(model, x, top_k, task)
            if torch.device(device).type == "cuda":
                torch.cuda.synchronize()
            if step >= warmup:
                times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def measure_cost(model: DeblurUNet, size: int = 256, top_k: int | None = 1, repeats: int = 10) -> Cost:
    return Cost(
        params=count_parameters(model),
        macs_g=count_macs(model, size, top_k),
        latency_ms=measure_latency_ms(model, size, top_k, repeats=repeats),
    )
