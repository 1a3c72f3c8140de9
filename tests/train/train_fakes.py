"""A tiny in-memory stand-in for demoe.data's training datasets (same item dict, same
determinism in (seed, epoch, index)), so training tests need no image files."""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch
from torch.nn import functional as F

from demoe.config import TASK_NAMES


SCRIPT = Path(__file__).with_name("train_script.py")  # runs a FakePairs training in a process
SRC = Path(__file__).resolve().parents[2] / "src"


def subprocess_env() -> dict:
    """Environment for training subprocesses: this checkout's package, one thread per process."""
    python_path = f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=python_path)


class FakePairs:
    """Random smooth images and a blurred copy; label cycles through the five tasks."""

    def __init__(self, length: int = 16, crop_size: int = 32, seed: int = 0, delay: float = 0.0) -> None:
        self.length = length
        self.crop_size = crop_size
        self.seed = seed
        self.delay = delay  # seconds per item (lets a test kill a run mid-way)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        if self.delay:
            time.sleep(self.delay)
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch * 10_007 + index)
        size = self.crop_size
        coarse = torch.rand(1, 3, size // 4, size // 4, generator=generator)
        sharp = F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
        sharp = (sharp + 0.1 * torch.rand(1, 3, size, size, generator=generator)).clamp(0, 1)
        blurry = F.avg_pool2d(F.pad(sharp, (2, 2, 2, 2), mode="replicate"), 5, stride=1)
        label = index % len(TASK_NAMES)
        return {
            "blurry": blurry[0],
            "sharp": sharp[0],
            "label": torch.tensor(label, dtype=torch.int64),
            "dataset": "fake_a" if index % 2 == 0 else "fake_b",
        }


def tiny_config(**sections) -> dict:
    """A plain config dict for a tiny, quick run (data comes from FakePairs, passed directly)."""
    values = {
        "stage": "pretrain",
        "model": {"preset": "nafnet-tiny-router"},
        "data": {"train": {"kind": "synthetic", "photos": "unused", "crop_size": 32}},
        "train": {"batch_size": 4, "total_steps": 4, "num_workers": 0},
        "runtime": {"device": "cpu"},
        "log": {"save_every": 2, "log_every": 1, "validate_every": 0, "progress": False, "tensorboard": False},
    }
    for name, overrides in sections.items():
        if isinstance(overrides, dict):
            values[name] = {**values.get(name, {}), **overrides}
        else:
            values[name] = overrides
    return values
