"""ReLoBlur (Li et al., AAAI 2023), layout of the official loader -> `local_motion`.

    ReLoBlur/
      dataset/train/s01/00/00_sharp.png, 00_blur.png ...   (2010 pairs)
      dataset/test/scene1/00/...                           (395 pairs)
      masks/train/s01/00/00.png ...                        (optional "Local Blur Mask" download)
      masks/test/...

The official `dataset.py` globs `{split}/*/*/*sharp.png`, takes the blurry image by replacing
`sharp` with `blur`, and the mask by replacing `dataset` with `masks` and dropping `_sharp`.
The inside of the released archives is not documented, so this reader is tolerant: the split
folders may sit directly in the ReLoBlur folder, `*_sharp.png` files are found at any depth,
and only the file name (never the folder path) is rewritten. A missing or empty (0-byte) mask
gives `mask=None` (empty masks under train/s09 are a reported release problem).
"""

from __future__ import annotations

import os
from pathlib import Path

from demoe.data.manifest import PairRecord
from demoe.data.sources.common import (
    DatasetLayoutError,
    check_files_exist,
    first_existing,
    natural_key,
    require_dir,
)

NAME = "ReLoBlur"
TASK = "local_motion"
SPLITS = ("train", "test")


def read_reloblur(root: str | os.PathLike, splits: tuple[str, ...] = SPLITS) -> list[PairRecord]:
    """Pairs (with masks where present) of ReLoBlur under `root`, in natural path order."""
    root = Path(root)
    require_dir(root, NAME, "the ReLoBlur folder with dataset/{train,test}/ (and optionally masks/)")
    records = []
    for split in splits:
        if split not in SPLITS:
            raise ValueError(f"ReLoBlur has splits {SPLITS}, not {split!r}")
        split_dir = first_existing(
            [root / "dataset" / split, root / split],
            NAME,
            f"the {split} images, <scene>/<sequence>/NN_sharp.png and NN_blur.png",
        )
        mask_dir = root / "masks" / split
        sharp_files = sorted(
            split_dir.rglob("*_sharp.png"), key=lambda path: natural_key(path.relative_to(split_dir).as_posix())
        )
        if not sharp_files:
            raise DatasetLayoutError(f"{NAME}: no *_sharp.png images below {split_dir}")
        blurry_files = [sharp.with_name(sharp.name.replace("_sharp", "_blur")) for sharp in sharp_files]
        check_files_exist(blurry_files, NAME, "blurry images (NN_blur.png next to NN_sharp.png)")
        for sharp, blurry in zip(sharp_files, blurry_files):
            relative = sharp.relative_to(split_dir)
            mask = mask_dir / relative.with_name(sharp.name.replace("_sharp", ""))
            has_mask = mask.is_file() and mask.stat().st_size > 0
            records.append(PairRecord(str(blurry), str(sharp), TASK, NAME, split, str(mask) if has_mask else None))
    return records
