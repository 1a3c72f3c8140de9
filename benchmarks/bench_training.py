"""Training throughput on this machine: images/s and megapixels/s of one optimizer step, and
of the blur synthesis that feeds it (issue 16, item 1; results in docs/training.md).

    python benchmarks/bench_training.py [--threads 1 2] [--steps 20] [--out benchmarks/results/training-cpu.json]

For each preset (stage 1: nafnet-small-router, every parameter trained, L1 + CE; stage 2:
demoe-small, every parameter trained, dense softmax mixture or label routing), precision (fp32
or bf16 autocast) and memory format (NCHW or channels_last), a step is the trainer's: forward
under autocast, loss in fp32, backward, AdamW (fp32 master weights). Batch 8 of 128x128 crops
by default. The data side is measured separately: synthetic pairs per second of
`SyntheticBlurDataset` (all five blur types in turn) in one process.

On a CPU without native bf16 (no AVX-512-BF16 / AMX, e.g. an AVX2-only machine) bf16 autocast is
emulated and an order of magnitude slower; its rows are still measured, with one step after
one warm-up step, so that the table shows why `runtime.precision: auto` picks fp32 there.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch
from torch.nn import functional as F

from demoe import create_model
from demoe.data.synthetic import DarkSceneConfig, SynthConfig, SyntheticBlurDataset, shipped_photo_paths
from demoe.train.loop import cpu_has_native_bf16, pixel_loss_value


def step_rate(preset: str, routing: str, precision: str, channels_last: bool, batch: int, crop: int,
              steps: int, warmup: int = 3) -> float:
    """Optimizer steps per second of one training configuration on random data."""
    torch.manual_seed(0)
    model = create_model(preset).train()
    if channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.9))
    blurry = torch.rand(batch, 3, crop, crop)
    sharp = torch.rand(batch, 3, crop, crop)
    labels = torch.arange(batch) % 5
    if channels_last:
        blurry = blurry.contiguous(memory_format=torch.channels_last)
    task = F.one_hot(labels, 5).float() if routing == "label" else "auto"
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    elapsed = 0.0
    for index in range(warmup + steps):
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=dtype, enabled=precision == "bf16"):
            output = model(blurry, task=task)
        loss = pixel_loss_value(output.image.float(), sharp, "psnr")
        if output.router_logits is not None:
            loss = loss + 0.1 * F.cross_entropy(output.router_logits.float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if index >= warmup:
            elapsed += time.perf_counter() - start
    return steps / elapsed


def synthesis_rate(crop: int, items: int, dark_scenes: float) -> float:
    """Synthetic training pairs per second in one process (all blur types in turn)."""
    config = SynthConfig(dark_scene=DarkSceneConfig(probability=dark_scenes))
    dataset = SyntheticBlurDataset(shipped_photo_paths(), crop_size=crop, length=items, config=config)
    for index in range(len(dataset.image_paths)):
        dataset._photo(index)  # decode once, as the trainer's cache does
    start = time.perf_counter()
    for index in range(items):
        dataset[index]
    return items / (time.perf_counter() - start)


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux), else what platform knows."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--out", default="benchmarks/results/training-cpu.json")
    args = parser.parse_args()
    configs = [
        ("nafnet-small-router", "stage 1", "dense"),
        ("demoe-small", "stage 2 dense", "dense"),
        ("demoe-small", "stage 2 label routing", "label"),
    ]
    native_bf16 = cpu_has_native_bf16()
    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        for preset, stage, routing in configs:
            for precision, channels_last in (("fp32", False), ("fp32", True), ("bf16", True)):
                emulated = precision == "bf16" and not native_bf16
                steps, warmup = (1, 1) if emulated else (args.steps, 3)
                rate = step_rate(preset, routing, precision, channels_last, args.batch, args.crop, steps, warmup)
                images = rate * args.batch
                row = {
                    "preset": preset, "stage": stage, "threads": threads, "precision": precision,
                    "memory_format": "channels_last" if channels_last else "NCHW",
                    "steps_per_s": round(rate, 3), "images_per_s": round(images, 2),
                    "megapixels_per_s": round(images * args.crop**2 / 1e6, 3), "steps": steps,
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
    torch.set_num_threads(1)
    synthesis = {
        "pairs_per_s_one_process": round(synthesis_rate(args.crop, 100, 0.0), 2),
        "pairs_per_s_one_process_dark_scenes_0.25": round(synthesis_rate(args.crop, 100, 0.25), 2),
    }
    print(json.dumps(synthesis))
    result = {
        "machine": cpu_model(),
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "native_bf16": native_bf16,
        "batch": args.batch, "crop": args.crop, "steps": args.steps,
        "runs": rows, "synthesis": synthesis,
    }
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
