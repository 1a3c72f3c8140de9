"""Synthetic blur on the fly: sharp photographs in, (blurry, sharp, label) crops out."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from demoe.config import TASK_NAMES
from demoe.data.synthetic.camera import quantize
from demoe.data.synthetic.config import SynthConfig
from demoe.data.synthetic.generator import SynthSample, synthesize_sample
from demoe.imageio import IMAGE_SUFFIXES, as_rgb, read_array, to_float



def sharp_image_paths(folder: str | os.PathLike, recursive: bool = True) -> list[Path]:
    """Image files (by suffix, `demoe.imageio.IMAGE_SUFFIXES`) under `folder`, sorted;
    hidden files and folders are skipped."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"not a folder of sharp photographs: {folder}")
    candidates = folder.rglob("*") if recursive else folder.iterdir()
    paths = []
    for path in candidates:
        relative = path.relative_to(folder)
        if any(part.startswith(".") for part in relative.parts):
            continue
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
            paths.append(path)
    return sorted(paths)


def shipped_photo_paths() -> list[Path]:
    """The small public-domain / CC0 photographs shipped with demoe (see their README)."""
    folder = Path(str(resources.files("demoe") / "assets" / "photos"))
    return sharp_image_paths(folder, recursive=False)


def load_photo(path: str | os.PathLike) -> np.ndarray:
    """A photograph as stored, as RGB: (H, W, 3) uint8 or uint16 (grey is repeated)."""
    pixels = as_rgb(read_array(path))
    if pixels.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"{path}: unsupported pixel type {pixels.dtype}; expected 8- or 16-bit")
    return np.ascontiguousarray(pixels)


def ensure_min_side(photo: np.ndarray, min_side: int) -> np.ndarray:
    """Upsample (bicubic) a photograph whose shorter side is below `min_side` so that it
    reaches it; larger photographs are returned as they are."""
    height, width = photo.shape[:2]
    if min(height, width) >= min_side:
        return photo
    scale = min_side / min(height, width)
    size = (max(min_side, int(np.ceil(width * scale))), max(min_side, int(np.ceil(height * scale))))
    resized = cv2.resize(photo, size, interpolation=cv2.INTER_CUBIC)
    return resized.reshape(size[1], size[0], photo.shape[2])


def synthesize_crop(
    photo: np.ndarray,
    task: str,
    rng: np.random.Generator,
    crop_size: int,
    config: SynthConfig,
    flips: bool = True,
) -> SynthSample:
    """A random `crop_size` square pair from a photograph: a crop enlarged by the task's blur
    margin is blurred, then its centre is kept, so no blur reaches in from beyond the image.

    Args:
        photo: (H, W, 3) uint8/uint16 or float in [0, 1], sRGB; upsampled if too small.
        crop_size: side of the result; 0 = the whole photograph (borders are mirrored).
        flips: random horizontal and vertical flips (applied before blurring).
    Returns: a `SynthSample` of (crop_size, crop_size, 3) float32 arrays.
    """
    if crop_size < 0:
        raise ValueError(f"crop_size must be >= 0, got {crop_size}")
    if crop_size == 0:
        region, margin = photo, 0
    else:
        margin = config.margin_px(task, crop_size)
        side = crop_size + 2 * margin
        photo = ensure_min_side(photo, side)
        top = int(rng.integers(0, photo.shape[0] - side + 1))
        left = int(rng.integers(0, photo.shape[1] - side + 1))
        region = photo[top : top + side, left : left + side]
    if flips and rng.random() < 0.5:
        region = region[:, ::-1]
    if flips and rng.random() < 0.5:
        region = region[::-1]
    sample = synthesize_sample(to_float(np.ascontiguousarray(region)), task, rng, config)
    if margin == 0:
        return sample
    inner = (slice(margin, margin + crop_size), slice(margin, margin + crop_size))
    return SynthSample(
        blurry=np.ascontiguousarray(sample.blurry[inner]),
        sharp=np.ascontiguousarray(sample.sharp[inner]),
        mask=None if sample.mask is None else np.ascontiguousarray(sample.mask[inner]),
    )


