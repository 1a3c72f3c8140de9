"""Scoring a folder of restored images against a folder of ground truths (`demoe metrics`),
or on its own with no-reference metrics (NIQE, MUSIQ, NRQM) when there is no ground truth.

Pairs are matched by file name without extension (relative path inside the folder, so nested
folders work too): `restored/0001.png` pairs with `sharp/0001.tif`. Every file must have a
partner; images are read at their stored bit depth (8 or 16 bit) by `demoe.imageio`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from demoe.evaluation.lpips import LPIPS, lpips_distance
from demoe.evaluation.no_reference import NoReferenceScorer
from demoe.evaluation.protocols import Protocol, evaluate_pair
from demoe.imageio import IMAGE_SUFFIXES, as_rgb, read_array

class PairingError(ValueError):
    """The two folders do not hold the same image names, or a pair differs in size."""


@dataclass(frozen=True)
class ImagePair:
    name: str  # the restored file's path relative to its folder
    restored: Path
    sharp: Path
    mask: Path | None = None


def list_images(directory: str | os.PathLike) -> dict[str, Path]:
    """{relative path without extension: file} of every image under `directory` (sorted)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise PairingError(f"{directory} is not a folder")
    images: dict[str, Path] = {}
    for path in sorted(directory.rglob("*")):
        if path.suffix.lower() not in IMAGE_SUFFIXES or not path.is_file():
            continue
        key = path.relative_to(directory).with_suffix("").as_posix()
        if key in images:
            raise PairingError(f"two images named {key} in {directory}: {images[key].name} and {path.name}")
        images[key] = path
    return images


def _names(keys: Iterable[str], limit: int = 5) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def match_pairs(
    restored_dir: str | os.PathLike, sharp_dir: str | os.PathLike, mask_dir: str | os.PathLike | None = None
) -> list[ImagePair]:
    """Pair images by name; raise PairingError listing the files without a partner."""
    restored, sharp = list_images(restored_dir), list_images(sharp_dir)
    if not restored:
        raise PairingError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {restored_dir}")
    only_restored, only_sharp = restored.keys() - sharp.keys(), sharp.keys() - restored.keys()
    if only_restored or only_sharp:
        problems = []
        if only_restored:
            problems.append(f"{len(only_restored)} restored image(s) without ground truth: {_names(only_restored)}")
        if only_sharp:
            problems.append(f"{len(only_sharp)} ground-truth image(s) without restored image: {_names(only_sharp)}")
        raise PairingError("; ".join(problems))
    masks = list_images(mask_dir) if mask_dir is not None else {}
    if mask_dir is not None and (missing := restored.keys() - masks.keys()):
        raise PairingError(f"{len(missing)} image(s) without a mask in {mask_dir}: {_names(missing)}")
    return [
        ImagePair(
            name=restored[key].relative_to(restored_dir).as_posix(),
            restored=restored[key],
            sharp=sharp[key],
            mask=masks.get(key),
        )
        for key in sorted(restored)
    ]


@dataclass
class FolderScores:
    per_image: list[dict] = field(default_factory=list)  # {"name", "psnr", "ssim", ...} per pair
    mean: dict[str, float] = field(default_factory=dict)  # mean of every numeric field over images
    skipped: dict[str, str] = field(default_factory=dict)  # metric -> why it was not computed

    def to_dict(self) -> dict:
        result = {"per_image": self.per_image, "mean": self.mean}
        if self.skipped:
            result["skipped"] = self.skipped
        return result


def _is_number(value: object) -> bool:
    return isinstance(value, float | int) and not isinstance(value, bool)


def mean_scores(per_image: list[dict]) -> dict[str, float]:
    """Mean over images of each numeric field every image has. A metric an image could not be
    scored with (None, with the reason in `<metric>_error`) leaves that image out of its mean."""
    if not per_image:
        return {}
    keys = [key for key, value in per_image[0].items() if _is_number(value) or value is None]
    means = {}
    for key in keys:
        if not all(key in record for record in per_image):
            continue
        values = [record[key] for record in per_image if _is_number(record[key])]
        if values:
            means[key] = float(np.mean(values))
    return means


def score_folders(
    pairs: list[ImagePair],
    protocol: Protocol,
    lpips_model: LPIPS | None = None,
    no_reference: NoReferenceScorer | None = None,
    progress: bool = True,
) -> FolderScores:
    """Score every pair with `protocol` (see `demoe.evaluation.protocols`), plus LPIPS against
    the ground truth and the no-reference metrics of the restored image when given."""
    scores = FolderScores()
    # disable=None: tqdm shows the bar only when stderr is a terminal
    for pair in tqdm(pairs, desc="metrics", unit="image", disable=None if progress else True):
        restored, sharp = as_rgb(read_array(pair.restored)), as_rgb(read_array(pair.sharp))
        if restored.shape != sharp.shape:
            raise PairingError(
                f"{pair.name}: restored is {restored.shape[1]}x{restored.shape[0]} but "
                f"{pair.sharp.name} is {sharp.shape[1]}x{sharp.shape[0]}"
            )
        mask = read_array(pair.mask) if pair.mask is not None else None
        record: dict = {"name": pair.name}
        record.update(evaluate_pair(restored, sharp, protocol.name, mask=mask, protocol=protocol))
        if lpips_model is not None:
            record["lpips"] = lpips_distance(restored, sharp, lpips_model)
        if no_reference is not None:
            record.update(no_reference(restored))
        scores.per_image.append(record)
    scores.mean = mean_scores(scores.per_image)
    return scores


def score_folder_no_reference(
    restored_dir: str | os.PathLike, no_reference: NoReferenceScorer, progress: bool = True
) -> FolderScores:
    """No-reference metrics of every image under `restored_dir` (sets without ground truth,
    such as Real-LOLBlur)."""
    images = list_images(restored_dir)
    if not images:
        raise PairingError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {restored_dir}")
    scores = FolderScores()
    for path in tqdm(images.values(), desc="metrics", unit="image", disable=None if progress else True):
        record: dict = {"name": path.relative_to(restored_dir).as_posix()}
        record.update(no_reference(as_rgb(read_array(path))))
        scores.per_image.append(record)
    scores.mean = mean_scores(scores.per_image)
    return scores


def format_table(scores: FolderScores) -> str:
    """A plain-text table: one row per image and a final mean row ("-" where a metric could
    not score an image)."""
    if not scores.per_image:
        return "no images"
    columns = [key for key, value in scores.per_image[0].items() if _is_number(value) or value is None]
    width = max(len("mean"), *(len(record["name"]) for record in scores.per_image))

    def cell(value: float | None) -> str:
        if value is None:
            return f"{'-':>10}"
        return f"{value:>10.4f}" if math.isfinite(value) else f"{value:>10}"

    lines = [f"{'name':<{width}}" + "".join(f"{column:>10}" for column in columns)]
    for record in scores.per_image:
        lines.append(f"{record['name']:<{width}}" + "".join(cell(record.get(column)) for column in columns))
    lines.append(f"{'mean':<{width}}" + "".join(cell(scores.mean.get(column)) for column in columns))
    return "\n".join(lines)
