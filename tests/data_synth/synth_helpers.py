"""Test scenes and measures shared by the synthetic-blur tests."""

import numpy as np


def textured_image(height: int = 96, width: int = 96, seed: int = 0) -> np.ndarray:
    """(H, W, 3) float32 sRGB test scene with edges and fine texture: coloured 6-px checks,
    a smooth gradient and a little noise."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width]
    checks = ((ys // 6 + xs // 6) % 2).astype(np.float32)
    image = np.stack([0.2 + 0.6 * checks, 0.3 + 0.4 * xs / width, 0.8 - 0.6 * checks * ys / height], axis=2)
    image += rng.normal(0.0, 0.02, image.shape)
    return np.clip(image, 0.0, 1.0).astype(np.float32)


def high_frequency_energy(image: np.ndarray) -> float:
    """Mean squared difference of horizontal and vertical neighbours."""
    return float((np.diff(image, axis=0) ** 2).mean() + (np.diff(image, axis=1) ** 2).mean())
