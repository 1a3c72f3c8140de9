"""NRQM, the no-reference quality metric of Ma, Yang, Yang and Yang, "Learning a no-reference
quality metric for single-image super-resolution", CVIU 158 (2017); higher is better (~0-10).

MATLAB code: https://github.com/chaoma99/sr-metric. The numbers follow pyiqa's implementation
(`pyiqa.create_metric("nrqm")`, version 0.1.16), which the deblurring literature reports; where
pyiqa departs from the MATLAB code, this module follows pyiqa.

The image is reduced to the Y of YIQ in [0, 255], rounded. Three groups of features are computed:

- f1 (18): statistics of 7x7 DCTs of overlapping blocks (stride 3) on a three-level Gaussian
  pyramid: generalised-Gaussian shape, coefficient of variation, spread over three orientations;
- f2 (45): a complex steerable pyramid (2 scales, 6 orientations) divisively normalised by its
  neighbourhoods (Gaussian scale mixture); shapes of the normalised subbands, SSIM contrast-structure
  between scales and between orientations;
- f3 (75): singular values of the 5x5 distinct blocks of each pyramid level.

Each group goes through a regression forest (randomforest-matlab's `regRF_train` layout) and the
three predictions are combined linearly: quality = [1, p1, p2, p3] @ linear. The trained forests
are the authors'; demoe does not ship or download them: pass the path of `NRQM_model.mat`.

All arithmetic is float64, except that the Y channel is computed in single precision exactly
as pyiqa computes it (the same integers for every 8-bit RGB triple) and the 3x3 pyramid window is
rounded to single precision as pyiqa stores it. The features then agree with pyiqa's to ~1e-7
relative; the rest comes from pyiqa's single-precision bicubic resize and shape grid (its shapes
are float32 values such as 2.5440001487731934 where this module gives 2.544).

Example:
    >>> model = load_nrqm_model("NRQM_model.mat")  # doctest: +SKIP
    >>> score = nrqm(image, model)  # image: (H, W, 3) uint8, at least 84x84  # doctest: +SKIP
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.io
from scipy import fft, ndimage
from scipy.special import gammaln

from demoe.evaluation.niqe import resize_matrix

NUM_ORIENTATIONS = 6  # orientation bands of the steerable pyramid
NUM_SCALES = 2  # band-pass scales of the steerable pyramid
PYRAMID_LEVELS = 3  # Gaussian pyramid levels for the DCT and SVD features
SVD_BLOCK = 5  # distinct blocks whose singular values form f3
SVD_VALUES = SVD_BLOCK * SVD_BLOCK  # singular values kept per level (needs that many blocks)
FEATURE_SIZES = (18, 45, 75)  # lengths of f1, f2, f3
MIN_SIDE = 45  # the orientation SSIMs need 11x11 pixels of the guard-banded finest subbands

# --------------------------------------------------------------------------------------------
# Input


def _single(values: np.ndarray) -> np.ndarray:
    """Round float64 values to single precision (kept as float64)."""
    return values.astype(np.float32).astype(np.float64)


def yiq_luma(image: np.ndarray) -> np.ndarray:
    """The (H, W) luma NRQM is computed on, float64 integers in [0, 255].

    image: (H, W, 3) RGB (an alpha channel is ignored), (H, W, 1) or (H, W) gray; uint8, uint16
    or float in [0, 1] (clipped). RGB gives the Y of YIQ (0.299 R + 0.587 G + 0.114 B) computed
    in single precision from pixels in [0, 1], as pyiqa does (torch's float32 matrix product
    with fused multiply-adds; identical to it for every 8-bit RGB triple), then scaled to
    [0, 255] and rounded half to even. Gray is scaled to [0, 255] and rounded.
    """
    image = np.asarray(image)
    if image.dtype == np.uint8:
        unit = image.astype(np.float32) / np.float32(255)
    elif image.dtype == np.uint16:
        unit = image.astype(np.float32) / np.float32(65535)
    elif np.issubdtype(image.dtype, np.floating):
        unit = np.clip(image, 0.0, 1.0).astype(np.float32)
    else:
        raise TypeError(f"unsupported pixel type {image.dtype}; expected uint8, uint16 or float")
    if image.ndim == 3 and image.shape[2] in (3, 4):
        red, green, blue = (unit[:, :, c].astype(np.float64) for c in range(3))
        weights = _single(np.array([0.299, 0.587, 0.114]))
        # single-precision fused multiply-adds: a product of two float32 values is exact in float64
        y = _single(red * weights[0])
        y = _single(y + green * weights[1])
        y = (y + blue * weights[2]).astype(np.float32) * np.float32(255)
    elif image.ndim == 3 and image.shape[2] == 1:
        y = unit[:, :, 0].astype(np.float64) * 255.0
    elif image.ndim == 2:
        y = unit.astype(np.float64) * 255.0
    else:
        raise ValueError(f"expected an (H, W), (H, W, 1) or (H, W, 3) image, got shape {image.shape}")
    return np.round(y).astype(np.float64)


def check_size(height: int, width: int) -> None:
    """Raise ValueError unless NRQM's features exist for an image of this size.

    Two conditions: both sides at least MIN_SIDE (45) pixels, and at least 25 distinct 5x5
    blocks at the coarsest pyramid level (floor(side / 4) pixels per side), so that f3 has its 75
    singular values. For a square image the minimum is 84x84.
    """
    coarse_blocks = math.ceil((height // 4) / SVD_BLOCK) * math.ceil((width // 4) / SVD_BLOCK)
    if min(height, width) < MIN_SIDE or coarse_blocks < SVD_VALUES:
        raise ValueError(
            f"NRQM needs an image of at least {MIN_SIDE} pixels per side with at least {SVD_VALUES} "
            f"{SVD_BLOCK}x{SVD_BLOCK} blocks at quarter scale (84x84 for a square image); the image is "
            f"{width}x{height} ({coarse_blocks} blocks)"
        )


# --------------------------------------------------------------------------------------------
# Shared helpers


def _gaussian_window(size: int, sigma: float) -> np.ndarray:
    """MATLAB's fspecial('gaussian', size, sigma), rounded to single precision as pyiqa keeps it."""
    offsets = np.arange(size, dtype=np.float64) - (size - 1) / 2
    window = np.exp(-(offsets[:, None] ** 2 + offsets[None, :] ** 2) / (2 * sigma * sigma))
    window[window < np.finfo(np.float64).eps * window.max()] = 0
    return _single(window / window.sum())


