"""Real blur against demoe's synthetic blur: extent, noise, exposure, resolution (issue 16,
item 3; the tables of docs/synthetic-blur.md "Real blur against the synthetic blur").

    python benchmarks/compare_real_blur.py [--shared ../shared] [--photos 21] [--calibration-photos 12] \
        [--seed 0] [--out tables.md] [--json measurements.json]

The real images of shared/data/real are test data: they are only measured here, never written
anywhere or trained on. The synthetic side is generated from the *validation* photographs
(shared/data/sharp/Kodak24 + McMaster), one whole-photograph sample per class and photograph,
for two sets of ranges: `validation` (the ranges benchmarks/gate.py pins = the generator's
defaults before this comparison) and `default` (`SynthConfig()` now). Every image, real or
synthetic, is measured as an 8-bit sRGB image with the same functions:

- `estimate_kernel` + `kernel_size`: the blur kernel of a blurry/sharp pair, fitted by
  Tikhonov-regularised least squares on the image gradients in the Fourier domain (the kernel
  step of Cho & Lee 2009), on 256-px tiles of large images (real blur varies across a frame);
  its size as `length` = sqrt(12 * largest eigenvalue of the kernel's second moments): the
  length of the straight uniform motion with the same spread (a length-L line gives L);
- `edge_widths`: a no-reference blur extent for images without a sharp twin. At Canny edges
  the derivative across the edge is sampled along the gradient direction; its standard
  deviation over the edge (down to 15 % of the peak) is the edge's width. A straight edge
  blurred by a disk of radius r has width r / 2, by a line of length L across it L / sqrt(12),
  plus the photograph's own edge softness; `calibration` maps the 90th percentile of widths
  back to an equivalent disk radius and straight-motion length by blurring the validation
  photographs with known disks and lines;
- `noise_sigma`: Gaussian-equivalent noise standard deviation from the finest Haar diagonal
  wavelet coefficients (Donoho's estimator, as `skimage.restoration.estimate_sigma` with the
  Haar wavelet, which needs no PyWavelets) of the flattest fifth of unclipped 2x2 blocks;
  texture leaves a floor of ~1-4/255 on sharp photographs (see the `val sharp` row);
- `exposure`: mean Rec. 709 luma of the sRGB values (the luminance `DarkSceneConfig` sets),
  its percentiles and the fraction of saturated pixels (luma >= 0.98).

Widths, lengths and radii are in pixels of the image as stored, and also at the training
scale: the image area-downscaled to a longer side of 500 px (the validation photographs are
500x500, the training photographs 481x321 to 512x512).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from scipy import ndimage
from skimage import feature

from demoe.config import TASK_NAMES
from demoe.data.synthetic import DarkSceneConfig, SynthConfig, camera, kernels, sharp_image_paths, synthesize_sample
from demoe.data.synthetic.generator import LUMA_WEIGHTS, shake_kernel
from demoe.fileio import atomic_write
from demoe.imageio import read_rgb_float

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gate import VALIDATION_SYNTH  # noqa: E402  (the pinned ranges = the defaults before item 3)

TRAINING_SIDE = 500  # longer side of the training / validation photographs, in pixels
TILE = 256  # side of the tiles a large pair's kernels are fitted on
REAL = {  # folder of shared/data/real -> blur class it stands for
    "GoPro": "synth_global_motion",
    "RealBlur": "global_motion",
    "Real-LOLBlur": "low_light",
    "LOLBlur": "low_light",
    "CUHK_defocus": "defocus",
    "defocus_misc": "defocus",
}
VAL_COLLECTIONS = ("Kodak24", "McMaster")
CALIBRATION_RADII = (0.0, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0)
CALIBRATION_LENGTHS = (0.0, 4.0, 8.0, 12.0, 16.0, 24.0, 32.0, 48.0, 64.0)


# ---------------------------------------------------------------------------------------------
# Measures: pure functions of (H, W, 3) float32 sRGB images in [0, 1]


def luma(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) sRGB -> (H, W) Rec. 709 luma of the encoded values."""
    return image @ LUMA_WEIGHTS


