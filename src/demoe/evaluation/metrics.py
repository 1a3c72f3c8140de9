"""Full-reference image metrics as pure functions on numpy arrays.

Images are (H, W) or (H, W, C) arrays, `restored` first and `sharp` (the ground truth) second.
The peak value ("data range") follows the pixel type unless given: 255 for uint8, 65535 for
uint16, 1.0 for floats (demoe's float images are in [0, 1]). All arithmetic is float64.

- `psnr`, `ssim`: the defaults of the field. `ssim` is Wang et al.'s SSIM with an 11-tap
  Gaussian window (sigma 1.5, truncated at 3.5 sigma), population covariance, K1 = 0.01,
  K2 = 0.03, computed per channel and averaged, with a 5-pixel border excluded. It agrees with
  `skimage.metrics.structural_similarity(restored, sharp, gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, channel_axis=-1, data_range=...)`.
- `matlab_ssim`: MATLAB's `ssim(A, ref)`, which the GoPro/HIDE papers' evaluation scripts call on
  RGB images: the image is one 3-D volume filtered by a 3-D Gaussian (sigma 1.5, 11 taps per axis)
  with replicated borders, averaged over every voxel.
- `mae`: mean absolute error in units of the data range (DPDD reports it on [0, 1]).
- `masked_psnr`, `masked_ssim`: weighted versions (ReLoBlur's local-blur masks, the valid region
  left by RealBlur's alignment). With an all-ones mask they equal `psnr` and `ssim`.

Example:
    >>> import numpy as np
    >>> sharp = np.zeros((16, 16, 3), np.uint8)
    >>> round(psnr(sharp + 1, sharp), 2)
    48.13
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

SSIM_SIGMA = 1.5
SSIM_TRUNCATE = 3.5  # 11-tap window for sigma 1.5, as in Wang et al. 2004 and scikit-image
SSIM_K1 = 0.01
SSIM_K2 = 0.03
SSIM_RADIUS = int(SSIM_TRUNCATE * SSIM_SIGMA + 0.5)  # 5: border excluded from the mean


def data_range_of(dtype: np.dtype | type) -> float:
    """Peak value of a pixel type: uint8 -> 255, uint16 -> 65535, float -> 1.0."""
    dtype = np.dtype(dtype)
    if dtype == np.uint8:
        return 255.0
    if dtype == np.uint16:
        return 65535.0
    if np.issubdtype(dtype, np.floating):
        return 1.0
    raise TypeError(f"unsupported pixel type {dtype}; expected uint8, uint16 or float")


def _pair(restored: np.ndarray, sharp: np.ndarray, data_range: float | None) -> tuple[np.ndarray, np.ndarray, float]:
    """Check shapes, resolve the data range, return float64 copies."""
    restored = np.asarray(restored)
    sharp = np.asarray(sharp)
    if restored.shape != sharp.shape:
        raise ValueError(f"restored and sharp differ in shape: {restored.shape} vs {sharp.shape}")
    if restored.ndim not in (2, 3):
        raise ValueError(f"expected (H, W) or (H, W, C) images, got shape {restored.shape}")
    if data_range is None:
        if restored.dtype != sharp.dtype:
            raise TypeError(
                f"restored is {restored.dtype} and sharp is {sharp.dtype}: convert both to the same "
                "type or pass data_range explicitly"
            )
        data_range = data_range_of(sharp.dtype)
    if data_range <= 0:
        raise ValueError(f"data_range must be positive, got {data_range}")
    return restored.astype(np.float64), sharp.astype(np.float64), float(data_range)


def psnr(restored: np.ndarray, sharp: np.ndarray, data_range: float | None = None) -> float:
    """Peak signal-to-noise ratio in dB over all pixels and channels (inf for identical images)."""
    restored, sharp, data_range = _pair(restored, sharp, data_range)
    mse = np.mean((restored - sharp) ** 2)
    return _psnr_from_mse(mse, data_range)


def _psnr_from_mse(mse: float, data_range: float) -> float:
    if mse == 0:
        return math.inf
    return float(10.0 * np.log10(data_range**2 / mse))


def mae(restored: np.ndarray, sharp: np.ndarray, data_range: float | None = None) -> float:
    """Mean absolute error divided by the data range (so in [0, 1] for any pixel type)."""
    restored, sharp, data_range = _pair(restored, sharp, data_range)
    return float(np.mean(np.abs(restored - sharp)) / data_range)


def _as_channels(image: np.ndarray) -> np.ndarray:
    return image[:, :, None] if image.ndim == 2 else image


def ssim_map(restored: np.ndarray, sharp: np.ndarray, data_range: float | None = None) -> np.ndarray:
    """Local SSIM values, (H, W) or (H, W, C) float64, computed per channel with the Gaussian
    window (borders reflected). `ssim` is the mean of this map without its 5-pixel border."""
    restored, sharp, data_range = _pair(restored, sharp, data_range)
    squeeze = restored.ndim == 2
    restored, sharp = _as_channels(restored), _as_channels(sharp)
    if min(restored.shape[:2]) < 2 * SSIM_RADIUS + 1:
        raise ValueError(f"SSIM needs images of at least {2 * SSIM_RADIUS + 1}x{2 * SSIM_RADIUS + 1} pixels")
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    maps = []
    for channel in range(restored.shape[2]):
        x, y = restored[:, :, channel], sharp[:, :, channel]

        def blur(image: np.ndarray) -> np.ndarray:
            return ndimage.gaussian_filter(image, SSIM_SIGMA, mode="reflect", truncate=SSIM_TRUNCATE)

        mu_x, mu_y = blur(x), blur(y)
        var_x = blur(x * x) - mu_x * mu_x  # population (biased) covariance, as in Wang et al.
        var_y = blur(y * y) - mu_y * mu_y
        cov_xy = blur(x * y) - mu_x * mu_y
        numerator = (2 * mu_x * mu_y + c1) * (2 * cov_xy + c2)
        denominator = (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
        maps.append(numerator / denominator)
    result = np.stack(maps, axis=2)
    return result[:, :, 0] if squeeze else result


def _crop(array: np.ndarray) -> np.ndarray:
    r = SSIM_RADIUS
    return array[r:-r, r:-r]


def ssim(restored: np.ndarray, sharp: np.ndarray, data_range: float | None = None) -> float:
    """Mean SSIM (Gaussian window, sigma 1.5), per channel then averaged over channels."""
    local = _as_channels(ssim_map(restored, sharp, data_range))
    return float(np.mean([_crop(local[:, :, c]).mean() for c in range(local.shape[2])]))


def _broadcast_mask(mask: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    mask = np.asarray(mask, dtype=np.float64)
    if mask.ndim == 3 and mask.shape[2] == 1:
        mask = mask[:, :, 0]
    if mask.ndim == 2 and len(shape) == 3:
        mask = mask[:, :, None]
    try:
        return np.broadcast_to(mask, shape)
    except ValueError:
        raise ValueError(f"mask of shape {mask.shape} does not fit images of shape {shape}") from None


def masked_psnr(
    restored: np.ndarray, sharp: np.ndarray, mask: np.ndarray, data_range: float | None = None
) -> float:
    """PSNR of the weighted MSE sum(w * err^2) / sum(w), w = `mask` in [0, 1], (H, W) or
    (H, W, C), broadcast over channels (RealBlur's valid region, ReLoBlur's blur masks)."""
    restored, sharp, data_range = _pair(restored, sharp, data_range)
    weights = _broadcast_mask(mask, restored.shape)
    total = weights.sum()
    if total <= 0:
        raise ValueError("mask is empty: no pixel to evaluate")
    mse = float(np.sum(weights * (restored - sharp) ** 2) / total)
    return _psnr_from_mse(mse, data_range)


def masked_ssim(
    restored: np.ndarray, sharp: np.ndarray, mask: np.ndarray, data_range: float | None = None
) -> float:
    """SSIM map weighted by `mask` (per channel, 5-pixel border excluded), averaged over
    channels: the masked SSIM of the official RealBlur/RSBlur evaluation."""
    local = _as_channels(ssim_map(restored, sharp, data_range))
    weights = _as_channels(_broadcast_mask(mask, np.shape(restored)))
    weights = np.broadcast_to(weights, local.shape)
    per_channel = []
    for c in range(local.shape[2]):
        total = _crop(weights[:, :, c]).sum()
        if total <= 0:
            raise ValueError("mask is empty inside the SSIM border: no pixel to evaluate")
        per_channel.append(float((_crop(local[:, :, c]) * _crop(weights[:, :, c])).sum() / total))
    return float(np.mean(per_channel))


def _gaussian_kernel_1d(sigma: float, radius: int) -> np.ndarray:
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-(offsets**2) / (2 * sigma**2))
    return kernel / kernel.sum()


def matlab_ssim(restored: np.ndarray, sharp: np.ndarray, data_range: float | None = None) -> float:
    """MATLAB's `ssim(restored, sharp)` with its defaults (Radius 1.5, exponents 1).

    MATLAB treats an (H, W, 3) image as a volume: a 3-D Gaussian with radius ceil(3 * 1.5) = 5
    (11 taps along height, width and the colour axis), borders replicated, the SSIM map averaged
    over all H * W * 3 values with no border excluded. (H, W) images use the 2-D filter.
    The 3-D Gaussian is separable and none of its taps fall below MATLAB's eps cut-off, so it is
    applied as three 1-D passes.
    """
    restored, sharp, data_range = _pair(restored, sharp, data_range)
    radius = math.ceil(3 * SSIM_SIGMA)
    kernel = _gaussian_kernel_1d(SSIM_SIGMA, radius)

    def blur(volume: np.ndarray) -> np.ndarray:
        for axis in range(volume.ndim):
            volume = ndimage.correlate1d(volume, kernel, axis=axis, mode="nearest")
        return volume

    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    mu_x, mu_y = blur(restored), blur(sharp)
    var_x = blur(restored * restored) - mu_x**2
    var_y = blur(sharp * sharp) - mu_y**2
    cov_xy = blur(restored * sharp) - mu_x * mu_y
    local = ((2 * mu_x * mu_y + c1) * (2 * cov_xy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return float(local.mean())