_SSIM_TAPS = np.exp(-((np.arange(11) - 5.0) ** 2) / (2 * 1.5**2))
_SSIM_TAPS /= _SSIM_TAPS.sum()  # outer(taps, taps) is fspecial('gaussian', 11, 1.5)
_PYRAMID_WINDOW = _gaussian_window(3, 0.5)

# Generalised Gaussian shape search: the grid and its moment ratio
# Gamma(1/g) Gamma(3/g) / Gamma(2/g)^2, which falls strictly as g grows.
_SHAPE_GRID = 0.03 + 0.001 * np.arange(9971)  # 0.03, 0.031, ..., 10
_SHAPE_RATIO = np.exp(gammaln(1 / _SHAPE_GRID) + gammaln(3 / _SHAPE_GRID) - 2 * gammaln(2 / _SHAPE_GRID))


def generalized_gaussian_shape(samples: np.ndarray) -> np.ndarray:
    """Moment-matching shape of a generalised Gaussian fitted to each row of `samples` (..., n).

    The ratio var / mean(|x - mean|)^2 (unbiased variance, 1e-7 added to the denominator) is
    matched to the nearest grid value of Gamma(1/g) Gamma(3/g) / Gamma(2/g)^2, g = 0.03..10 in
    steps of 0.001 (the first on a tie, the smallest g for NaN). Returns (...).
    """
    mean = samples.mean(axis=-1, keepdims=True)
    variance = samples.var(axis=-1, ddof=1)
    mean_abs_squared = np.abs(samples - mean).mean(axis=-1) ** 2
    ratio = variance / (mean_abs_squared + 1e-7)
    # The ratio table falls strictly, so the nearest entry is next to where `ratio` would be
    # inserted; look at a few entries around it and keep the first nearest, like argmin would.
    ascending = _SHAPE_RATIO[::-1]
    insert = len(_SHAPE_RATIO) - np.searchsorted(ascending, ratio)
    candidates = np.clip(insert[..., None] + np.arange(-2, 2), 0, len(_SHAPE_RATIO) - 1)
    distance = np.abs(ratio[..., None] - _SHAPE_RATIO[candidates])
    nearest = np.take_along_axis(candidates, np.argmin(distance, axis=-1)[..., None], axis=-1)[..., 0]
    nearest = np.where(np.isnan(ratio), 0, nearest)
    return _SHAPE_GRID[nearest]


