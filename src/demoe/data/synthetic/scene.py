"""Random scene structure as pure functions: object masks (for local motion) and layered depth
maps (for defocus)."""

from __future__ import annotations

import cv2
import numpy as np


def object_mask(
    rng: np.random.Generator,
    height: int,
    width: int,
    area_fraction: float,
    num_vertices: int = 8,
    roughness: float = 0.3,
    feather_px: float = 1.0,
) -> np.ndarray:
    """A random object silhouette: a star-shaped polygon around a centre in the middle half of
    the image, rounded, with a Gaussian-feathered edge.

    `area_fraction` of the image is (roughly) covered; `roughness` in [0, 0.9] is the relative
    jitter of the vertex radii. Returns: (H, W) float32 in [0, 1] (1 = object).
    """
    if not 0.0 < area_fraction < 1.0:
        raise ValueError(f"area_fraction must be in (0, 1), got {area_fraction}")
    radius = np.sqrt(area_fraction * height * width / np.pi)
    center = np.array([rng.uniform(0.25, 0.75) * width, rng.uniform(0.25, 0.75) * height])
    angles = np.sort(rng.uniform(0.0, 2.0 * np.pi, num_vertices))
    radii = radius * (1.0 + rng.uniform(-roughness, roughness, num_vertices))
    aspect = rng.uniform(0.6, 1.4)  # objects are often taller or wider than round
    vertices = center + np.stack([radii * np.cos(angles) * aspect, radii * np.sin(angles) / aspect], axis=1)
    supersample = 4  # draw at 4x with sub-pixel vertices, so the outline is anti-aliased
    canvas = np.zeros((height * supersample, width * supersample), dtype=np.uint8)
    cv2.fillPoly(canvas, [np.round(vertices * supersample).astype(np.int32)], 255, lineType=cv2.LINE_8)
    mask = cv2.resize(canvas, (width, height), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    # Round the polygon's corners, then re-sharpen into a blob with a soft rim.
    mask = cv2.GaussianBlur(mask, (0, 0), sigmaX=max(radius * 0.15, 0.5))
    mask = np.clip((mask - 0.5) * 4.0 + 0.5, 0.0, 1.0)
    if feather_px > 0:
        mask = cv2.GaussianBlur(mask, (0, 0), sigmaX=feather_px)
    return mask.astype(np.float32)


def random_depth_map(
    rng: np.random.Generator, height: int, width: int, correlation: float = 0.5, tilt: float = 0.5
) -> np.ndarray:
    """A smooth random depth map: smooth random structure of size `correlation` (a fraction of
    the image side) blended with a planar ramp (a ground plane seen at an angle) of weight
    `tilt` in [0, 1].

    Returns: (H, W) float32 in [0, 1] (0 = nearest, 1 = farthest).
    """
    side = max(height, width)
    cells = max(2, int(np.ceil(1.0 / correlation)) + 1)
    coarse = rng.standard_normal((cells, cells)).astype(np.float32)
    structure = cv2.resize(coarse, (side, side), interpolation=cv2.INTER_CUBIC)[:height, :width]
    angle = rng.uniform(0.0, 2.0 * np.pi)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    ramp = (np.cos(angle) * xs + np.sin(angle) * ys) / side
    depth = (1.0 - tilt) * _normalize(structure) + tilt * _normalize(ramp)
    return _normalize(depth)


def _normalize(values: np.ndarray) -> np.ndarray:
    low, high = float(values.min()), float(values.max())
    if high - low < 1e-12:
        return np.zeros_like(values, dtype=np.float32)
    return ((values - low) / (high - low)).astype(np.float32)


def quantize_depth(depth: np.ndarray, num_layers: int) -> np.ndarray:
    """(H, W) depth in [0, 1] -> (H, W) int layer index in 0..num_layers-1 (0 = nearest),
    equal-width bins."""
    if num_layers < 1:
        raise ValueError(f"num_layers must be >= 1, got {num_layers}")
    return np.minimum((depth * num_layers).astype(np.int64), num_layers - 1)
