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
    "DatasetLayoutError",
    "locate_dataset",
    "read_dpdd",
    "read_gopro",
    "read_lolblur",
    "read_real_lolblur",
    "read_realblur_j",
    "read_realdof",
    "read_reloblur",
    "read_rsblur",
]
