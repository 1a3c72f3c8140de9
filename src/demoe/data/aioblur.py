"""The AIO-Blur mix (paper Sec. 4, App. B, Table 4) and the AIO-Blur-OOD test sets.

AIO-Blur keeps the original train/test splits of RealBlur-J, ReLoBlur, LOLBlur, GoPro and
DPDD (DPDD's validation split is not used). Only the training set is balanced:

- the reference size is the RealBlur-J training set (3758 pairs), which is kept as is;
- LOLBlur (10200) is reduced by the paper's MSE procedure: MSE(blurry, sharp) of every pair,
  a histogram of 4 equal-width bins over [min, max], the last (highest-MSE, sparsest) bin
  dropped, 1400 pairs drawn at random, without replacement, from each remaining bin -> 4200;
- every other dataset is repeated a whole number of times, `round(reference / count)`:
  ReLoBlur 2010 x 2 = 4020, GoPro 2103 x 2 = 4206, DPDD 350 x 11 = 3850. (Table 4 says 4018
  for ReLoBlur, i.e. 2 x 2009: the paper apparently had one pair fewer than the 2010 of the
  release; we keep all of them.)

A bin holding fewer pairs than its quota gives all of them, and the shortfall is handed out
one pair at a time, lowest-MSE bin first, to the kept bins that still have unused pairs, so the
subsample keeps its size whenever the kept bins hold enough pairs. Repetition is written out in
the manifest as repeated lines, so a training loader that reads the manifest sees the balanced
distribution without any sampler. The only randomness is the LOLBlur draw, seeded by `seed`.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from demoe.data.manifest import SPLITS, PairRecord
from demoe.data.sources import (
    locate_dataset,
    locate_datasets,
    read_dpdd,
    read_gopro,
    read_lolblur,
    read_real_lolblur,
    read_realblur_j,
    read_realdof,
    read_reloblur,
    read_rsblur,
)
from demoe.data.sources.common import DatasetLayoutError, list_images
from demoe.fileio import atomic_write_text
from demoe.imageio import read_rgb_float

AIO_BLUR_DATASETS = ("RealBlur-J", "ReLoBlur", "LOLBlur", "GoPro", "DPDD")  # Table 4 order


@dataclass(frozen=True)
class BalanceConfig:
    """How the AIO-Blur training set is balanced; the defaults reproduce Table 4."""

    reference_dataset: str = "RealBlur-J"  # its training size is the size the others aim at
    mse_dataset: str = "LOLBlur"  # reduced by MSE-histogram subsampling instead of repetition
    mse_bins: int = 4  # equal-width histogram bins over the MSE range
    mse_dropped_bins: int = 1  # highest-MSE bins left out
    mse_per_bin: int = 1400  # pairs drawn from each kept bin
    mse_downscale: int = 4  # images are read at 1/2, 1/4 or 1/8 size (or 1 = full) for the MSE

    def __post_init__(self) -> None:
        if not 0 <= self.mse_dropped_bins < self.mse_bins:
            raise ValueError(f"mse_dropped_bins must be in [0, {self.mse_bins}), got {self.mse_dropped_bins}")
        if self.mse_per_bin < 1:
            raise ValueError(f"mse_per_bin must be >= 1, got {self.mse_per_bin}")
        if self.mse_downscale not in _REDUCED_READ_FLAGS:
            raise ValueError(f"mse_downscale must be one of {sorted(_REDUCED_READ_FLAGS)}, got {self.mse_downscale}")


@dataclass(frozen=True)
class SummaryRow:
    dataset: str
    split: str
    available: int  # pairs in the release split
    in_manifest: int  # lines written to the manifest
    rule: str  # how the count was obtained


@dataclass
class Mix:
    """Records of a manifest and how each (dataset, split) count came about."""

    records: list[PairRecord]
    summary: list[SummaryRow] = field(default_factory=list)

    def format_summary(self) -> str:
        width = max([len("dataset")] + [len(row.dataset) for row in self.summary])
        lines = [f"{'dataset':<{width}}  split  {'release':>7}  {'manifest':>8}  rule"]
        for row in self.summary:
            lines.append(
                f"{row.dataset:<{width}}  {row.split:<5}  {row.available:>7}  {row.in_manifest:>8}  {row.rule}"
            )
        for split in SPLITS:
            rows = [row for row in self.summary if row.split == split]
            if rows:
                available = sum(row.available for row in rows)
                written = sum(row.in_manifest for row in rows)
                lines.append(f"{'total':<{width}}  {split:<5}  {available:>7}  {written:>8}")
        return "\n".join(lines)


# --- balancing: pure functions -------------------------------------------------------------


def repeat_factor(count: int, reference: int) -> int:
    """Whole number of copies that brings `count` closest to `reference` (at least 1)."""
    if count < 1 or reference < 1:
        raise ValueError(f"counts must be positive, got count={count}, reference={reference}")
    return max(1, math.floor(reference / count + 0.5))


def mse_bin_indices(mse: np.ndarray, num_bins: int) -> np.ndarray:
    """Bin (0..num_bins-1) of each value in a histogram of `num_bins` equal-width bins over
    [min, max], as `np.histogram` bins them (the last bin includes the maximum)."""
    mse = np.asarray(mse, dtype=np.float64)
    if mse.ndim != 1 or mse.size == 0:
        raise ValueError(f"expected a non-empty 1-D array of MSE values, got shape {mse.shape}")
    _, edges = np.histogram(mse, bins=num_bins)
    return np.clip(np.searchsorted(edges, mse, side="right") - 1, 0, num_bins - 1)


def bin_quotas(bin_sizes: list[int], per_bin: int) -> list[int]:
    """Pairs to draw from each bin: `per_bin` each; a short bin gives what it has and the
    shortfall goes, one pair at a time and lowest bin first, to bins with pairs left."""
    quotas = [min(size, per_bin) for size in bin_sizes]
    shortfall = min(per_bin * len(bin_sizes), sum(bin_sizes)) - sum(quotas)
    while shortfall > 0:
        for index, size in enumerate(bin_sizes):
            if shortfall > 0 and quotas[index] < size:
                quotas[index] += 1
                shortfall -= 1
    return quotas


def subsample_by_mse(mse: np.ndarray, rng: np.random.Generator, config: BalanceConfig) -> np.ndarray:
    """Sorted indices of the pairs kept by the MSE-histogram procedure (see module docstring)."""
    bins = mse_bin_indices(mse, config.mse_bins)
    kept_bins = range(config.mse_bins - config.mse_dropped_bins)
    members = [np.flatnonzero(bins == index) for index in kept_bins]
    quotas = bin_quotas([len(indices) for indices in members], config.mse_per_bin)
    chosen = [rng.choice(indices, size=quota, replace=False) for indices, quota in zip(members, quotas)]
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)


# --- MSE of image pairs --------------------------------------------------------------------

_REDUCED_READ_FLAGS = {
    1: None,
    2: cv2.IMREAD_REDUCED_COLOR_2,
    4: cv2.IMREAD_REDUCED_COLOR_4,
    8: cv2.IMREAD_REDUCED_COLOR_8,
}


def read_downscaled(path: str | os.PathLike, downscale: int) -> np.ndarray:
    """(H/d, W/d, 3) float32 in [0, 1]; d = 1 reads at full size and full bit depth, d in
    (2, 4, 8) uses OpenCV's reduced read (8-bit, channel order BGR: fine for an MSE)."""
    if downscale == 1:
        return read_rgb_float(path)
    array = cv2.imread(str(path), _REDUCED_READ_FLAGS[downscale])
    if array is None:
        raise ValueError(f"cannot read image {path}")
    return array.astype(np.float32) / 255.0


