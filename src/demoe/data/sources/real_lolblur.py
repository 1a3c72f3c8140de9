"""Real-LOLBlur (Zhou et al., ECCV 2022, LEDNet) -> `low_light`, blurry only (OOD test).

The release holds 1354 real night photographs with motion blur and no ground truth: 482 taken
from RealBlur-J and 872 shot with a Sony RX10 IV. Like the DeMoE paper, we keep only the 872
(RealBlur-J is already part of AIO-Blur). The on-disk tree of the release is not documented,
so this reader is tolerant: it takes every image below the folder, and drops the RealBlur-J
subset by (1) any sub-folder whose name contains "realblur" (case, '-' and '_' ignored), and
(2) when the RealBlur folder is given, files byte-identical to a RealBlur-J `blur/` image.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path

from demoe.data.manifest import PairRecord
from demoe.data.sources.common import DatasetLayoutError, list_images, require_dir
from demoe.data.sources.realblur import IMAGE_FOLDER as REALBLUR_J_FOLDER

NAME = "Real-LOLBlur"
TASK = "low_light"
RELEASE_COUNT = 1354  # all images of the release
KEPT_COUNT = 872  # without the RealBlur-J subset


def read_real_lolblur(root: str | os.PathLike, realblur_root: str | os.PathLike | None = None) -> list[PairRecord]:
    """Blurry-only test records of Real-LOLBlur under `root`, without the RealBlur-J subset."""
    root = Path(root)
    require_dir(root, NAME, "the Real-LOLBlur folder with the night images (*.png/*.jpg, any sub-folders)")
    images = list_images(root, recursive=True)
    if not images:
        raise DatasetLayoutError(f"{NAME}: no images below {root}")
    excluded = realblur_subset(images, root, None if realblur_root is None else Path(realblur_root))
    kept = [path for path in images if path not in excluded]
    if len(images) == RELEASE_COUNT and len(kept) != KEPT_COUNT:
        warnings.warn(
            f"{NAME}: {len(images)} images (the full release) but {len(kept)} kept instead of {KEPT_COUNT}: "
            "could not identify all 482 RealBlur-J images; put them in a sub-folder named 'realblur' "
            "or pass the RealBlur folder so that identical files can be found",
            stacklevel=2,
        )
    return [PairRecord(str(path), None, TASK, NAME, "test") for path in kept]


def realblur_subset(images: list[Path], root: Path, realblur_root: Path | None) -> set[Path]:
    """The images of `images` (below `root`) that come from RealBlur-J."""
    excluded = {path for path in images if _in_realblur_folder(path.relative_to(root))}
    if realblur_root is None:
        return excluded
    realblur_images = list_images(
        require_dir(realblur_root / REALBLUR_J_FOLDER, "RealBlur-J", "sceneNNN/blur/ images"), recursive=True
    )
    # Compare sizes first, hash only files whose size occurs on both sides.
    sizes = {}
    for path in realblur_images:
        if path.parent.name == "blur":
            sizes.setdefault(path.stat().st_size, []).append(path)
    candidates = [path for path in images if path not in excluded and path.stat().st_size in sizes]
    if not candidates:
        return excluded
    hashes = {_sha256(path) for size in {path.stat().st_size for path in candidates} for path in sizes[size]}
    return excluded | {path for path in candidates if _sha256(path) in hashes}


def _in_realblur_folder(relative: Path) -> bool:
    return any("realblur" in part.lower().replace("-", "").replace("_", "") for part in relative.parts[:-1])


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
