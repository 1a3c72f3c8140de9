"""GoPro (Nah et al., CVPR 2017), official `GOPRO_Large.zip` layout -> `synth_global_motion`.

    GOPRO_Large/
      train/GOPR0372_07_00/{blur,blur_gamma,sharp}/000047.png ...   (22 sequences, 2103 pairs)
      test/GOPR0384_11_00/{blur,blur_gamma,sharp}/000001.png ...    (11 sequences, 1111 pairs)

The split is the top folder; blurry and sharp frames share a file name. `blur` is the input
used by the SRN/MPRNet/NAFNet packagings (and therefore by the published GoPro numbers of
NAFNet-based models); `blur_gamma` is what the GoPro paper used. The choice is a parameter.
"""

from __future__ import annotations

import os
from pathlib import Path

from demoe.data.manifest import PairRecord
from demoe.data.sources.common import DatasetLayoutError, pair_by_name, require_dir

NAME = "GoPro"
TASK = "synth_global_motion"
SPLITS = ("train", "test")
BLUR_FOLDERS = ("blur", "blur_gamma")


def read_gopro(
    root: str | os.PathLike, splits: tuple[str, ...] = SPLITS, blur_folder: str = "blur"
) -> list[PairRecord]:
    """Pairs of the GoPro release under `root` (the `GOPRO_Large` folder), in sequence/frame order."""
    if blur_folder not in BLUR_FOLDERS:
        raise ValueError(f"GoPro blur_folder must be one of {BLUR_FOLDERS}, got {blur_folder!r}")
    root = Path(root)
    require_dir(root, NAME, "the unzipped GOPRO_Large folder with train/ and test/")
    records = []
    for split in splits:
        if split not in SPLITS:
            raise ValueError(f"GoPro has splits {SPLITS}, not {split!r}")
        split_dir = require_dir(
            root / split, NAME, f"{split}/ with one folder per sequence, GOPRxxxx_xx_xx/{{{blur_folder},sharp}}/*.png"
        )
        sequences = sorted(path for path in split_dir.iterdir() if path.is_dir())
        if not sequences:
            raise DatasetLayoutError(f"{NAME}: no sequence folders in {split_dir} (expected GOPRxxxx_xx_xx/)")
        for sequence in sequences:
            blurry_dir = require_dir(sequence / blur_folder, NAME, f"{blur_folder}/ frames of sequence {sequence.name}")
            sharp_dir = require_dir(sequence / "sharp", NAME, f"sharp/ frames of sequence {sequence.name}")
            for blurry, sharp in pair_by_name(blurry_dir, sharp_dir, NAME):
                records.append(PairRecord(str(blurry), str(sharp), TASK, NAME, split))
    return records