def pair_mse(blurry: str | os.PathLike, sharp: str | os.PathLike, downscale: int = 4) -> float:
    """Mean squared error between a blurry and a sharp image, values in [0, 1]."""
    blurry_image = read_downscaled(blurry, downscale)
    sharp_image = read_downscaled(sharp, downscale)
    if blurry_image.shape != sharp_image.shape:
        raise ValueError(f"size mismatch: {blurry} is {blurry_image.shape[:2]}, {sharp} is {sharp_image.shape[:2]}")
    return float(np.mean((blurry_image - sharp_image) ** 2))


def _pair_mse_of(arguments: tuple[str, str, int]) -> float:
    return pair_mse(*arguments)


def compute_mse(records: list[PairRecord], downscale: int = 4, workers: int = 1) -> np.ndarray:
    """(N,) MSE of every record's pair, in record order; `workers` > 1 uses processes."""
    arguments = [(record.blurry, record.sharp, downscale) for record in records]
    if any(record.sharp is None for record in records):
        raise ValueError("every record needs a sharp image to compute an MSE")
    if workers <= 1:
        return np.array([_pair_mse_of(argument) for argument in arguments], dtype=np.float64)
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return np.array(list(pool.map(_pair_mse_of, arguments, chunksize=16)), dtype=np.float64)


def cached_mse(records: list[PairRecord], cache: Path | None, downscale: int, workers: int) -> np.ndarray:
    """MSE of the records, read from the CSV `cache` when it holds exactly these pairs at this
    downscale, else computed (and written there)."""
    keys = [(record.blurry, record.sharp or "") for record in records]
    if cache is not None and cache.is_file():
        with cache.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
        if [(row["blurry"], row["sharp"]) for row in rows] == keys and all(
            int(row["downscale"]) == downscale for row in rows
        ):
            return np.array([float(row["mse"]) for row in rows], dtype=np.float64)
    mse = compute_mse(records, downscale, workers)
    if cache is not None:
        text = io.StringIO()
        writer = csv.writer(text)
        writer.writerow(["blurry", "sharp", "downscale", "mse"])
        writer.writerows((blurry, sharp, downscale, repr(float(value))) for (blurry, sharp), value in zip(keys, mse))
        atomic_write_text(cache, text.getvalue())
    return mse


# --- the mix -------------------------------------------------------------------------------


