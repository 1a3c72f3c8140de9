"""DPDD (Abuolaim & Brown, ECCV 2020), official `dd_dp_dataset_canon.zip` -> `defocus`.

    dd_dp_dataset_canon/
      train_c/{source,target}/*.png   (350 pairs)   train_l/source, train_r/source (dual-pixel views)
      val_c/{source,target}/          (74 pairs)
      test_c/{source,target}/         (76 pairs)

Single-image defocus deblurring uses the combined `_c` views: `source` is the defocused input,
`target` the all-in-focus image; 16-bit sRGB PNGs. Source and target file names differ (they
are consecutive camera frame numbers), so pairs are formed by sorted position, exactly as the
official `data.py` does. IFAN's re-hosted `DPDD/` folder has the same inner layout.
"""

from __future__ import annotations

import os
from pathlib import Path

from demoe.data.manifest import PairRecord
from demoe.data.sources.common import pair_by_sorted_position, require_dir

NAME = "DPDD"
TASK = "defocus"
SPLITS = ("train", "val", "test")


def read_dpdd(root: str | os.PathLike, splits: tuple[str, ...] = ("train", "test")) -> list[PairRecord]:
    """Single-image pairs of DPDD under `root` (the `dd_dp_dataset_canon` folder)."""
    root = Path(root)
    require_dir(root, NAME, "the unzipped dd_dp_dataset_canon folder with train_c/, val_c/, test_c/")
    records = []
    for split in splits:
        if split not in SPLITS:
            raise ValueError(f"DPDD has splits {SPLITS}, not {split!r}")
        split_dir = require_dir(root / f"{split}_c", NAME, f"{split}_c/ with source/ and target/")
        blurry_dir = require_dir(split_dir / "source", NAME, "the defocused inputs (16-bit PNG)")
        sharp_dir = require_dir(split_dir / "target", NAME, "the all-in-focus targets (16-bit PNG)")
        for blurry, sharp in pair_by_sorted_position(blurry_dir, sharp_dir, NAME):
            records.append(PairRecord(str(blurry), str(sharp), TASK, NAME, split))
    return records
