"""A synthetic test or training set on disk: blurry/sharp pairs of every blur type from a
folder of sharp photographs, and their manifest (what `demoe data synth` writes).

Layout: OUT_DIR/<task>/{blur,sharp}/NAME_KKK.png (local_motion also mask/NAME_KKK.png) and
OUT_DIR/manifest.jsonl. NAME is the photograph's path under the folder with "_" for "/";
KKK the copy. Every file is written atomically (a temporary file, then a rename), so an
interrupted run leaves whole files only.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from demoe.config import TASK_NAMES
from demoe.data.manifest import SPLITS, PairRecord, write_manifest
from demoe.data.synthetic.config import SynthConfig
from demoe.data.synthetic.dataset import load_photo, sharp_image_paths, synthesize_crop
from demoe.imageio import from_float, write_image, write_rgb_float

# A blurry pixel counts as moving-object when the object covers at least this much of it
# (it can change the 8-bit value from there on).
MASK_THRESHOLD = 1.0 / 255.0
MANIFEST_NAME = "manifest.jsonl"


@dataclass(frozen=True)
class PairSettings:
    """What is synthesised from each photograph."""

    tasks: tuple[str, ...] = TASK_NAMES  # blur types, each a subset of TASK_NAMES
    per_image: int = 1  # pairs per photograph and blur type
    seed: int = 0  # pair (photo p, copy k, task t) is drawn with seed (seed, p, k, TASK_NAMES.index(t))
    crop: int = 0  # side of a square random crop (with random flips); 0 = the whole photograph
    split: str = "train"  # split written in the manifest
    max_side: int = 0  # photographs with a longer side first shrink to it (INTER_AREA); 0 = keep
    config: SynthConfig = SynthConfig()  # parameter ranges of the blur models

    def __post_init__(self) -> None:
        unknown = [task for task in self.tasks if task not in TASK_NAMES]
        if not self.tasks or unknown:
            raise ValueError(f"tasks must be a non-empty subset of {', '.join(TASK_NAMES)}; got {self.tasks}")
        for name, low in (("per_image", 1), ("seed", 0), ("crop", 0), ("max_side", 0)):
            if getattr(self, name) < low:
                raise ValueError(f"{name} must be >= {low}, got {getattr(self, name)}")
        if self.split not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {self.split!r}")


@dataclass(frozen=True)
class SyntheticSet:
    """What `write_synthetic_set` wrote."""

    records: list[PairRecord]  # one per pair, in the manifest's order
    photos: int  # photographs used
    manifest: Path


def photo_names(sharp_dir: str | os.PathLike, paths: Sequence[Path]) -> list[str]:
    """The output name of each photograph: its path under `sharp_dir` without suffix, "/" -> "_".
    ValueError when two photographs get the same name (a.png and a.jpg)."""
    names = ["_".join(path.relative_to(sharp_dir).with_suffix("").parts) for path in paths]
    if len(set(names)) != len(names):
        raise ValueError("two photographs map to the same output name; rename them")
    return names


def write_synthetic_set(
    sharp_dir: str | os.PathLike, out_dir: str | os.PathLike, settings: PairSettings = PairSettings(), progress: bool = True
) -> SyntheticSet:
    """Synthesise every pair from the photographs under `sharp_dir` (searched recursively) and
    write them and their manifest under `out_dir`.

    FileNotFoundError when `sharp_dir` is not a folder; ValueError when it holds no image or two
    photographs would share an output name.
    """
    sharp_dir, out_dir = Path(sharp_dir), Path(out_dir)
    paths = sharp_image_paths(sharp_dir)
    if not paths:
        raise ValueError(f"no images (png, jpg, bmp, tif, webp) under {sharp_dir}")
    names = photo_names(sharp_dir, paths)
    records = write_pairs(paths, names, out_dir, settings, progress)
    return SyntheticSet(records, len(paths), write_manifest(out_dir / MANIFEST_NAME, records))


def write_pairs(
    paths: Sequence[Path], names: Sequence[str], out_dir: Path, settings: PairSettings, progress: bool = True
) -> list[PairRecord]:
    """Synthesise and write every pair of the photographs `paths` (output names `names`);
    pair (photo p, copy k, task t) is drawn from a generator seeded with (seed, p, k,
    TASK_NAMES index of t), so it does not depend on the other tasks chosen."""
    records = []
    total = len(paths) * settings.per_image * len(settings.tasks)
    with tqdm(total=total, unit="pair", desc="synth", disable=not progress) as bar:
        for photo_index, (path, name) in enumerate(zip(paths, names)):
            photo = shrink(load_photo(path), settings.max_side)
            for copy in range(settings.per_image):
                for task in settings.tasks:
                    rng = np.random.default_rng((settings.seed, photo_index, copy, TASK_NAMES.index(task)))
                    records.append(_write_pair(photo, task, rng, out_dir, f"{name}_{copy:03d}", settings))
                    bar.update()
    return records


def _write_pair(
    photo: np.ndarray, task: str, rng: np.random.Generator, out_dir: Path, stem: str, settings: PairSettings
) -> PairRecord:
    sample = synthesize_crop(photo, task, rng, settings.crop, settings.config, flips=settings.crop > 0)
    blurry_path = out_dir / task / "blur" / f"{stem}.png"
    sharp_path = out_dir / task / "sharp" / f"{stem}.png"
    write_rgb_float(blurry_path, sample.blurry)
    write_rgb_float(sharp_path, sample.sharp)
    mask_path = None
    if sample.mask is not None:
        mask_path = out_dir / task / "mask" / f"{stem}.png"
        write_image(mask_path, from_float((sample.mask >= MASK_THRESHOLD).astype(np.float32), np.uint8))
    return PairRecord(
        str(blurry_path), str(sharp_path), task, "synthetic", settings.split, None if mask_path is None else str(mask_path)
    )


def shrink(photo: np.ndarray, max_side: int) -> np.ndarray:
    """(H, W, 3) photograph with its longer side shrunk to `max_side` (INTER_AREA); max_side 0
    or a smaller photograph: unchanged."""
    height, width = photo.shape[:2]
    if max_side == 0 or max(height, width) <= max_side:
        return photo
    scale = max_side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(photo, size, interpolation=cv2.INTER_AREA).reshape(size[1], size[0], photo.shape[2])
