"""Training datasets over manifest records.

`PairedCropDataset` returns, for index i, a random crop of one blurry/sharp pair with random
horizontal and vertical flips, the same crop and flips for both images:

    {"blurry": (3, S, S) float32 tensor in [0, 1], "sharp": (3, S, S) float32 tensor in [0, 1],
     "label": int64 scalar tensor (index of the task in TASK_NAMES), "dataset": str}

The random parameters are drawn from a generator seeded by (seed, epoch, i) only, so item i of
epoch e is the same in every run, in any worker process and after resuming from a checkpoint
(call `set_epoch(e)` before iterating, as with DistributedSampler). An image smaller than the
crop in a dimension is first padded to the crop size by reflection (symmetric about the image
border, numpy's "reflect" mode, the padding split between both sides), so small images still
give full crops without black borders.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from torch.utils.data import Dataset

from demoe.data.manifest import PairRecord, read_manifest
from demoe.imageio import read_rgb_float


class PairedCropDataset(Dataset):
    """Random paired crops (default 384x384) with paired flips of manifest records."""

    def __init__(self, records: list[PairRecord], crop_size: int = 384, seed: int = 0) -> None:
        if crop_size < 1:
            raise ValueError(f"crop_size must be >= 1, got {crop_size}")
        unpaired = [record.blurry for record in records if record.sharp is None]
        if unpaired:
            raise ValueError(
                f"PairedCropDataset needs blurry/sharp pairs; {len(unpaired)} record(s) have no sharp "
                f"image (first: {unpaired[0]})"
            )
        self.records = list(records)
        self.crop_size = crop_size
        self.seed = seed
        self.epoch = 0

    @classmethod
    def from_manifest(
        cls, path: str | os.PathLike, split: str = "train", crop_size: int = 384, seed: int = 0
    ) -> PairedCropDataset:
        """The records of one split of a manifest file."""
        records = [record for record in read_manifest(path) if record.split == split]
        if not records:
            raise ValueError(f"manifest {path} has no records of split {split!r}")
        return cls(records, crop_size=crop_size, seed=seed)

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation of `epoch` (the same epoch always gives the same items)."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self.records):
            raise IndexError(f"index {index} out of range for {len(self.records)} records")
        record = self.records[index]
        blurry = read_rgb_float(record.blurry)  # (H, W, 3) float32 in [0, 1]
        sharp = read_rgb_float(record.sharp)
        if blurry.shape != sharp.shape:
            raise ValueError(
                f"blurry {record.blurry} is {blurry.shape[1]}x{blurry.shape[0]} but sharp {record.sharp} "
                f"is {sharp.shape[1]}x{sharp.shape[0]}; a pair must have one size"
            )
        crop = draw_crop(np.random.default_rng([self.seed, self.epoch, index]))
        return {
            "blurry": _to_tensor(apply_crop(blurry, crop, self.crop_size)),
            "sharp": _to_tensor(apply_crop(sharp, crop, self.crop_size)),
            "label": torch.tensor(record.label, dtype=torch.int64),
            "dataset": record.dataset,
        }


def draw_crop(rng: np.random.Generator) -> tuple[float, float, bool, bool]:
    """Random crop parameters, drawn once per pair: (top, left) as fractions in [0, 1) of the
    free range, horizontal flip, vertical flip."""
    top, left = rng.random(2)
    horizontal_flip, vertical_flip = rng.random(2) < 0.5
    return float(top), float(left), bool(horizontal_flip), bool(vertical_flip)


def apply_crop(image: np.ndarray, crop: tuple[float, float, bool, bool], crop_size: int) -> np.ndarray:
    """(H, W, C) -> (S, S, C): reflect-pad to at least S, cut the crop, flip."""
    image = pad_to_size(image, crop_size)
    top_fraction, left_fraction, horizontal_flip, vertical_flip = crop
    height, width = image.shape[:2]
    top = int(top_fraction * (height - crop_size + 1))
    left = int(left_fraction * (width - crop_size + 1))
    patch = image[top : top + crop_size, left : left + crop_size]
    if horizontal_flip:
        patch = patch[:, ::-1]
    if vertical_flip:
        patch = patch[::-1]
    return patch


def pad_to_size(image: np.ndarray, size: int) -> np.ndarray:
    """Reflect-pad (H, W, C) so that H, W >= size (split between both sides; unchanged if large)."""
    pad_height = max(0, size - image.shape[0])
    pad_width = max(0, size - image.shape[1])
    if pad_height == 0 and pad_width == 0:
        return image
    # numpy's "reflect" cannot mirror a single row or column; repeat it instead.
    mode = "reflect" if min(image.shape[:2]) > 1 else "edge"
    padding = ((pad_height // 2, pad_height - pad_height // 2), (pad_width // 2, pad_width - pad_width // 2), (0, 0))
    return np.pad(image, padding, mode=mode)


def _to_tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))  # (3, S, S)
