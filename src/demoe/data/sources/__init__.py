"""Benchmark sources: one reader per dataset, each reading the official release layout and
returning `PairRecord`s (blurry, sharp or None, task, dataset, split, mask).

| dataset      | task                | reader              | folder under the datasets root |
|--------------|---------------------|---------------------|--------------------------------|
| GoPro        | synth_global_motion | `read_gopro`        | GOPRO_Large                    |
| RealBlur-J   | global_motion       | `read_realblur_j`   | RealBlur                       |
| ReLoBlur     | local_motion        | `read_reloblur`     | ReLoBlur                       |
| LOLBlur      | low_light           | `read_lolblur`      | LOLBlur                        |
| DPDD         | defocus             | `read_dpdd`         | dd_dp_dataset_canon            |
| RealDOF      | defocus             | `read_realdof`      | RealDOF                        |
| RSBlur       | global_motion       | `read_rsblur`       | RSBlur                         |
| Real-LOLBlur | low_light           | `read_real_lolblur` | Real-LOLBlur                   |

Every reader raises `DatasetLayoutError` (a FileNotFoundError) naming the missing folder or
file and what was expected there. Layouts and download links: docs/datasets.md.
"""

from __future__ import annotations

import os
from pathlib import Path

from demoe.data.manifest import PairRecord
from demoe.data.sources.common import DatasetLayoutError, first_existing
from demoe.data.sources.dpdd import read_dpdd
from demoe.data.sources.gopro import read_gopro
from demoe.data.sources.lolblur import read_lolblur
from demoe.data.sources.real_lolblur import read_real_lolblur
from demoe.data.sources.realblur import read_realblur_j
from demoe.data.sources.realdof import read_realdof
from demoe.data.sources.reloblur import read_reloblur
from demoe.data.sources.rsblur import read_rsblur

# Accepted folder names of each dataset under a datasets root; the first is the documented one
# (the name the official archive unpacks to where known).
DATASET_FOLDERS: dict[str, tuple[str, ...]] = {
    "GoPro": ("GOPRO_Large", "GoPro"),
    "RealBlur-J": ("RealBlur", "RealBlur-J"),
    "ReLoBlur": ("ReLoBlur",),
    "LOLBlur": ("LOLBlur", "LOL-Blur"),
    "DPDD": ("dd_dp_dataset_canon", "DPDD"),
    "RealDOF": ("RealDOF",),
    "RSBlur": ("RSBlur",),
    "Real-LOLBlur": ("Real-LOLBlur", "Real_LOLBlur", "RealLOLBlur"),
}


# The splits each release comes with (RSBlur's from its official lists; DPDD's validation split
# exists but AIO-Blur does not use it; RealDOF and Real-LOLBlur are test-only).
RELEASED_SPLITS: dict[str, tuple[str, ...]] = {
    "GoPro": ("train", "test"),
    "RealBlur-J": ("train", "test"),
    "ReLoBlur": ("train", "test"),
    "LOLBlur": ("train", "test"),
    "DPDD": ("train", "val", "test"),
    "RealDOF": ("test",),
    "RSBlur": ("train", "val", "test"),
    "Real-LOLBlur": ("test",),
}


class MissingDatasetsError(DatasetLayoutError):
    """Some datasets of a mix are missing; the message lists every dataset found and missing."""

    def __init__(self, mix: str, found: dict[str, Path], missing: dict[str, str]) -> None:
        self.found = found
        self.missing = missing
        width = max(len(name) for name in (*found, *missing))
        lines = [f"{mix} needs {len(found) + len(missing)} datasets: found {len(found)}, missing {len(missing)}"]
        lines += [f"  found    {name:<{width}}  {path}" for name, path in found.items()]
        lines += [f"  missing  {name:<{width}}  {why}" for name, why in missing.items()]
        super().__init__("\n".join(lines))


def locate_datasets(
    root: str | os.PathLike, datasets: tuple[str, ...], overrides: dict[str, str | os.PathLike] | None = None,
    mix: str = "this set",
) -> dict[str, Path]:
    """Folder of every dataset in `datasets` (see `locate_dataset`), or one MissingDatasetsError
    that lists all of them, found and missing, instead of stopping at the first missing one."""
    found: dict[str, Path] = {}
    missing: dict[str, str] = {}
    for dataset in datasets:
        try:
            found[dataset] = locate_dataset(root, dataset, overrides)
        except DatasetLayoutError as error:
            missing[dataset] = str(error)
    if missing:
        raise MissingDatasetsError(mix, found, missing)
    return found


def read_release(
    dataset: str,
    folder: str | os.PathLike,
    splits: tuple[str, ...] | None = None,
    gopro_blur_folder: str = "blur",
    realblur_folder: str | os.PathLike | None = None,
) -> list[PairRecord]:
    """The records of one benchmark from its release `folder`: every split it was released with
    (`RELEASED_SPLITS`), or the given `splits`. `gopro_blur_folder`: GoPro's input folder
    ("blur" or "blur_gamma"); `realblur_folder`: lets Real-LOLBlur drop its RealBlur-J images by
    content (see `read_real_lolblur`)."""
    if dataset not in RELEASED_SPLITS:
        raise ValueError(f"unknown dataset {dataset!r}; known: {', '.join(RELEASED_SPLITS)}")
    splits = RELEASED_SPLITS[dataset] if splits is None else tuple(splits)
    unknown = [split for split in splits if split not in RELEASED_SPLITS[dataset]]
    if unknown or not splits:
        raise ValueError(f"{dataset} has splits {', '.join(RELEASED_SPLITS[dataset])}, not {', '.join(unknown) or 'none'}")
    if dataset == "GoPro":
        return read_gopro(folder, splits, blur_folder=gopro_blur_folder)
    if dataset == "RealBlur-J":
        return read_realblur_j(folder, splits)
    if dataset == "ReLoBlur":
        return read_reloblur(folder, splits)
    if dataset == "LOLBlur":
        return read_lolblur(folder, splits)
    if dataset == "DPDD":
        return read_dpdd(folder, splits)
    if dataset == "RealDOF":
        return read_realdof(folder, splits)
    if dataset == "RSBlur":
        return read_rsblur(folder, splits)
    return read_real_lolblur(folder, realblur_folder)


def locate_dataset(
    root: str | os.PathLike, dataset: str, overrides: dict[str, str | os.PathLike] | None = None
) -> Path:
    """Folder of `dataset`: `overrides[dataset]` if given, else its documented folder under `root`."""
    if dataset not in DATASET_FOLDERS:
        raise ValueError(f"unknown dataset {dataset!r}; known: {', '.join(DATASET_FOLDERS)}")
    if overrides and dataset in overrides:
        path = Path(overrides[dataset])
        if not path.is_dir():
            raise DatasetLayoutError(f"{dataset}: missing folder {path} (given as its path)")
        return path
    names = DATASET_FOLDERS[dataset]
    return first_existing(
        [Path(root) / name for name in names],
        dataset,
        f"the {dataset} release unpacked as {Path(root) / names[0]} (see docs/datasets.md)",
    )


__all__ = [
    "DATASET_FOLDERS",
    "RELEASED_SPLITS",
    "DatasetLayoutError",
    "MissingDatasetsError",
    "locate_dataset",
    "locate_datasets",
    "read_release",
    "read_dpdd",
    "read_gopro",
    "read_lolblur",
    "read_real_lolblur",
    "read_realblur_j",
    "read_realdof",
    "read_reloblur",
    "read_rsblur",
]