def _variation(samples: np.ndarray, eps: float) -> np.ndarray:
    """Coefficient of variation of |samples| along the last axis (unbiased std)."""
    magnitude = np.abs(samples)
    return magnitude.std(axis=-1, ddof=1) / (magnitude.mean(axis=-1) + eps)


def _ssim_blur(image: np.ndarray) -> np.ndarray:
    """Mean under the 11x11 Gaussian window (sigma 1.5) at the valid positions: (H - 10, W - 10).
    The window is separable: two 1-D passes."""
    image = ndimage.correlate1d(image, _SSIM_TAPS, axis=0, mode="constant")[5:-5]
    return ndimage.correlate1d(image, _SSIM_TAPS, axis=1, mode="constant")[:, 5:-5]


LocalMoments = tuple[np.ndarray, np.ndarray]  # (local mean, local variance), (H - 10, W - 10) each


def _local_moments(image: np.ndarray) -> LocalMoments:
    mean = _ssim_blur(image)
    return mean, _ssim_blur(image * image) - mean * mean


def contrast_structure(
    first: np.ndarray,
    second: np.ndarray,
    data_range: float = 255.0,
    moments: tuple[LocalMoments, LocalMoments] | None = None,
) -> float:
    """Mean SSIM contrast-structure term of two (H, W) images, (2 cov + C2) / (var1 + var2 + C2)
    with C2 = (0.03 data_range)^2, clipped at 0, over the valid positions of an 11x11 Gaussian
    window (sigma 1.5), no padding; H, W >= 11. `moments`: the images' local moments when
    already computed (an image compared with several others)."""
    (mean1, variance1), (mean2, variance2) = moments or (_local_moments(first), _local_moments(second))
    covariance = _ssim_blur(first * second) - mean1 * mean2
    c2 = (0.03 * data_range) ** 2
    cs_map = (2 * covariance + c2) / (variance1 + variance2 + c2)
    return float(np.maximum(cs_map, 0).mean())