def quantise(image: np.ndarray) -> np.ndarray:
    """To 8-bit values, as the real images are stored."""
    return (np.round(np.clip(image, 0.0, 1.0) * 255) / 255).astype(np.float32)


def estimate_kernel(blurry: np.ndarray, sharp: np.ndarray, radius: int, regularization: float = 1e-2) -> np.ndarray:
    """The blur kernel k with blurry = k * sharp, fitted on gradients (Fourier-domain Tikhonov).

    Args:
        blurry, sharp: (H, W) float, linear light, aligned.
        radius: half-size of the returned support.
        regularization: Tikhonov weight relative to the mean gradient power of `sharp`.
    Returns: (2 radius + 1, 2 radius + 1) float64, not clipped or normalised.
    """
    height, width = blurry.shape
    # Flat-topped window: the periodic FFT must not see the tile's borders as edges.
    window = np.outer(np.hanning(height) ** 0.25, np.hanning(width) ** 0.25)
    numerator, denominator = 0.0, 0.0
    for axis in (0, 1):
        sharp_gradient = np.diff(sharp, axis=axis, append=sharp.take([-1], axis=axis)) * window
        blurry_gradient = np.diff(blurry, axis=axis, append=blurry.take([-1], axis=axis)) * window
        sharp_spectrum, blurry_spectrum = np.fft.rfft2(sharp_gradient), np.fft.rfft2(blurry_gradient)
        numerator = numerator + np.conj(sharp_spectrum) * blurry_spectrum
        denominator = denominator + np.abs(sharp_spectrum) ** 2
    kernel = np.fft.fftshift(np.fft.irfft2(numerator / (denominator + regularization * denominator.mean()), s=(height, width)))
    center_y, center_x = height // 2, width // 2
    return kernel[center_y - radius : center_y + radius + 1, center_x - radius : center_x + radius + 1]


@dataclass(frozen=True)
class KernelSize:
    length: float  # sqrt(12 * largest second-moment eigenvalue): a length-L straight line gives L
    width: float  # the same across the main direction
    extent: float  # largest distance of two support pixels (what ShakeConfig.length_px sets)


def kernel_size(kernel: np.ndarray, threshold: float = 0.05) -> KernelSize:
    """Size of a (K, K) kernel: negative values and values below `threshold` x its peak are
    dropped (estimation noise), and only the connected support around the peak is kept."""
    kernel = np.clip(np.asarray(kernel, dtype=np.float64), 0.0, None)
    kernel = np.where(kernel > threshold * kernel.max(), kernel, 0.0)
    _, labels = cv2.connectedComponents((kernel > 0).astype(np.uint8), connectivity=8)
    kernel = np.where(labels == labels[np.unravel_index(kernel.argmax(), kernel.shape)], kernel, 0.0)
    ys, xs = np.nonzero(kernel)
    weights = kernel[ys, xs] / kernel.sum()
    points = np.stack([xs, ys], axis=1).astype(np.float64)
    centred = points - weights @ points
    eigenvalues = np.linalg.eigvalsh((centred * weights[:, None]).T @ centred)
    extent = float(np.sqrt(((points[:, None] - points[None]) ** 2).sum(-1)).max()) if len(points) > 1 else 0.0
    return KernelSize(float(np.sqrt(12 * eigenvalues[-1])), float(np.sqrt(12 * max(eigenvalues[0], 0.0))), extent)


def tile_origins(height: int, width: int, tile: int = TILE) -> list[tuple[int, int]]:
    """Top-left corners of overlapping tiles covering an image (one tile if it is smaller)."""
    if min(height, width) < tile:
        return [(0, 0)]
    rows = np.linspace(0, height - tile, round(height / tile) + 1).astype(int)
    cols = np.linspace(0, width - tile, round(width / tile) + 1).astype(int)
    return [(int(row), int(col)) for row in rows for col in cols]


