"""RealDOF (Lee et al., CVPR 2021, IFAN), official `RealDOF.zip` -> `defocus` (OOD test).

    RealDOF/
      source/*.png   (defocused inputs, 50)
      target/*.png   (all-in-focus ground truth)

IFAN's loader sorts each folder and pairs by position; whether the names match between the
folders is not documented, so pairs are matched by name when both folders hold the same names
and by naturally sorted position otherwise.
"""

from __future__ import annotations

import os
from pathlib import Path

from demoe.data.manifest import PairRecord
from demoe.data.sources.common import list_images, pair_by_name, pair_by_sorted_position, require_dir

NAME = "RealDOF"
TASK = "defocus"
SPLITS = ("test",)


def read_realdof(root: str | os.PathLike, splits: tuple[str, ...] = SPLITS) -> list[PairRecord]:
    """Test pairs of RealDOF under `root` (the `RealDOF` folder)."""
    root = Path(root)
    if tuple(splits) != SPLITS:
        raise ValueError(f"RealDOF is test-only, got splits {splits}")
    require_dir(root, NAME, "the unzipped RealDOF folder with source/ and target/")
    blurry_dir = require_dir(root / "source", NAME, "the defocused inputs, *.png")
    sharp_dir = require_dir(root / "target", NAME, "the all-in-focus ground truth, *.png")
    same_names = {path.name for path in list_images(blurry_dir)} == {path.name for path in list_images(sharp_dir)}
    pairs = (
        pair_by_name(blurry_dir, sharp_dir, NAME)
        if same_names
        else pair_by_sorted_position(blurry_dir, sharp_dir, NAME, natural=True)
    )
    return [PairRecord(str(blurry), str(sharp), TASK, NAME, "test") for blurry, sharp in pairs]