def check_synthesis_arguments(crop_size: int, tasks: Sequence[str], seed: int, length: int | None) -> tuple[str, ...]:
    """The arguments every synthetic-blur source shares, checked; the tasks as a tuple."""
    if crop_size < 1:
        raise ValueError(f"crop_size must be >= 1, got {crop_size}")
    tasks = tuple(tasks)
    unknown = [task for task in tasks if task not in TASK_NAMES]
    if not tasks or unknown:
        raise ValueError(f"tasks must be a non-empty subset of {', '.join(TASK_NAMES)}; got {tasks}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if length is not None and length < 1:
        raise ValueError(f"length must be >= 1 or None, got {length}")
    return tasks


class SyntheticBlurDataset(Dataset):
    """Pairs of all blur types synthesised on the fly from sharp photographs.

    Item `i` of an epoch has task `tasks[i % len(tasks)]` and photograph
    `image_paths[(i // len(tasks)) % len(image_paths)]`; its crop position, flips and blur
    parameters come from a generator seeded with `(seed, epoch, i)`, so an item is the same
    whenever it is asked for again (in any worker, after a resume) and changes with the epoch.
    Decoded photographs are cached in memory (they are expected to be few).

    Item: dict(blurry=(3, S, S) float32 tensor in [0, 1] on 8-bit levels, sharp=(3, S, S),
    label=int64 scalar tensor (index in `demoe.config.TASK_NAMES`), dataset="synthetic"). The
    blurry image is quantised to 8 bits as users' photographs are: left continuous for some
    blur types only, quantisation would tell the router which (docs/synthetic-blur.md).

    Example:
        >>> from demoe.data.synthetic import SyntheticBlurDataset, shipped_photo_paths
        >>> dataset = SyntheticBlurDataset(shipped_photo_paths(), crop_size=64)
        >>> item = dataset[0]
        >>> item["blurry"].shape, item["label"].item()
        (torch.Size([3, 64, 64]), 0)
    """

    def __init__(
        self,
        image_paths: Sequence[str | os.PathLike],
        crop_size: int = 128,
        tasks: Sequence[str] = TASK_NAMES,
        seed: int = 0,
        length: int | None = None,
        config: SynthConfig | None = None,
    ) -> None:
        if isinstance(image_paths, (str, os.PathLike)):
            raise TypeError("image_paths must be a sequence of image files; list a folder with sharp_image_paths()")
        self.image_paths = [Path(path) for path in image_paths]
        if not self.image_paths:
            raise ValueError("image_paths is empty: no sharp photographs to synthesise from")
        tasks = check_synthesis_arguments(crop_size, tasks, seed, length)
        self.crop_size = crop_size
        self.tasks = tasks
        self.seed = seed
        self.length = len(self.image_paths) * len(tasks) if length is None else length
        self.config = SynthConfig() if config is None else config
        self.epoch = 0
        self._photos: dict[int, np.ndarray] = {}

    def set_epoch(self, epoch: int) -> None:
        """Select the random draws of `epoch` (call before each epoch, as with DistributedSampler)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.length

    def _photo(self, index: int) -> np.ndarray:
        if index not in self._photos:
            self._photos[index] = load_photo(self.image_paths[index])
        return self._photos[index]

    def __getitem__(self, index: int) -> dict:
        if not -self.length <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} items")
        index %= self.length
        task = self.tasks[index % len(self.tasks)]
        photo = self._photo((index // len(self.tasks)) % len(self.image_paths))
        rng = np.random.default_rng((self.seed, self.epoch, index))
        sample = synthesize_crop(photo, task, rng, self.crop_size, self.config)
        return {
            "blurry": torch.from_numpy(quantize(sample.blurry).transpose(2, 0, 1).copy()),  # (3, S, S)
            "sharp": torch.from_numpy(sample.sharp.transpose(2, 0, 1).copy()),  # (3, S, S)
            "label": torch.tensor(TASK_NAMES.index(task), dtype=torch.int64),
            "dataset": "synthetic",
        }
