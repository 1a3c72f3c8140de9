"""RSBlur (Rim et al., ECCV 2022), official `RSBlur.zip` layout -> `global_motion` (OOD test).

    RSBlur/
      0001/000001/real_blur/real_blur.png   (real blurred image: the input)
                  avg65_img/avg_blur.png    (synthetic blur; not used)
                  gt/gt_sharp.png
      datalist/RSBlur/RSBlur_real_{train,val,test}.txt   (8878 / 1120 / 3360 pairs)

The list files come from the rimchang/RSBlur repository (`datalist/RSBlur/`); each line is
`<gt> <blur>` with paths starting `RSBlur/...` (relative to the folder above `RSBlur/`).
Image ids repeat across the top folders, so a pair is identified by its full path.
"""

from __future__ import annotations

import os
from pathlib import Path

from demoe.data.manifest import PairRecord
from demoe.data.sources.common import check_files_exist, first_existing, read_pair_list, require_dir

NAME = "RSBlur"
TASK = "global_motion"
SPLITS = ("train", "val", "test")
LIST_URL = "https://github.com/rimchang/RSBlur, folder datalist/RSBlur/"


def list_file_name(split: str) -> str:
    return f"RSBlur_real_{split}.txt"


def read_rsblur(root: str | os.PathLike, splits: tuple[str, ...] = ("test",)) -> list[PairRecord]:
    """Real-blur pairs of RSBlur under `root` (the `RSBlur` folder), in list order."""
    root = Path(root)
    require_dir(root, NAME, "the unzipped RSBlur folder with NNNN/NNNNNN/{real_blur,gt}/")
    records = []
    for split in splits:
        if split not in SPLITS:
            raise ValueError(f"RSBlur has splits {SPLITS}, not {split!r}")
        name = list_file_name(split)
        list_file = first_existing(
            [root / "datalist" / "RSBlur" / name, root / "datalist" / name, root / name],
            NAME,
            f"the official split file {name} (get it from {LIST_URL})",
            kind="file",
        )
        pairs = [(_resolve(root, sharp), _resolve(root, blurry)) for sharp, blurry in read_pair_list(list_file, NAME)]
        check_files_exist([path for pair in pairs for path in pair], NAME, f"images listed in {list_file}")
        records += [PairRecord(str(blurry), str(sharp), TASK, NAME, split) for sharp, blurry in pairs]
    return records


def _resolve(root: Path, listed: str) -> Path:
    # Listed paths start with "RSBlur/"; resolve them inside `root` whatever that folder is named.
    parts = Path(listed).parts
    return root.joinpath(*parts[1:]) if parts and parts[0] == "RSBlur" else root / listed
