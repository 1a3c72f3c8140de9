"""NIQE (Natural Image Quality Evaluator; Mittal, Soundararajan and Bovik 2012), fully offline.

A port of BasicSR's `basicsr/metrics/niqe.py` (Apache-2.0), which reproduces the authors' MATLAB
release: Y channel of MATLAB's `rgb2ycbcr` (BT.601), rounded; 96x96 blocks without overlap;
18 AGGD features per block at full and half scale, the half scale made by MATLAB's `imresize`
(bicubic with antialiasing); the distance of the fitted multivariate Gaussian to the pristine
model shipped in `assets/niqe_pris_params.npz`. Lower is better.

Measured here: baboon.png (BasicSR's test image) gives 5.729575; MATLAB R2021a gives 5.72957338.
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy import ndimage
from scipy.special import gamma

PRISTINE_PARAMS_FILE = Path(__file__).parent / "assets" / "niqe_pris_params.npz"
BLOCK_SIZE = 96  # the official recommended block size


@lru_cache(maxsize=1)
def pristine_params() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mu (1, 36), cov (36, 36), gaussian_window (7, 7)) of the pristine model."""
    with np.load(PRISTINE_PARAMS_FILE) as params:
        return params["mu_pris_param"], params["cov_pris_param"], params["gaussian_window"]


# The AGGD shape search grid and its ratio function, computed once.
_ALPHA_GRID = np.arange(0.2, 10.001, 0.001)
_RATIO_GRID = np.square(gamma(2 / _ALPHA_GRID)) / (gamma(1 / _ALPHA_GRID) * gamma(3 / _ALPHA_GRID))


def estimate_aggd_params(block: np.ndarray) -> tuple[float, float, float]:
    """Asymmetric generalised Gaussian fit (Eq. 7 of the paper): (alpha, beta_left, beta_right)."""
    values = block.ravel()
    left_std = np.sqrt(np.mean(values[values < 0] ** 2))
    right_std = np.sqrt(np.mean(values[values > 0] ** 2))
    gamma_hat = left_std / right_std
    r_hat = np.mean(np.abs(values)) ** 2 / np.mean(values**2)
    r_hat_norm = r_hat * (gamma_hat**3 + 1) * (gamma_hat + 1) / (gamma_hat**2 + 1) ** 2
    alpha = _ALPHA_GRID[np.argmin((_RATIO_GRID - r_hat_norm) ** 2)]
    scale = np.sqrt(gamma(1 / alpha) / gamma(3 / alpha))
    return float(alpha), float(left_std * scale), float(right_std * scale)


def block_features(block: np.ndarray) -> list[float]:
    """The 18 features of one normalised block: AGGD of the coefficients and of the products of
    horizontal, vertical and the two diagonal neighbours."""
    alpha, beta_left, beta_right = estimate_aggd_params(block)
    features = [alpha, (beta_left + beta_right) / 2]
    for shift in ((0, 1), (1, 0), (1, 1), (1, -1)):
        products = block * np.roll(block, shift, axis=(0, 1))
        alpha, beta_left, beta_right = estimate_aggd_params(products)
        mean = (beta_right - beta_left) * (gamma(2 / alpha) / gamma(1 / alpha))  # Eq. 8
        features.extend([alpha, mean, beta_left, beta_right])
    return features


def _cubic(x: np.ndarray) -> np.ndarray:
    absx = np.abs(x)
    absx2, absx3 = absx**2, absx**3
    return (1.5 * absx3 - 2.5 * absx2 + 1) * (absx <= 1) + (-0.5 * absx3 + 2.5 * absx2 - 4 * absx + 2) * (
        (absx > 1) & (absx <= 2)
    )


def resize_matrix(in_length: int, out_length: int, scale: float, antialiasing: bool) -> np.ndarray:
    """(out_length, in_length) matrix of MATLAB's bicubic imresize along one axis, with MATLAB's
    symmetric border handling folded in."""
    kernel_width = 4.0
    if scale < 1 and antialiasing:
        kernel_width /= scale  # widen the kernel to interpolate and antialias at once
    x = np.arange(1, out_length + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)  # output pixel centres in input coordinates (1-based)
    left = np.floor(u - kernel_width / 2)
    taps = math.ceil(kernel_width) + 2
    indices = left[:, None] + np.arange(taps)[None, :]  # (out, taps), 1-based
    distance = u[:, None] - indices
    weights = scale * _cubic(distance * scale) if scale < 1 and antialiasing else _cubic(distance)
    weights /= weights.sum(axis=1, keepdims=True)
    # MATLAB mirrors out-of-range indices: 1..n, n..1, periodically.
    mirror = np.concatenate([np.arange(in_length), np.arange(in_length)[::-1]])
    columns = mirror[(indices.astype(np.int64) - 1) % (2 * in_length)]
    matrix = np.zeros((out_length, in_length))
    np.add.at(matrix, (np.repeat(np.arange(out_length), taps), columns.ravel()), weights.ravel())
    return matrix