def balance_training_set(
    train_records: dict[str, list[PairRecord]],
    seed: int,
    config: BalanceConfig = BalanceConfig(),
    mse: dict[str, np.ndarray] | None = None,
) -> Mix:
    """Balanced training records of the datasets in `train_records` (dataset -> its train
    pairs, in release order). `mse[config.mse_dataset]` may hold precomputed MSE values."""
    if config.reference_dataset not in train_records:
        raise ValueError(f"the reference dataset {config.reference_dataset} is not among {list(train_records)}")
    reference = len(train_records[config.reference_dataset])
    mix = Mix(records=[])
    for dataset, records in train_records.items():
        if not records:
            raise ValueError(f"{dataset} has no training pairs")
        if dataset == config.mse_dataset:
            values = (mse or {}).get(dataset)
            if values is None:
                values = compute_mse(records, config.mse_downscale)
            if len(values) != len(records):
                raise ValueError(f"{dataset}: {len(values)} MSE values for {len(records)} pairs")
            rng = np.random.default_rng(seed)
            chosen = subsample_by_mse(np.asarray(values), rng, config)
            sizes = np.bincount(mse_bin_indices(values, config.mse_bins), minlength=config.mse_bins)
            kept = [records[index] for index in chosen]
            rule = (
                f"MSE subsample: bin sizes {sizes.tolist()}, last {config.mse_dropped_bins} dropped, "
                f"{config.mse_per_bin} per bin (seed {seed})"
            )
        else:
            factor = 1 if dataset == config.reference_dataset else repeat_factor(len(records), reference)
            kept = records * factor
            rule = "reference, kept" if dataset == config.reference_dataset else f"repeated x{factor}"
        mix.records += kept
        mix.summary.append(SummaryRow(dataset, "train", len(records), len(kept), rule))
    return mix


def build_aio_blur(
    root: str | os.PathLike,
    seed: int = 0,
    overrides: dict[str, str | os.PathLike] | None = None,
    config: BalanceConfig = BalanceConfig(),
    gopro_blur_folder: str = "blur",
    workers: int = 1,
    mse_cache: str | os.PathLike | None = None,
) -> Mix:
    """AIO-Blur: balanced training records followed by the original test records."""
    folders = locate_datasets(root, AIO_BLUR_DATASETS, overrides, mix="AIO-Blur")  # all missing ones at once
    records = {
        "RealBlur-J": read_realblur_j(folders["RealBlur-J"]),
        "ReLoBlur": read_reloblur(folders["ReLoBlur"]),
        "LOLBlur": read_lolblur(folders["LOLBlur"]),
        "GoPro": read_gopro(folders["GoPro"], blur_folder=gopro_blur_folder),
        "DPDD": read_dpdd(folders["DPDD"], splits=("train", "test")),
    }
    train = {dataset: [r for r in records[dataset] if r.split == "train"] for dataset in AIO_BLUR_DATASETS}
    test = {dataset: [r for r in records[dataset] if r.split == "test"] for dataset in AIO_BLUR_DATASETS}
    mse = {
        config.mse_dataset: cached_mse(
            train[config.mse_dataset],
            None if mse_cache is None else Path(mse_cache),
            config.mse_downscale,
            workers,
        )
    }
    mix = balance_training_set(train, seed, config, mse)
    for dataset in AIO_BLUR_DATASETS:
        mix.records += test[dataset]
        mix.summary.append(SummaryRow(dataset, "test", len(test[dataset]), len(test[dataset]), "original split"))
    return mix


def build_aio_blur_ood(
    root: str | os.PathLike,
    overrides: dict[str, str | os.PathLike] | None = None,
) -> Mix:
    """AIO-Blur-OOD: the RealDOF, RSBlur (real test list) and Real-LOLBlur (without its
    RealBlur-J subset, found by file content when the RealBlur folder is present) test sets."""
    realblur_root = _optional_folder(root, "RealBlur-J", overrides)
    folders = locate_datasets(root, ("RealDOF", "RSBlur", "Real-LOLBlur"), overrides, mix="AIO-Blur-OOD")
    real_lolblur_root = folders["Real-LOLBlur"]
    realdof = read_realdof(folders["RealDOF"])
    rsblur = read_rsblur(folders["RSBlur"], splits=("test",))
    real_lolblur = read_real_lolblur(real_lolblur_root, realblur_root)
    released = len(list_images(real_lolblur_root, recursive=True))
    return Mix(
        records=realdof + rsblur + real_lolblur,
        summary=[
            SummaryRow("RealDOF", "test", len(realdof), len(realdof), "test-only set"),
            SummaryRow("RSBlur", "test", len(rsblur), len(rsblur), "official real test list"),
            SummaryRow(
                "Real-LOLBlur",
                "test",
                released,
                len(real_lolblur),
                f"blurry only, {released - len(real_lolblur)} RealBlur-J images left out",
            ),
        ],
    )


def _optional_folder(
    root: str | os.PathLike, dataset: str, overrides: dict[str, str | os.PathLike] | None
) -> Path | None:
    try:
        return locate_dataset(root, dataset, overrides)
    except DatasetLayoutError:
        return None


def count_by_dataset_and_split(records: list[PairRecord]) -> dict[tuple[str, str], int]:
    return dict(Counter((record.dataset, record.split) for record in records))
