"""`demoe data synth`: write synthetic blurry/sharp pairs of every blur type from a folder of
sharp photographs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
from tqdm import tqdm

from demoe.config import TASK_NAMES
from demoe.data.manifest import SPLITS, PairRecord, write_manifest
from demoe.imageio import from_float, write_image, write_rgb_float

if TYPE_CHECKING:
    from demoe.data.synthetic import SynthConfig

# A blurry pixel counts as moving-object when the object covers at least this much of it
# (it can change the 8-bit value from there on).
MASK_THRESHOLD = 1.0 / 255.0


def add_synth_parser(data_subparsers: argparse._SubParsersAction) -> None:
    synth = data_subparsers.add_parser(
        "synth",
        help="synthesise blurry/sharp pairs of every blur type from sharp photographs",
        description="For every photograph under SHARP_DIR, write --per-image pairs per blur type: "
        "OUT_DIR/<task>/{blur,sharp}/NAME.png (local_motion also mask/NAME.png) and "
        "OUT_DIR/manifest.jsonl. Blur sizes are in pixels and suit photographs of a few hundred "
        "pixels per side; use --max-side for larger ones. See docs/synthetic-blur.md.",
    )
    synth.add_argument("sharp_dir", metavar="SHARP_DIR", help="folder of sharp photographs (searched recursively)")
    synth.add_argument("out_dir", metavar="OUT_DIR", help="output folder")
    synth.add_argument("--per-image", type=int, default=1, help="pairs per photograph and blur type (default 1)")
    synth.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    synth.add_argument(
        "--tasks", nargs="+", choices=TASK_NAMES, default=list(TASK_NAMES), help="blur types (default: all five)"
    )
    synth.add_argument("--crop", type=int, default=0, help="square random crop side; 0 = full image (default 0)")
    synth.add_argument("--split", choices=SPLITS, default="train", help="split written in the manifest (default train)")
    synth.add_argument(
        "--max-side", type=int, default=0, help="first shrink photographs whose longer side exceeds this; 0 = keep"
    )
    synth.set_defaults(handler=run_synth)


def run_synth(args: argparse.Namespace) -> int:
    from demoe.data.synthetic import SynthConfig, sharp_image_paths

    for flag, value, low in (("--per-image", args.per_image, 1), ("--seed", args.seed, 0), ("--crop", args.crop, 0),
                             ("--max-side", args.max_side, 0)):
        if value < low:
            print(f"demoe data synth: {flag} must be >= {low}, got {value}", file=sys.stderr)
            return 2
    sharp_dir, out_dir = Path(args.sharp_dir), Path(args.out_dir)
    if not sharp_dir.is_dir():
        print(f"demoe data synth: SHARP_DIR is not a folder: {sharp_dir}", file=sys.stderr)
        return 2
    paths = sharp_image_paths(sharp_dir)
    if not paths:
        print(f"demoe data synth: no images (png, jpg, bmp, tif, webp) under {sharp_dir}", file=sys.stderr)
        return 2
    names = [_name_of(path.relative_to(sharp_dir)) for path in paths]
    if len(set(names)) != len(names):
        print("demoe data synth: two photographs map to the same output name; rename them", file=sys.stderr)
        return 2
    records = write_pairs(paths, names, out_dir, args.tasks, args.per_image, args.seed, args.crop, args.split,
                          args.max_side, SynthConfig())
    manifest = write_manifest(out_dir / "manifest.jsonl", records)
    print(f"wrote {len(records)} pairs ({len(paths)} photographs x {args.per_image} x {len(args.tasks)} blur types) "
          f"and {manifest}")
    return 0


def _name_of(relative: Path) -> str:
    return "_".join(relative.with_suffix("").parts)


def write_pairs(
    paths: list[Path],
    names: list[str],
    out_dir: Path,
    tasks: list[str],
    per_image: int,
    seed: int,
    crop: int,
    split: str,
    max_side: int,
    config: SynthConfig,
) -> list[PairRecord]:
    from demoe.data.synthetic import load_photo, synthesize_crop

    """Synthesise and write every pair; pair (photo p, copy k, task t) is drawn from a
    generator seeded with (seed, p, k, TASK_NAMES index of t), so it does not depend on the
    other tasks chosen."""
    records = []
    with tqdm(total=len(paths) * per_image * len(tasks), unit="pair", desc="synth") as progress:
        for photo_index, (path, name) in enumerate(zip(paths, names)):
            photo = _shrink(load_photo(path), max_side)
            for copy in range(per_image):
                for task in tasks:
                    rng = np.random.default_rng((seed, photo_index, copy, TASK_NAMES.index(task)))
                    sample = synthesize_crop(photo, task, rng, crop, config, flips=crop > 0)
                    stem = f"{name}_{copy:03d}"
                    blurry_path = out_dir / task / "blur" / f"{stem}.png"
                    sharp_path = out_dir / task / "sharp" / f"{stem}.png"
                    write_rgb_float(blurry_path, sample.blurry)
                    write_rgb_float(sharp_path, sample.sharp)
                    mask_path = None
                    if sample.mask is not None:
                        mask_path = out_dir / task / "mask" / f"{stem}.png"
                        write_image(mask_path, from_float((sample.mask >= MASK_THRESHOLD).astype(np.float32), np.uint8))
                    records.append(PairRecord(str(blurry_path), str(sharp_path), task, "synthetic", split,
                                              None if mask_path is None else str(mask_path)))
                    progress.update()
    return records


def _shrink(photo: np.ndarray, max_side: int) -> np.ndarray:
    height, width = photo.shape[:2]
    if max_side == 0 or max(height, width) <= max_side:
        return photo
    scale = max_side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(photo, size, interpolation=cv2.INTER_AREA).reshape(size[1], size[0], photo.shape[2])
