"""How closely tiled restoration agrees with whole-image restoration, on dark, normal and bright
photographs (docs/deblur.md, "How close are tiled and whole-image outputs?").

For every case the photograph is restored whole and in tiles (8-bit in, 8-bit out) with the same
expert (the router's top-1 choice on the whole image), three ways:

- "own statistics": every tile alone through the model (each NAFBlock's channel attention
  averages over the tile only), blended as `Deblurrer` blends; what demoe did before issue 14;
- "image statistics": `Deblurrer.restore(tile=...)`, whose tiles use the whole image's channel
  means (recorded on the router's view, refined over a partition of the image);
- "TLC": `Deblurrer.restore(tlc=True)` tiled against `tlc=True` whole (local statistics).

Photographs: the held-out validation photos (Kodak24, McMaster) and a real night photo
(Real-LOLBlur), read from the shared data folder; never copied anywhere. Dark and bright
versions are made by scaling exposure (dark: x gain; bright: 1 - (1 - x) / gain); 1024 x 768
versions by Lanczos upscaling and cropping. Run from the repository root:

    OMP_NUM_THREADS=1 python benchmarks/tiling_agreement.py --shared ../shared
    OMP_NUM_THREADS=1 python benchmarks/tiling_agreement.py --shared ../shared --cases 1 4   # a few

Writes benchmarks/results/tiling_agreement.json and prints the markdown table of docs/deblur.md.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

import demoe
from demoe.imageio import read_array, as_rgb
from demoe.inference import Deblurrer
from demoe.inference.tiling import TileBlender, tile_grid

RESULTS = Path(__file__).resolve().parent / "results" / "tiling_agreement.json"


@dataclass(frozen=True)
class Case:
    name: str
    path: str  # relative to the shared folder
    size: tuple[int, int] | None  # (width, height) after upscaling + cropping; None = as is
    crop: tuple[int, int] | None  # (width, height) top-left crop of the photo; None = all
    exposure: float  # < 1 darkens (x * e), > 1 brightens (1 - (1 - x) / e), 1 = as is
    tile: int
    overlap: int


KODAK, MCMASTER = "data/sharp/Kodak24", "data/sharp/McMaster"
NIGHT = "data/real/Real-LOLBlur/blur/LEDNet_0002_0006.png"
CASES = [
    Case("dark (kodim05, exposure x0.12)", f"{KODAK}/kodim05.png", (1024, 768), None, 0.12, 256, 32),
    Case("normal (kodim05)", f"{KODAK}/kodim05.png", (1024, 768), None, 1.0, 256, 32),
    Case("bright (kodim20, exposure /4)", f"{KODAK}/kodim20.png", (1024, 768), None, 4.0, 256, 32),
    Case("real night photo (Real-LOLBlur)", NIGHT, None, (1111, 637), 1.0, 256, 32),
    Case("dark, odd size (McM02, x0.15)", f"{MCMASTER}/McM02.png", None, (499, 487), 0.15, 256, 32),
    Case("bright, odd size (McM09, /4)", f"{MCMASTER}/McM09.png", None, (483, 491), 4.0, 256, 32),
    Case("dark (kodim05, exposure x0.12)", f"{KODAK}/kodim05.png", (1024, 768), None, 0.12, 512, 64),
    Case("real night photo (Real-LOLBlur)", NIGHT, None, (1111, 637), 1.0, 512, 64),
]


def load_photo(shared: Path, case: Case) -> np.ndarray:
    """(H, W, 3) uint8."""
    pixels = as_rgb(read_array(shared / case.path))
    if case.size is not None:
        width, height = case.size
        scale = max(width / pixels.shape[1], height / pixels.shape[0])
        size = (math.ceil(pixels.shape[1] * scale), math.ceil(pixels.shape[0] * scale))
        pixels = cv2.resize(pixels, size, interpolation=cv2.INTER_LANCZOS4)[:height, :width]
    if case.crop is not None:
        width, height = case.crop
        pixels = pixels[:height, :width]
    values = pixels.astype(np.float32) / 255.0
    if case.exposure < 1:
        values = values * case.exposure
    elif case.exposure > 1:
        values = 1.0 - (1.0 - values) / case.exposure
    return np.round(np.clip(values, 0, 1) * 255).astype(np.uint8)


def psnr8(first: np.ndarray, second: np.ndarray) -> float:
    mse = float(np.mean((first.astype(np.float64) - second.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * math.log10(255.0**2 / mse)


def own_statistics_tiles(deblurrer: Deblurrer, photo: np.ndarray, task: str, tile: int, overlap: int) -> np.ndarray:
    """Every tile through the model alone (its own channel statistics), blended as Deblurrer does."""
    model = deblurrer.model
    height, width = photo.shape[:2]
    blender = TileBlender(height, width, 3, overlap)
    for region in tile_grid(height, width, tile, overlap, align=model.config.size_multiple):
        pixels = photo[region.top : region.bottom, region.left : region.right].astype(np.float32) / 255.0
        x = torch.from_numpy(pixels).permute(2, 0, 1)[None]
        with torch.inference_mode():
            out = model(x, task=task).image[0].permute(1, 2, 0).numpy()
        blender.add(region, out)
    return np.round(np.clip(blender.result(), 0, 1) * 255).astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", default="../shared", help="the shared data folder (default ../shared)")
    parser.add_argument("--weights", default=None, help="model directory (default: the bundled weights)")
    parser.add_argument("--train-crop", type=int, default=96,
                        help="training crop for TLC when the config does not record it (bundled weights: 96)")
    parser.add_argument("--cases", type=int, nargs="+", default=None, help="case numbers (1-based) to run")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = demoe.load_model(args.weights).eval()
    if not model.config.train_crop:
        model.config = model.config.replace(train_crop=args.train_crop)
    deblurrer = Deblurrer(model, device="cpu")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    rows = []
    for number, case in enumerate(CASES, start=1):
        if args.cases and number not in args.cases:
            continue
        photo = load_photo(Path(args.shared), case)
        probs = deblurrer.classify(photo)
        task = max(probs, key=probs.get)  # the same expert everywhere
        start = time.perf_counter()
        whole = deblurrer.restore(photo, task=task)
        whole_s = time.perf_counter() - start
        start = time.perf_counter()
        tiled = deblurrer.restore(photo, task=task, tile=case.tile, tile_overlap=case.overlap)
        tiled_s = time.perf_counter() - start
        own = own_statistics_tiles(deblurrer, photo, task, case.tile, case.overlap)
        tlc_whole = deblurrer.restore(photo, task=task, tlc=True)
        tlc_tiled = deblurrer.restore(photo, task=task, tile=case.tile, tile_overlap=case.overlap, tlc=True)
        row = {
            "case": case.name,
            "size": f"{photo.shape[1]}x{photo.shape[0]}",
            "mean_level": round(float(photo.mean()), 1),
            "tile": case.tile,
            "overlap": case.overlap,
            "tiles": tiled.tiles,
            "expert": task,
            "same_experts": whole.experts_used == tiled.experts_used == tlc_tiled.experts_used == [task],
            "own_statistics_db": round(psnr8(own, whole.image), 2),
            "image_statistics_db": round(psnr8(tiled.image, whole.image), 2),
            "tlc_db": round(psnr8(tlc_tiled.image, tlc_whole.image), 2),
            "tlc_vs_plain_whole_db": round(psnr8(tlc_whole.image, whole.image), 2),
            "whole_s": round(whole_s, 2),
            "tiled_s": round(tiled_s, 2),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    record = {
        "command": "OMP_NUM_THREADS=1 python benchmarks/tiling_agreement.py --shared ../shared",
        "commit": commit,
        "weights": args.weights or "bundled default",
        "model": model.config.name,
        "train_crop_for_tlc": model.config.train_crop,
        "machine": f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {args.threads} thread(s)",
        "rows": rows,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(RESULTS.read_text()) if RESULTS.exists() and args.cases else None
    if previous is not None:  # a partial run replaces its own rows only
        keep = [r for r in previous["rows"] if (r["case"], r["tile"]) not in {(x["case"], x["tile"]) for x in rows}]
        record["rows"] = keep + rows
    RESULTS.write_text(json.dumps(record, indent=2) + "\n")
    print()
    print("| photograph | size | mean level | tile / overlap | tiles | expert | own statistics | image statistics | TLC tiled vs TLC whole | time whole / tiled |")
    print("| --- | --- | ---: | --- | ---: | --- | ---: | ---: | ---: | --- |")
    for r in record["rows"]:
        print(
            f"| {r['case']} | {r['size']} | {r['mean_level']} | {r['tile']} / {r['overlap']} | {r['tiles']} | "
            f"{r['expert']}{'' if r['same_experts'] else ' (experts differ!)'} | {r['own_statistics_db']:.2f} dB | "
            f"**{r['image_statistics_db']:.2f} dB** | {r['tlc_db']:.2f} dB | {r['whole_s']:.1f} s / {r['tiled_s']:.1f} s |"
        )


if __name__ == "__main__":
    main()
