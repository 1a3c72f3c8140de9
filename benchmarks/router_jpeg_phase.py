"""Does the router recognise camera shake, or only where a crop sits in the JPEG block grid?

    python benchmarks/router_jpeg_phase.py MODEL_DIR [--shared ../shared] [--threads 2]

`global_motion` pairs are the only synthetic pairs that are JPEG-compressed. Until 2026-12-08
the training crops were cut at a fixed offset (the blur margin) from the compressed region, so
every training crop had its 8x8 block edges at the same place. This script blurs 256-pixel
regions of the held-out photographs (Kodak24 + McMaster) with `global_motion` (normal and dark
scenes), JPEG-compresses them at grid phase (0, 0), and cuts 128-pixel crops at offsets 0..7:
each offset puts the block edges elsewhere. A router that learnt the blur gives the same verdicts
at every offset; one that learnt the grid recognises camera shake at one offset only.
Prints, per offset, the share routed to global_motion (and to low_light), as a markdown table.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
from pathlib import Path

import numpy as np
import torch

import demoe
from demoe.data.synthetic import SynthConfig, load_photo, sharp_image_paths
from demoe.data.synthetic.generator import darken, global_motion
from demoe.imageio import to_float

COLLECTIONS = ("Kodak24", "McMaster")
CROP, REGION, SEED = 128, 256, 2026
START = (REGION - CROP) // 2 - 4  # crops start at START + offset, offsets 0..7


@torch.no_grad()
def verdicts(model: demoe.DeblurUNet, photos: list[Path], dark: bool) -> dict[int, collections.Counter]:
    config = SynthConfig()
    dark_scene = dataclasses.replace(config.dark_scene, probability=1.0)
    rng = np.random.default_rng((SEED, int(dark)))
    counts: dict[int, collections.Counter] = collections.defaultdict(collections.Counter)
    for path in photos:
        photo = to_float(load_photo(path))
        top = int(rng.integers(0, photo.shape[0] - REGION + 1))
        left = int(rng.integers(0, photo.shape[1] - REGION + 1))
        region = np.ascontiguousarray(photo[top : top + REGION, left : left + REGION])
        if dark:
            region = darken(region, rng, dark_scene)
        blurry = global_motion(region, rng, config.global_motion, jpeg_phase=(0, 0))
        for offset in range(8):
            crop = blurry[START + offset : START + offset + CROP, START + offset : START + offset + CROP]
            x = torch.from_numpy(np.ascontiguousarray(crop.transpose(2, 0, 1)))[None]
            probs = model(x, task="auto").router_probs[0]
            counts[offset][model.task_names[int(probs.argmax())]] += 1
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[1].strip())
    parser.add_argument("model", type=Path)
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[1] / ".." / "shared")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = demoe.load_model(args.model).eval()
    photos = [p for name in COLLECTIONS for p in sharp_image_paths(args.shared / "data" / "sharp" / name)]
    results = {scene: verdicts(model, photos, scene == "dark") for scene in ("normal", "dark")}
    offsets = range(8)
    print(f"`{args.model}`, {len(photos)} photographs, global_motion crops of {CROP} px\n")
    print("| first block edge at row and column | " + " | ".join(str((-(START + o)) % 8) for o in offsets) + " |")
    print("|---|" + "---|" * len(offsets))
    for scene, counts in results.items():
        cells = [f"{counts[o]['global_motion'] / len(photos):.0%} ({counts[o]['low_light'] / len(photos):.0%})" for o in offsets]
        print(f"| {scene} scenes: to global_motion (to low_light) | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