def matlab_imresize(image: np.ndarray, scale: float, antialiasing: bool = True) -> np.ndarray:
    """MATLAB's `imresize(image, scale)` (bicubic) for an (H, W) float image; output
    ceil(H * scale) x ceil(W * scale), float64, not rounded."""
    height, width = image.shape
    rows = resize_matrix(height, math.ceil(height * scale), scale, antialiasing)
    columns = resize_matrix(width, math.ceil(width * scale), scale, antialiasing)
    return rows @ image.astype(np.float64) @ columns.T


def rgb_to_y(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) RGB in [0, 255] -> (H, W) Y of MATLAB's rgb2ycbcr (BT.601), in [16, 235]."""
    return image @ np.array([65.481, 128.553, 24.966]) / 255.0 + 16.0


def niqe_of_luma(luma: np.ndarray, block_size: int = BLOCK_SIZE, precision: type = np.float32) -> float:
    """NIQE of an (H, W) luma image with values in [0, 255] (float). The image is cropped to
    whole blocks; it needs at least two blocks. `precision` of the filtering: np.float32 (the
    default) reproduces MATLAB R2021a's `niqe`, np.float64 the LIVE release code run in double
    precision (tests/evaluation/niqe_octave_reference.json)."""
    if luma.ndim != 2:
        raise ValueError(f"expected an (H, W) luma image, got shape {luma.shape}")
    mu_pristine, cov_pristine, window = pristine_params()
    blocks_h, blocks_w = luma.shape[0] // block_size, luma.shape[1] // block_size
    if blocks_h * blocks_w < 2:
        raise ValueError(
            f"NIQE needs at least two {block_size}x{block_size} blocks; the image is {luma.shape[1]}x{luma.shape[0]}"
        )
    # Single precision on purpose: it reproduces MATLAB R2021a's value for baboon.png to 2e-6
    # (as BasicSR's float32 port does), while float64 lands 4e-4 away, through the variance
    # E[x^2] - E[x]^2 of flat regions.
    image = luma[: blocks_h * block_size, : blocks_w * block_size].astype(precision)

    features_per_scale = []
    for scale in (1, 2):
        mu = ndimage.convolve(image, window, mode="nearest")
        sigma = np.sqrt(np.abs(ndimage.convolve(image * image, window, mode="nearest") - mu * mu))
        normalised = (image - mu) / (sigma + 1)  # Eq. 1
        size = block_size // scale
        features = [
            block_features(normalised[i * size : (i + 1) * size, j * size : (j + 1) * size])
            for j in range(blocks_w)
            for i in range(blocks_h)
        ]
        features_per_scale.append(np.array(features))
        if scale == 1:
            image = (matlab_imresize(image / 255.0, scale=0.5) * 255.0).astype(precision)

    features = np.concatenate(features_per_scale, axis=1)  # (blocks, 36)
    mu_distorted = np.nanmean(features, axis=0)
    complete = features[~np.isnan(features).any(axis=1)]
    cov_distorted = np.cov(complete, rowvar=False)
    difference = mu_pristine - mu_distorted
    inverse = np.linalg.pinv((cov_pristine + cov_distorted) / 2)
    return float(np.sqrt(np.squeeze(difference @ inverse @ difference.T)))  # Eq. 10


def niqe(image: np.ndarray, crop_border: int = 0, precision: type = np.float32) -> float:
    """NIQE of an image (lower is better).

    image: (H, W, 3) RGB or (H, W) gray; uint8, uint16 (scaled to [0, 255]) or float in [0, 1].
    RGB is converted to MATLAB's Y channel; values are rounded to integers first, as MATLAB
    reads 8-bit images. crop_border pixels are dropped on every side. `precision`: see
    `niqe_of_luma` (the default, float32, is MATLAB's).
    """
    image = np.asarray(image)
    if image.dtype == np.uint8:
        values = image.astype(np.float64)
    elif image.dtype == np.uint16:
        values = image.astype(np.float64) * (255.0 / 65535.0)
    elif np.issubdtype(image.dtype, np.floating):
        values = np.clip(image.astype(np.float64), 0.0, 1.0) * 255.0
    else:
        raise TypeError(f"unsupported pixel type {image.dtype}; expected uint8, uint16 or float")
    if values.ndim == 3 and values.shape[2] in (3, 4):
        luma = rgb_to_y(values[:, :, :3])
    elif values.ndim == 3 and values.shape[2] == 1:
        luma = values[:, :, 0]
    elif values.ndim == 2:
        luma = values
    else:
        raise ValueError(f"expected an (H, W) or (H, W, 3) image, got shape {image.shape}")
    if crop_border:
        luma = luma[crop_border:-crop_border, crop_border:-crop_border]
    return niqe_of_luma(np.round(luma), precision=precision)