def imresize_to(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """MATLAB's bicubic `imresize(image, size)` of an (H, W) float image to size = (rows, cols):
    the scale of each axis is out / in (antialiased when shrinking), float64, not rounded."""
    height, width = image.shape
    rows = resize_matrix(height, size[0], size[0] / height, antialiasing=True)
    columns = resize_matrix(width, size[1], size[1] / width, antialiasing=True)
    return rows @ image @ columns.T


def gaussian_pyramid(image: np.ndarray, levels: int = PYRAMID_LEVELS) -> list[np.ndarray]:
    """[image, ...]: each level blurred by a 3x3 Gaussian (sigma 0.5, zero padding) and
    subsampled at the odd rows and columns (MATLAB's 2:2:end); sizes H, H // 2, H // 4."""
    pyramid = [image]
    for _ in range(levels - 1):
        image = ndimage.correlate(image, _PYRAMID_WINDOW, mode="constant")[1::2, 1::2]
        pyramid.append(image)
    return pyramid


# --------------------------------------------------------------------------------------------
# f1: block DCT statistics


def _orientation_mask(cells: list[tuple[object, object]]) -> np.ndarray:
    mask = np.zeros((7, 7), dtype=bool)
    for rows, columns in cells:
        mask[rows, columns] = True
    return mask.ravel()


# Three groups of AC coefficients of a 7x7 DCT: near-horizontal, diagonal, near-vertical frequencies.
_ORIENTATIONS = [
    _orientation_mask([(0, slice(1, None)), (1, slice(2, None)), (2, slice(4, None)), (3, slice(5, None))]),
    _orientation_mask(
        [(1, 1), (2, slice(2, 4)), (3, slice(2, 5)), (4, slice(3, None)), (5, slice(4, None)), (6, slice(4, None))]
    ),
    _orientation_mask([(slice(1, None), 0), (slice(2, None), 1), (slice(4, None), 2), (slice(5, None), 3)]),
]


def block_dct_features(image: np.ndarray) -> np.ndarray:
    """The 6 DCT features of one (H, W) pyramid level (values in [0, 1]).

    7x7 blocks every 3 pixels (zero padding split evenly, pyiqa's 'same' padding), orthonormal
    2-D DCT-II. Per block: the generalised-Gaussian shape and the coefficient of variation of the
    48 AC coefficients, and the variance over the three orientation groups of their coefficients
    of variation. Pooled over blocks: [mean of the lowest ceil(n/10) + 1 shapes, mean shape,
    mean of the highest n - floor(0.9 n) variations, mean variation, the same two for orientation]
    (pyiqa's counts; the MATLAB code averages ceil(n/10) and n - fix(0.9 n) + 1 values).
    """
    height, width = image.shape
    pad_rows = (math.ceil(height / 3) - 1) * 3 + 7 - height
    pad_cols = (math.ceil(width / 3) - 1) * 3 + 7 - width
    padded = np.pad(image, ((pad_rows // 2, pad_rows - pad_rows // 2), (pad_cols // 2, pad_cols - pad_cols // 2)))
    blocks = np.lib.stride_tricks.sliding_window_view(padded, (7, 7))[::3, ::3]  # (rows, cols, 7, 7)
    coefficients = fft.dctn(blocks, type=2, norm="ortho", axes=(-2, -1)).reshape(-1, 49)  # (n, 49)
    ac = coefficients[:, 1:]

    shape = np.sort(generalized_gaussian_shape(ac))
    variation = np.sort(_variation(ac, 1e-7))
    orientation = np.stack([_variation(coefficients[:, mask], 1e-8) for mask in _ORIENTATIONS], axis=-1)
    orientation = np.sort(orientation.var(axis=-1, ddof=1))
    n = len(shape)
    lowest, highest = math.ceil(0.1 * n) + 1, math.floor(0.9 * n)
    return np.array(
        [
            shape[:lowest].mean(),
            shape.mean(),
            variation[highest:].mean(),
            variation.mean(),
            orientation[highest:].mean(),
            orientation.mean(),
        ]
    )


# --------------------------------------------------------------------------------------------
# f2: global Gaussian-scale-mixture features on a complex steerable pyramid


def _polar_grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(log2 radius, angle) of the centred frequency grid, (H, W) each; the zero frequency
    takes its left neighbour's radius."""

    def axis(n: int) -> np.ndarray:
        return np.linspace(-(n // 2) / (n / 2), (n // 2) / (n / 2) - (1 - n % 2) * 2 / n, num=n)

    x, y = np.meshgrid(axis(width), axis(height))
    angle = np.arctan2(y, x)
    radius = np.sqrt(x**2 + y**2)
    radius[height // 2, width // 2] = radius[height // 2, width // 2 - 1]
    return np.log2(radius), angle


def _raised_cosine() -> tuple[np.ndarray, np.ndarray]:
    """Sample points (x, y) of the radial transition: cos^2 over one octave ending at -0.5."""
    n = 256
    x = np.pi * np.arange(-n - 1, 2) / 2 / n
    y = np.cos(x) ** 2
    y[0], y[n + 2] = y[1], y[n + 1]
    return -0.5 + 2 / np.pi * (x + np.pi / 4), y


def steerable_pyramid(image: np.ndarray) -> tuple[np.ndarray, list[list[np.ndarray]]]:
    """Complex steerable pyramid (Portilla and Simoncelli's buildSCFpyr, in the Fourier domain)
    with NUM_SCALES scales and NUM_ORIENTATIONS orientations of an (H, W) image.

    Returns (high-pass residual (H, W), bands[scale][orientation]): the real parts of the
    oriented bands, (H, W) at scale 0 and (ceil(H / 2), ceil(W / 2)) at scale 1.
    """
    log_radius, angle = _polar_grid(*image.shape)
    transition_x, transition_y = _raised_cosine()
    high_y = np.sqrt(transition_y)
    low_y = np.sqrt(1 - high_y**2)

    lut = 1024
    angles = np.pi * np.arange(-(2 * lut + 1), lut + 2) / lut
    wrapped = (angles + np.pi) % (2 * np.pi) - np.pi
    order = NUM_ORIENTATIONS - 1
    constant = 2 ** (2 * order) * math.factorial(order) ** 2 / (NUM_ORIENTATIONS * math.factorial(2 * order))
    angular = 2 * math.sqrt(constant) * np.cos(angles) ** order * (np.abs(wrapped) < np.pi / 2)

    spectrum = fft.fftshift(fft.fft2(image))
    highpass = fft.ifft2(fft.ifftshift(spectrum * np.interp(log_radius, transition_x, high_y))).real
    low = spectrum * np.interp(log_radius, transition_x, low_y)
    bands = []
    for _ in range(NUM_SCALES):
        transition_x = transition_x - 1
        radial = np.interp(log_radius, transition_x, high_y)
        orientations = []
        for b in range(NUM_ORIENTATIONS):
            angle_mask = np.interp(angle, angles + np.pi * b / NUM_ORIENTATIONS, angular)
            band = low * angle_mask * radial * (-1j) ** order  # buildSCFpyr's phase factor
            orientations.append(fft.ifft2(fft.ifftshift(band)).real)
        bands.append(orientations)
        # keep the central half of the spectrum for the next, coarser scale
        dims = np.array(low.shape)
        start = (np.ceil((dims + 0.5) / 2) - np.ceil((np.ceil((dims - 0.5) / 2) + 0.5) / 2)).astype(int)
        stop = start + np.ceil((dims - 0.5) / 2).astype(int)
        crop = (slice(start[0], stop[0]), slice(start[1], stop[1]))
        log_radius, angle, low = log_radius[crop], angle[crop], low[crop]
        low = low * np.interp(log_radius, transition_x, low_y)
    return highpass, bands


def divisive_normalization(bands: list[list[np.ndarray]]) -> list[np.ndarray]:
    """Normalise each band coefficient by its Gaussian-scale-mixture multiplier estimated from
    its neighbourhood: the 3x3 spatial neighbours, the parent (the next scale's band of the same
    orientation, bicubically resized; finest scale only) and the other orientations.

    z = sqrt(y^T C^-1 y / N), C the neighbourhoods' second-moment matrix (negative eigenvalues
    clipped, trace kept), N = 9 + parent (pyiqa's count; the other orientations are not counted).
    Returns 12 arrays (scale-major order): (coefficient - mean coefficient) / z without a 1-pixel
    border and a guard band of 16 / 2^scale pixels, then centred.
    """
    subbands = []
    for scale, orientations in enumerate(bands):
        for b, band in enumerate(orientations):
            height, width = band.shape
            inner = (slice(1, -1), slice(1, -1))
            columns = [np.lib.stride_tricks.sliding_window_view(band, (3, 3)).reshape(-1, 9)]
            size = 9
            if scale + 1 < len(bands):
                parent = imresize_to(bands[scale + 1][b], (height, width))
                columns.append(parent[inner].reshape(-1, 1))
                size += 1
            columns += [orientations[o][inner].reshape(-1, 1) for o in range(len(orientations)) if o != b]
            neighbours = np.concatenate(columns, axis=1)  # (pixels, 9 + parent + 5)

            moments = neighbours.T @ neighbours / len(neighbours)
            eigenvalues, eigenvectors = np.linalg.eigh(moments)
            positive = eigenvalues * (eigenvalues > 0)
            positive_sum = positive.sum()
            eigenvalues = positive * eigenvalues.sum() / (positive_sum + (positive_sum == 0))
            moments = eigenvectors @ np.diag(eigenvalues) @ eigenvectors.T

            try:
                inverse = np.linalg.solve(moments.T, np.eye(len(moments))).T
            except np.linalg.LinAlgError:
                raise ValueError(
                    f"NRQM is undefined for this image: the neighbourhoods of steerable-pyramid band (scale {scale}, "
                    f"orientation {b}) have a singular second-moment matrix (a flat image?)"
                ) from None
            quadratic = np.sum((neighbours @ inverse) * neighbours, axis=1) / size  # y^T C^-1 y / N
            z = np.sqrt(quadratic)
            centre = band[inner].ravel()
            centre = centre - centre.mean()
            nonzero = z != 0
            normalized = (centre * nonzero / (z * nonzero + 1e-12)).reshape(height - 2, width - 2)
            guard = 16 // 2**scale
            normalized = normalized[guard:-guard, guard:-guard]
            subbands.append(normalized - normalized.mean())
    return subbands


def gsm_features(image: np.ndarray) -> np.ndarray:
    """The 45 global features of an (H, W) luma image in [0, 255].

    12 generalised-Gaussian shapes of the normalised subbands, 6 of each orientation's two scales
    pooled, 12 SSIM contrast-structure terms between each band (resized to full size) and the
    high-pass residual, 15 between the finest normalised subbands of every pair of orientations.
    """
    highpass, bands = steerable_pyramid(image)
    subbands = divisive_normalization(bands)
    finest = subbands[:NUM_ORIENTATIONS]
    coarse = subbands[NUM_ORIENTATIONS:]
    features = [generalized_gaussian_shape(s.ravel()) for s in subbands]
    features += [generalized_gaussian_shape(np.concatenate([f.ravel(), c.ravel()])) for f, c in zip(finest, coarse)]
    highpass_moments = _local_moments(highpass)
    for orientations in bands:
        for band in orientations:
            band = imresize_to(band, highpass.shape)
            features.append(contrast_structure(band, highpass, moments=(_local_moments(band), highpass_moments)))
    finest_moments = [_local_moments(s) for s in finest]
    for i in range(NUM_ORIENTATIONS):
        for j in range(i + 1, NUM_ORIENTATIONS):
            moments = (finest_moments[i], finest_moments[j])
            features.append(contrast_structure(finest[i], finest[j], moments=moments))
    return np.array(features, dtype=np.float64)


# --------------------------------------------------------------------------------------------
# f3: singular values of distinct blocks


def block_singular_values(image: np.ndarray) -> np.ndarray:
    """Singular values (descending) of the (blocks, 25) matrix of the distinct 5x5 blocks of an
    (H, W) image, zero-padded at the bottom and right; min(blocks, 25) values."""
    height, width = image.shape
    rows, cols = math.ceil(height / SVD_BLOCK), math.ceil(width / SVD_BLOCK)
    padded = np.pad(image, ((0, rows * SVD_BLOCK - height), (0, cols * SVD_BLOCK - width)))
    blocks = padded.reshape(rows, SVD_BLOCK, cols, SVD_BLOCK).transpose(0, 2, 1, 3).reshape(-1, SVD_VALUES)
    return np.linalg.svd(blocks, compute_uv=False)


# --------------------------------------------------------------------------------------------
# All features


def nrqm_features(luma: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(f1 (18,), f2 (45,), f3 (75,)) float64 of an (H, W) luma image with values in [0, 255]
    (see `yiq_luma`); the input of the three regression forests."""
    luma = np.asarray(luma, dtype=np.float64)
    if luma.ndim != 2:
        raise ValueError(f"expected an (H, W) luma image, got shape {luma.shape}")
    check_size(*luma.shape)
    pyramid = gaussian_pyramid(luma / 255.0)
    dct = np.concatenate([block_dct_features(level) for level in pyramid])
    gsm = gsm_features(luma)
    svd = np.concatenate([block_singular_values(level) for level in pyramid])
    return dct, gsm, svd


# --------------------------------------------------------------------------------------------
# Regression forests and the trained model


@dataclass(frozen=True)
class RegressionForest:
    """A regression forest in randomforest-matlab's layout (`regRF_train`); all arrays are
    (nodes, trees), nodes numbered from 1 and node 1 the root of each tree."""

    left: np.ndarray  # int64, left daughter ("lDau"), 0 at terminal nodes
    right: np.ndarray  # int64, right daughter ("rDau")
    threshold: np.ndarray  # float64, split value ("upper"): go left when x <= threshold
    value: np.ndarray  # float64, prediction of the node ("avnode"), used at terminal nodes
    feature: np.ndarray  # int64, split feature, 1-based ("mbest")

    def __post_init__(self) -> None:
        shapes = {name: np.shape(getattr(self, name)) for name in ("left", "right", "threshold", "value", "feature")}
        if len(set(shapes.values())) != 1 or len(shapes["left"]) != 2 or 0 in shapes["left"]:
            raise ValueError(f"forest arrays must all have the same (nodes, trees) shape, got {shapes}")

    @property
    def num_trees(self) -> int:
        return self.left.shape[1]

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Mean prediction of the trees for features (N, D) (or (D,)): (N,) float64.

        Every tree is walked from its root, all trees and samples at once: at an internal node
        go to the left daughter when x[feature - 1] <= threshold, else to the right one, until a
        terminal node (left daughter 0), whose value is the tree's prediction.
        """
        features = np.atleast_2d(np.asarray(features, dtype=np.float64))  # (N, D)
        internal = self.left != 0
        needed = int(self.feature[internal].max(initial=0))
        if features.ndim != 2 or features.shape[1] < needed:
            raise ValueError(f"the forest splits on feature {needed}, got features of shape {features.shape}")
        trees = np.arange(self.num_trees)[None, :]  # (1, T)
        node = np.zeros((features.shape[0], self.num_trees), dtype=np.int64)  # (N, T), 0-based
        for _ in range(self.left.shape[0]):  # no path is longer than the number of nodes
            active = internal[node, trees]  # (N, T)
            if not active.any():
                break
            column = np.where(active, self.feature[node, trees] - 1, 0)
            go_left = np.take_along_axis(features, column, axis=1) <= self.threshold[node, trees]
            child = np.where(go_left, self.left[node, trees], self.right[node, trees])
            node = np.where(active, child - 1, node)
        else:
            if internal[node, trees].any():
                raise ValueError("malformed forest: a path does not reach a terminal node")
        return self.value[node, trees].mean(axis=1)


@dataclass(frozen=True)
class NRQMModel:
    """NRQM's trained regressors: one forest per feature group and the linear combination."""

    linear: np.ndarray  # (4,) float64: intercept, then the weights of the three forests
    forests: tuple[RegressionForest, RegressionForest, RegressionForest]  # for f1, f2, f3

    def __post_init__(self) -> None:
        if np.shape(self.linear) != (4,) or len(self.forests) != 3:
            raise ValueError(
                f"NRQM needs 4 linear weights and 3 forests, got {np.shape(self.linear)} and {len(self.forests)}"
            )

    def predict(self, features: tuple[np.ndarray, np.ndarray, np.ndarray]) -> float:
        """Quality from (f1, f2, f3) of one image: [1, p1, p2, p3] @ linear."""
        predictions = [forest.predict(f)[0] for forest, f in zip(self.forests, features)]
        return float(np.array([1.0, *predictions]) @ self.linear)


# randomforest-matlab's field names, lower-cased, and their positions in regRF_train's struct
# (lDau, rDau, nodestatus, nrnodes, upper, avnode, mbest, ...), which pyiqa reads by position.
_FOREST_FIELDS = {
    "left": ("ldau", 0),
    "right": ("rdau", 1),
    "threshold": ("upper", 4),
    "value": ("avnode", 5),
    "feature": ("mbest", 6),
}


def _forest_from_mat(entry: object, where: str) -> RegressionForest:
    """A forest from loadmat's struct (fields by name when they are randomforest-matlab's,
    otherwise by position) or from a cell array of the fields in regRF_train's order."""
    entry = np.asarray(entry)
    if entry.dtype.names is None and entry.dtype == object and entry.size == 1:
        entry = np.asarray(entry.flat[0])  # a cell holding the struct
    if entry.dtype.names is not None:
        if entry.size != 1:
            raise ValueError(f"{where} is a struct array of {entry.size} elements; expected one forest")
        record = entry.flat[0]
        lower = {name.lower(): name for name in entry.dtype.names}
        if all(key in lower for key, _ in _FOREST_FIELDS.values()):
            fields = {attr: record[lower[key]] for attr, (key, _) in _FOREST_FIELDS.items()}
        elif len(entry.dtype.names) > 6:
            fields = {attr: record[position] for attr, (_, position) in _FOREST_FIELDS.items()}
        else:
            raise ValueError(
                f"{where} has fields {list(entry.dtype.names)}; expected randomforest-matlab's lDau, rDau, "
                "nodestatus, nrnodes, upper, avnode, mbest"
            )
    elif entry.dtype == object and entry.size > 6:
        cells = entry.ravel()
        fields = {attr: cells[position] for attr, (_, position) in _FOREST_FIELDS.items()}
    else:
        raise ValueError(f"{where} is not a regression forest struct (got {entry.dtype} array of shape {entry.shape})")
    arrays = {}
    for attr, value in fields.items():
        value = np.asarray(value)
        if value.ndim == 1:
            value = value[:, None]  # a single tree
        if value.ndim != 2 or not np.issubdtype(value.dtype, np.number):
            name = _FOREST_FIELDS[attr][0]
            raise ValueError(f"{where}.{name} is not a numeric (nodes, trees) array: {value.dtype} {value.shape}")
        arrays[attr] = value.astype(np.float64 if attr in ("threshold", "value") else np.int64)
    try:
        return RegressionForest(**arrays)
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from None


def load_nrqm_model(path: str | os.PathLike) -> NRQMModel:
    """NRQM's trained model from the authors' `NRQM_model.mat` (as pyiqa distributes it): a
    MATLAB struct `model` with `linear` (4x1) and `rf` (a 1x3 cell of regRF_train forests)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            "NRQM needs its trained weights file NRQM_model.mat (Ma et al. / pyiqa); demoe does not ship or "
            f"download it: {path} is not a file"
        )
    try:
        contents = scipy.io.loadmat(path)
    except Exception as error:  # scipy raises many types (IndexError, ValueError, ...) for a damaged file
        raise ValueError(f"{path} is not a MATLAB .mat file that scipy can read ({error})") from error
    if "model" not in contents:
        variables = sorted(k for k in contents if not k.startswith("__"))
        raise ValueError(f"{path} has no variable 'model' (it holds {variables}); is it NRQM_model.mat?")
    model = np.asarray(contents["model"])
    names = {name.lower(): name for name in (model.dtype.names or ())}
    if model.size != 1 or "linear" not in names or "rf" not in names:
        raise ValueError(
            f"{path}: 'model' must be a struct with fields linear and rf, got fields {list(model.dtype.names or ())}"
        )
    record = model.flat[0]
    linear = np.asarray(record[names["linear"]])
    if not np.issubdtype(linear.dtype, np.number) or linear.size != 4:
        raise ValueError(f"{path}: model.linear must hold 4 numbers, got {linear.dtype} values of shape {linear.shape}")
    forests = np.asarray(record[names["rf"]])
    if forests.dtype != object or forests.size != 3:
        raise ValueError(
            f"{path}: model.rf must be a cell of 3 forests, got a {forests.dtype} array of shape {forests.shape}"
        )
    cells = forests.ravel()
    return NRQMModel(
        linear=linear.astype(np.float64).ravel(),
        forests=tuple(_forest_from_mat(cells[i], f"{path}: model.rf{{{i + 1}}}") for i in range(3)),
    )


def nrqm(image: np.ndarray, model: NRQMModel | str | os.PathLike) -> float:
    """NRQM of an image (higher is better, roughly 0 to 10), as pyiqa's `nrqm` gives it.

    image: (H, W, 3) RGB or (H, W) gray, uint8, uint16 or float in [0, 1]; see `yiq_luma` and
    `check_size` (at least 84x84 for a square image). model: an `NRQMModel` or the path of
    NRQM_model.mat (loaded on every call; load it once with `load_nrqm_model` for many images).
    """
    if not isinstance(model, NRQMModel):
        model = load_nrqm_model(model)
    return model.predict(nrqm_features(yiq_luma(image)))