def pair_kernel_lengths(blurry: np.ndarray, sharp: np.ndarray) -> list[float]:
    """Kernel lengths of a blurry/sharp sRGB pair, one per tile (small pairs: one, whole)."""
    blurry_linear, sharp_linear = luma(camera.srgb_to_linear(blurry)), luma(camera.srgb_to_linear(sharp))
    height, width = blurry_linear.shape
    side = min(TILE, height, width)
    radius = min(40, side // 3)
    lengths = []
    for row, col in tile_origins(height, width):
        window = (slice(row, row + side), slice(col, col + side)) if side == TILE else (slice(None), slice(None))
        kernel = estimate_kernel(blurry_linear[window], sharp_linear[window], radius)
        lengths.append(kernel_size(kernel).length)
    return lengths


def edge_widths(image: np.ndarray, max_edges: int = 3000, reach: int = 40, min_contrast: float = 0.08,
                seed: int = 0) -> np.ndarray:
    """Widths (px) of the edges of an sRGB image: at up to `max_edges` Canny edge pixels, the
    standard deviation of the derivative across the edge, sampled along the gradient over the
    contiguous stretch where it stays above 15 % of its value at the edge.

    The luma is first scaled so that its 99.5th percentile is 1 (dark images keep their
    edges) and smoothed by a Gaussian of sigma 1 (noise). Edges whose stretch reaches
    `reach` px or whose step is below `min_contrast` are left out.
    Returns: (N,) float64 widths.
    """
    gray = luma(image)
    gray = np.clip(gray / max(float(np.percentile(gray, 99.5)), 0.02), 0.0, 1.0).astype(np.float32)
    gray = cv2.GaussianBlur(gray, (0, 0), 1.0)
    gradient_x = cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=3, scale=1 / 8)
    gradient_y = cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=3, scale=1 / 8)
    magnitude = np.hypot(gradient_x, gradient_y)
    ys, xs = np.nonzero(feature.canny(gray, sigma=0.0, low_threshold=0.004, high_threshold=0.008))
    if len(ys) > max_edges:
        pick = np.random.default_rng(seed).choice(len(ys), max_edges, replace=False)
        ys, xs = ys[pick], xs[pick]
    normal_x, normal_y = gradient_x[ys, xs] / magnitude[ys, xs], gradient_y[ys, xs] / magnitude[ys, xs]
    offsets = np.arange(-reach, reach + 0.25, 0.5)
    sample_x = xs[:, None] + offsets[None] * normal_x[:, None]  # (N, T)
    sample_y = ys[:, None] + offsets[None] * normal_y[:, None]
    across = (ndimage.map_coordinates(gradient_x, [sample_y, sample_x], order=1, mode="nearest") * normal_x[:, None]
              + ndimage.map_coordinates(gradient_y, [sample_y, sample_x], order=1, mode="nearest") * normal_y[:, None])
    centre = len(offsets) // 2
    above = across > 0.15 * across[:, centre : centre + 1]
    stop = np.zeros((len(ys), 1), dtype=bool)
    right = np.argmin(np.concatenate([above[:, centre:], stop], axis=1), axis=1)  # samples kept after the centre
    left = np.argmin(np.concatenate([above[:, centre::-1], stop], axis=1), axis=1)
    index = np.arange(len(offsets))[None]
    inside = (index < centre + right[:, None]) & (index > centre - left[:, None])
    weights = np.where(inside, across, 0.0)
    total = weights.sum(1)
    contrast = total * 0.5  # the step: the derivative integrated over the edge (0.5-px samples)
    mean = (weights * offsets).sum(1) / np.maximum(total, 1e-12)
    variance = (weights * (offsets[None] - mean[:, None]) ** 2).sum(1) / np.maximum(total, 1e-12)
    whole = (right < len(offsets) - centre) & (left < centre + 1)  # did not run out of reach
    return np.sqrt(variance[(contrast > min_contrast) & whole])


