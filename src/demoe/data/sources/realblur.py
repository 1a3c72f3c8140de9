"""RealBlur-J (Rim et al., ECCV 2020), official `RealBlur.tar.gz` layout -> `global_motion`.

    RealBlur/
      RealBlur-J_ECC_IMCORR_centroid_itensity_ref/scene001/{blur/blur_N.png, gt/gt_N.png} ...
      RealBlur_J_train_list.txt   (3758 pairs, 182 scenes)
      RealBlur_J_test_list.txt    (980 pairs, 50 scenes)

The split is defined only by the two list files (from rimchang/SRN-Deblur `datalist/`; they
may not be inside the archive, so put them next to the image folder or in `datalist/`). Each
line is `<gt path> <blur path>`, GT first, relative to the `RealBlur` folder.
"""

from __future__ import annotations

import os
from pathlib import Path

from demoe.data.manifest import PairRecord
from demoe.data.sources.common import check_files_exist, first_existing, read_pair_list, require_dir

NAME = "RealBlur-J"
TASK = "global_motion"
SPLITS = ("train", "test")
IMAGE_FOLDER = "RealBlur-J_ECC_IMCORR_centroid_itensity_ref"  # "itensity" is the real spelling
LIST_URL = "https://github.com/rimchang/SRN-Deblur, folder datalist/"


def list_file_name(split: str) -> str:
    return f"RealBlur_J_{split}_list.txt"


def read_realblur_j(root: str | os.PathLike, splits: tuple[str, ...] = SPLITS) -> list[PairRecord]:
    """Pairs of RealBlur-J under `root` (the folder holding `RealBlur-J_ECC_...`), in list order."""
    root = Path(root)
    require_dir(root, NAME, f"the extracted RealBlur folder containing {IMAGE_FOLDER}/")
    require_dir(root / IMAGE_FOLDER, NAME, "sceneNNN/{blur,gt}/ folders of RealBlur-J")
    records = []
    for split in splits:
        if split not in SPLITS:
            raise ValueError(f"RealBlur-J has splits {SPLITS}, not {split!r}")
        name = list_file_name(split)
        list_file = first_existing(
            [root / name, root / "datalist" / name],
            NAME,
            f"the official split file {name} (get it from {LIST_URL})",
            kind="file",
        )
        pairs = [(root / sharp, root / blurry) for sharp, blurry in read_pair_list(list_file, NAME)]
        check_files_exist([path for pair in pairs for path in pair], NAME, f"images listed in {list_file}")
        records += [PairRecord(str(blurry), str(sharp), TASK, NAME, split) for sharp, blurry in pairs]
    return records
