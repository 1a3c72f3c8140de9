"""LOLBlur (Zhou et al., ECCV 2022, LEDNet), official layout -> `low_light`.

    LOLBlur/
      train/{low_blur, low_blur_noise, low_sharp, high_sharp_scaled, high_sharp_original}/<video>/<frame>.png
      test/ (same five folders)
    170 train / 30 test videos x 60 frames = 10200 / 1800 pairs

Input `low_blur_noise`, target `high_sharp_scaled`, as in LEDNet's official training configs.
Frame names repeat across videos, so pairs are matched by `<video>/<frame>`.
"""

from __future__ import annotations

import os
from pathlib import Path

from demoe.data.manifest import PairRecord
from demoe.data.sources.common import pair_by_name, require_dir

NAME = "LOLBlur"
TASK = "low_light"
SPLITS = ("train", "test")
BLURRY_FOLDER = "low_blur_noise"
SHARP_FOLDER = "high_sharp_scaled"


def read_lolblur(root: str | os.PathLike, splits: tuple[str, ...] = SPLITS) -> list[PairRecord]:
    """Pairs of LOLBlur under `root` (the `LOLBlur` folder), in video/frame order."""
    root = Path(root)
    require_dir(root, NAME, "the LOLBlur folder with train/ and test/")
    records = []
    for split in splits:
        if split not in SPLITS:
            raise ValueError(f"LOLBlur has splits {SPLITS}, not {split!r}")
        split_dir = require_dir(root / split, NAME, f"{split}/ with {BLURRY_FOLDER}/ and {SHARP_FOLDER}/")
        blurry_dir = require_dir(split_dir / BLURRY_FOLDER, NAME, "the blurry low-light inputs, <video>/<frame>.png")
        sharp_dir = require_dir(split_dir / SHARP_FOLDER, NAME, "the normal-light targets, <video>/<frame>.png")
        for blurry, sharp in pair_by_name(blurry_dir, sharp_dir, NAME, recursive=True):
            records.append(PairRecord(str(blurry), str(sharp), TASK, NAME, split))
    return records