def noise_sigma(image: np.ndarray, flat_fraction: float = 0.2) -> float:
    """Gaussian-equivalent noise sigma (in [0, 1] units) of an sRGB image: the finest Haar
    diagonal coefficients (sigma-preserving for white noise) of the flattest `flat_fraction`
    of the 2x2 blocks whose values are not clipped at 0 or 1, averaged over channels."""
    height, width = image.shape[0] // 2 * 2, image.shape[1] // 2 * 2
    pixels = image[:height, :width].astype(np.float32)
    smooth = cv2.GaussianBlur(luma(pixels), (0, 0), 2.0)
    structure = np.hypot(cv2.Sobel(smooth, cv2.CV_32F, 1, 0), cv2.Sobel(smooth, cv2.CV_32F, 0, 1))
    blocks = pixels.reshape(height // 2, 2, width // 2, 2, 3)
    unclipped = ((blocks > 0.5 / 255) & (blocks < 254.5 / 255)).all(axis=(1, 3, 4))
    block_structure = structure.reshape(height // 2, 2, width // 2, 2).max(axis=(1, 3))
    if unclipped.sum() < 100:
        return float("nan")
    flat = unclipped & (block_structure <= np.quantile(block_structure[unclipped], flat_fraction))
    diagonal = (blocks[:, 0, :, 0] - blocks[:, 0, :, 1] - blocks[:, 1, :, 0] + blocks[:, 1, :, 1]) / 2  # (h, w, 3)
    # mean |x| * sqrt(pi / 2) = sigma for Gaussian x; a median would snap to 8-bit steps.
    return float(np.mean(np.abs(diagonal[flat]), axis=0).mean() * np.sqrt(np.pi / 2))


def exposure(image: np.ndarray) -> dict[str, float]:
    """Mean luma, its 5th / 50th / 95th / 99th percentiles, fraction saturated (>= 0.98)."""
    values = luma(image)
    p5, p50, p95, p99 = np.percentile(values, (5, 50, 95, 99))
    return {"mean": float(values.mean()), "p5": float(p5), "p50": float(p50), "p95": float(p95),
            "p99": float(p99), "saturated": float((values >= 0.98).mean())}


def to_training_scale(image: np.ndarray) -> tuple[np.ndarray, float]:
    """Area-downscale so the longer side is TRAINING_SIDE (smaller images are kept). Returns
    (image, scale factor <= 1)."""
    height, width = image.shape[:2]
    scale = min(1.0, TRAINING_SIDE / max(height, width))
    if scale == 1.0:
        return image, 1.0
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA), scale


def width_p90(image: np.ndarray) -> float:
    widths = edge_widths(image)
    return float(np.percentile(widths, 90)) if len(widths) >= 20 else float("nan")


# ---------------------------------------------------------------------------------------------
# Measuring image sets


def measure(image: np.ndarray) -> dict:
    """Every no-reference measure of one sRGB image, at its own size and at training scale."""
    widths = edge_widths(image)
    enough = len(widths) >= 20  # fewer edges give no usable percentiles
    small, scale = to_training_scale(image)
    p90 = float(np.percentile(widths, 90)) if enough else float("nan")
    return {
        "size": [int(image.shape[1]), int(image.shape[0])],
        "scale": scale,
        "edges": int(len(widths)),
        "width_p50": float(np.percentile(widths, 50)) if enough else float("nan"),
        "width_p90": p90,
        "width_p90_training_scale": width_p90(small) if scale < 1 else p90,
        "noise": noise_sigma(image),
        "exposure": exposure(image),
    }


def real_images(shared: Path) -> dict[str, list[tuple[str, np.ndarray, np.ndarray | None]]]:
    """{folder: [(name, blurry, sharp or None)]} of shared/data/real (8-bit sRGB)."""
    collections = {}
    for folder in REAL:
        root = shared / "data" / "real" / folder
        items = []
        for blurry_path in sharp_image_paths(root / "blur"):
            sharp_path = root / "sharp" / blurry_path.name
            sharp = read_rgb_float(sharp_path) if sharp_path.is_file() else None
            items.append((blurry_path.name, read_rgb_float(blurry_path), sharp))
        collections[folder] = items
    return collections


def synthetic_images(photos: list[Path], config: SynthConfig, seed: int) -> dict[str, list[tuple[str, np.ndarray, np.ndarray, float]]]:
    """{class or "class (dark)": [(name, blurry, sharp, true global-motion kernel length)]}: one
    whole-photograph sample per class and photograph, and the four non-low-light classes again
    as dark scenes (mean luminance from `DarkSceneConfig`, probability 1)."""
    dark = dataclasses.replace(config, dark_scene=DarkSceneConfig(probability=1.0))
    normal = dataclasses.replace(config, dark_scene=DarkSceneConfig(probability=0.0))
    sets: dict[str, list] = {}
    for photo_index, path in enumerate(photos):
        photo = read_rgb_float(path)
        for task_index, task in enumerate(TASK_NAMES):
            variants = [("", normal)] + ([(" (dark)", dark)] if task != "low_light" else [])
            for variant_index, (suffix, variant) in enumerate(variants):
                key = (seed, photo_index, task_index, variant_index)
                sample = synthesize_sample(photo, task, np.random.default_rng(key), variant)
                true_length = float("nan")
                if task == "global_motion" and not suffix:  # replay the generator's first draw: its PSF
                    true_length = kernel_size(shake_kernel(np.random.default_rng(key), variant.global_motion.shake), 0.0).length
                sets.setdefault(task + suffix, []).append(
                    (f"{path.parent.name}/{path.stem}", quantise(sample.blurry), quantise(sample.sharp), true_length))
    return sets


def calibration(photos: list[Path]) -> dict[str, list[list[float]]]:
    """Edge-width 90th percentile (median over photographs) of the validation photographs blurred
    by a known disk radius / straight line (random direction) in linear light."""
    images = [read_rgb_float(path) for path in photos]
    curves = {"disk_radius": [], "line_length": []}
    for radius in CALIBRATION_RADII:
        kernel = kernels.disk_kernel(radius)
        values = [width_p90(quantise(camera.linear_to_srgb(camera.convolve(camera.srgb_to_linear(image), kernel))))
                  for image in images]
        curves["disk_radius"].append([radius, float(np.nanmedian(values))])
    for length in CALIBRATION_LENGTHS:
        values = []
        for index, image in enumerate(images):
            kernel = kernels.linear_motion_kernel(length, 0.7 * index) if length > 0 else np.ones((1, 1), np.float32)
            values.append(width_p90(quantise(camera.linear_to_srgb(camera.convolve(camera.srgb_to_linear(image), kernel)))))
        curves["line_length"].append([length, float(np.nanmedian(values))])
    return curves


def equivalent(curve: list[list[float]], width: float) -> str:
    """Invert a calibration curve (parameter, width) by linear interpolation: '<lo', '>hi' beyond."""
    parameters, widths = np.array(curve).T
    widths = np.maximum.accumulate(widths)  # measured curves are monotonic up to noise
    if not np.isfinite(width):
        return "-"
    if width <= widths[0]:
        return f"<={parameters[0]:.0f}"
    if width > widths[-1]:
        return f">{parameters[-1]:.0f}"
    return f"{np.interp(width, widths, parameters):.1f}"


# ---------------------------------------------------------------------------------------------
# Tables


def _stats(values: list[float]) -> str:
    values = np.array([value for value in values if np.isfinite(value)])
    if len(values) == 0:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{np.median(values):.2f} [{values.min():.2f}-{values.max():.2f}]"


def _median(values: list[float]) -> float:
    values = [value for value in values if np.isfinite(value)]
    return float(np.median(values)) if values else float("nan")


def _max(values: list[float]) -> float:
    values = [value for value in values if np.isfinite(value)]
    return float(np.max(values)) if values else float("nan")


def tables(result: dict) -> str:
    lines = []
    real, synthetic, curves = result["real"], result["synthetic"], result["calibration"]

    lines += ["### Resolution", "", "| set | class | images | size (W x H) | long side | x to reach 500 px |", "|---|---|---|---|---|---|"]
    for folder, rows in real.items():
        sizes = sorted({f"{row['size'][0]}x{row['size'][1]}" for row in rows})
        sides = [max(row["size"]) for row in rows]
        lines.append(f"| {folder} | {REAL[folder]} | {len(rows)} | {', '.join(sizes[:3])}{' ...' if len(sizes) > 3 else ''} "
                     f"| {int(np.median(sides))} | {_stats([row['scale'] for row in rows])} |")
    lines.append(f"| val (Kodak24 + McMaster) | source photos | {result['photos']} | 500x500 | 500 | 1 |")

    lines += ["", "### Kernel length from blurry/sharp pairs (px, at the stored size)", "",
              "Per image: median [min-max] over its 256-px tiles (images under 256 px: one fit on the whole crop).", "",
              "| pair | class | size | tiles | kernel length | at 500 px | p90 edge width of the blurry image |",
              "|---|---|---|---|---|---|---|"]
    for row in result["real_kernels"]:
        lines.append(f"| {row['name']} | {row['class']} | {row['size'][0]}x{row['size'][1]} | {len(row['lengths'])} "
                     f"| {_stats(row['lengths'])} | {_median(row['lengths']) * row['scale']:.1f} | {row['width_p90']:.2f} |")
    for config_name in ("validation", "default"):
        for task in ("global_motion", "synth_global_motion"):
            rows = synthetic[config_name]["kernels"][task]
            lengths = [_median(row["lengths"]) for row in rows]
            lines.append(f"| synthetic {task}, {config_name} ranges | {task} | 500x500 | {sum(len(r['lengths']) for r in rows)} "
                         f"| {_stats(lengths)} | {np.median(lengths):.1f} | {_stats([r['width_p90'] for r in rows])} |")
    checks = synthetic["default"]["kernel_check"]
    if checks:
        error = np.array([row[1] - row[0] for row in checks])
        lines += ["", f"Estimator check (synthetic global_motion of the default ranges, true PSF known): estimated - true "
                  f"length {np.median(error):+.2f} px median, |error| <= {np.percentile(np.abs(error), 90):.2f} px for 90 % of "
                  f"{len(checks)} pairs, {int((np.abs(error) > 2).sum())} fits off by more than 2 px (worst {np.abs(error).max():.1f})."]

    lines += ["", "### Edge widths (no reference; px)", "",
              "Per set: median [min-max] over images of each image's 50th / 90th percentile edge width; the "
              "90th percentile as the equivalent uniform disk radius and straight-motion length of the "
              "calibration (median image / blurriest image).", "",
              "| set | images | p50 width | p90 width | p90 width at 500 px | p90 minus the sharp photograph's | disk radius eq. (median / max) | line length eq. (median / max) |",
              "|---|---|---|---|---|---|---|---|"]

    def edge_row(label: str, rows: list[dict], sharp_rows: list[dict] | None = None) -> str:
        p90 = [row["width_p90"] for row in rows]
        added = "-" if sharp_rows is None else _stats([row["width_p90"] - sharp["width_p90"] for row, sharp in zip(rows, sharp_rows)])
        p90_small = [row["width_p90_training_scale"] for row in rows]
        return (f"| {label} | {len(rows)} | {_stats([row['width_p50'] for row in rows])} | {_stats(p90)} | {_stats(p90_small)} | {added} "
                f"| {equivalent(curves['disk_radius'], _median(p90))} / {equivalent(curves['disk_radius'], _max(p90))} "
                f"| {equivalent(curves['line_length'], _median(p90))} / {equivalent(curves['line_length'], _max(p90))} |")

    for folder, rows in real.items():
        rows = [row for row in rows if min(row["size"]) >= 100]
        if rows:
            lines.append(edge_row(f"real {folder} ({REAL[folder]})", rows))
    lines.append(edge_row("real GoPro sharp frames", result["real_sharp"]))
    lines.append(edge_row("val sharp", result["val_sharp"]))
    for config_name in ("validation", "default"):
        for task in TASK_NAMES:
            lines.append(edge_row(f"synthetic {task}, {config_name}", synthetic[config_name]["measures"][task], result["val_sharp"]))
    lines += ["", "Calibration (validation photographs, p90 width): disk radius " +
              ", ".join(f"{p:g}: {w:.2f}" for p, w in curves["disk_radius"]) + "; line length " +
              ", ".join(f"{p:g}: {w:.2f}" for p, w in curves["line_length"]) + "."]

    lines += ["", "### Noise and exposure", "",
              "Noise: sigma in 8-bit levels (x 255). Luma of the sRGB values: median [min-max] over images.", "",
              "| set | images | noise sigma | mean luma | p50 luma | p99 luma | saturated % |", "|---|---|---|---|---|---|---|"]

    def noise_row(label: str, rows: list[dict]) -> str:
        return (f"| {label} | {len(rows)} | {_stats([row['noise'] * 255 for row in rows])} "
                f"| {_stats([row['exposure']['mean'] for row in rows])} | {_stats([row['exposure']['p50'] for row in rows])} "
                f"| {_stats([row['exposure']['p99'] for row in rows])} | {_stats([row['exposure']['saturated'] * 100 for row in rows])} |")

    for folder, rows in real.items():
        lines.append(noise_row(f"real {folder} ({REAL[folder]})", rows))
    lines.append(noise_row("val sharp", result["val_sharp"]))
    for config_name in ("validation", "default"):
        for task in (*TASK_NAMES, *(f"{task} (dark)" for task in TASK_NAMES if task != "low_light")):
            lines.append(noise_row(f"synthetic {task}, {config_name}", synthetic[config_name]["measures"][task]))
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", type=Path, default=Path("../shared"), help="the shared folder (data/real, data/sharp)")
    parser.add_argument("--photos", type=int, default=42, help="validation photographs to synthesise from (every k-th of the 42)")
    parser.add_argument("--calibration-photos", type=int, default=12, help="validation photographs of the calibration curves")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="write the markdown tables here (default: print only)")
    parser.add_argument("--json", type=Path, help="write every per-image measurement here")
    args = parser.parse_args(argv)
    if not (args.shared / "data" / "real").is_dir():
        parser.error(f"{args.shared / 'data' / 'real'} is not a folder; pass --shared")
    if not 1 <= args.photos <= 42 or not 1 <= args.calibration_photos <= 42:
        parser.error("--photos and --calibration-photos must be in 1..42")
    cv2.setNumThreads(1)
    started = time.time()

    all_photos = [path for name in VAL_COLLECTIONS for path in sharp_image_paths(args.shared / "data" / "sharp" / name)]
    pick = lambda count: [all_photos[int(i)] for i in np.linspace(0, len(all_photos) - 1, count).round()]  # noqa: E731
    photos = pick(args.photos)

    result: dict = {"photos": len(photos), "real": {}, "real_kernels": [], "synthetic": {}}
    real_sharp = []
    for folder, items in real_images(args.shared).items():
        result["real"][folder] = [dict(measure(blurry), name=name) for name, blurry, _ in items]
        for name, blurry, sharp in items:
            if sharp is None:
                continue
            real_sharp.extend([measure(sharp)] if min(sharp.shape[:2]) >= 100 else [])
            result["real_kernels"].append({"name": f"{folder}/{name}", "class": REAL[folder],
                                           "size": [int(blurry.shape[1]), int(blurry.shape[0])],
                                           "scale": to_training_scale(blurry)[1],
                                           "lengths": pair_kernel_lengths(blurry, sharp),
                                           "width_p90": width_p90(blurry)})
    result["real_sharp"] = real_sharp
    result["val_sharp"] = [measure(read_rgb_float(path)) for path in photos]
    print(f"real images measured ({time.time() - started:.0f} s)", file=sys.stderr)

    for config_name, config in (("validation", VALIDATION_SYNTH), ("default", SynthConfig())):
        sets = synthetic_images(photos, config, args.seed)
        measures = {task: [measure(blurry) for _, blurry, _, _ in rows] for task, rows in sets.items()}
        pair_kernels = {task: [{"name": name, "lengths": pair_kernel_lengths(blurry, sharp), "width_p90": row["width_p90"]}
                               for (name, blurry, sharp, _), row in zip(sets[task], measures[task])]
                        for task in ("global_motion", "synth_global_motion")}
        check = [[true, _median(fit["lengths"])] for (_, _, _, true), fit in zip(sets["global_motion"], pair_kernels["global_motion"])]
        result["synthetic"][config_name] = {"config": dataclasses.asdict(config), "measures": measures,
                                            "kernels": pair_kernels, "kernel_check": check}
        print(f"synthetic ({config_name} ranges) measured ({time.time() - started:.0f} s)", file=sys.stderr)

    result["calibration"] = calibration(pick(args.calibration_photos))
    result["seconds"] = time.time() - started
    text = tables(result)
    print(text)
    if args.out:
        atomic_write(args.out, lambda path: Path(path).write_text(text))
    if args.json:
        atomic_write(args.json, lambda path: Path(path).write_text(json.dumps(result, indent=1, default=float)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
