import math

import numpy as np
import pytest
from scipy import ndimage
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from demoe.evaluation import metrics

PEAKS = {np.uint8: 255, np.uint16: 65535, np.float32: 1.0, np.float64: 1.0}


def noisy_pair(dtype, shape=(37, 45, 3), seed=0):
    """A textured image and a noisy copy, both of `dtype` (floats in [0, 1])."""
    rng = np.random.default_rng(seed)
    peak = PEAKS[dtype]
    sharp = ndimage.gaussian_filter(rng.random(shape), (1.5, 1.5, 0)[: len(shape)])
    sharp = (sharp - sharp.min()) / (sharp.max() - sharp.min())
    restored = np.clip(sharp + rng.normal(0, 0.04, shape), 0, 1)
    if np.issubdtype(dtype, np.integer):
        return np.round(restored * peak).astype(dtype), np.round(sharp * peak).astype(dtype)
    return restored.astype(dtype), sharp.astype(dtype)


@pytest.mark.parametrize("dtype", list(PEAKS))
def test_psnr_matches_skimage(dtype):
    restored, sharp = noisy_pair(dtype)
    expected = peak_signal_noise_ratio(sharp, restored, data_range=PEAKS[dtype])
    assert metrics.psnr(restored, sharp) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("dtype", list(PEAKS))
@pytest.mark.parametrize("shape", [(37, 45, 3), (40, 33)])
def test_ssim_matches_skimage_gaussian(dtype, shape):
    restored, sharp = noisy_pair(dtype, shape)
    expected = structural_similarity(
        restored,
        sharp,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        channel_axis=-1 if len(shape) == 3 else None,
        data_range=PEAKS[dtype],
    )
    # skimage computes float32 inputs in float32; demoe always in float64
    tolerance = 1e-5 if dtype == np.float32 else 1e-12
    assert metrics.ssim(restored, sharp) == pytest.approx(expected, abs=tolerance)
    assert expected < 0.99  # a non-trivial case


def test_identical_images():
    _, sharp = noisy_pair(np.uint8)
    assert metrics.psnr(sharp, sharp) == math.inf
    assert metrics.ssim(sharp, sharp) == pytest.approx(1.0)
    assert metrics.matlab_ssim(sharp, sharp) == pytest.approx(1.0)
    assert metrics.mae(sharp, sharp) == 0.0


def test_psnr_of_known_error():
    sharp = np.zeros((8, 8, 3), np.uint8)
    assert metrics.psnr(sharp + 1, sharp) == pytest.approx(10 * np.log10(255**2))
    sharp16 = np.zeros((8, 8, 3), np.uint16)
    assert metrics.psnr(sharp16 + 1, sharp16) == pytest.approx(10 * np.log10(65535**2))


def reference_matlab_ssim(a: np.ndarray, b: np.ndarray, peak: float) -> float:
    """Straight from MATLAB's ssim.m: an explicit 11x11x11 Gaussian (ndgrid of exp(-r^2 / 4.5),
    normalised), imfilter(..., 'conv', 'replicate'), C = [(0.01 L)^2, (0.03 L)^2], mean over
    the whole map."""
    grid = np.arange(-5, 6)
    x, y, z = np.meshgrid(grid, grid, grid, indexing="ij")
    kernel = np.exp(-(x**2 + y**2 + z**2) / (2 * 1.5**2))
    kernel /= kernel.sum()
    a, b = a.astype(np.float64), b.astype(np.float64)

    def blur(v):
        return ndimage.convolve(v, kernel, mode="nearest")

    c1, c2 = (0.01 * peak) ** 2, (0.03 * peak) ** 2
    mu_a, mu_b = blur(a), blur(b)
    s_a, s_b, s_ab = blur(a * a) - mu_a**2, blur(b * b) - mu_b**2, blur(a * b) - mu_a * mu_b
    return float(np.mean((2 * mu_a * mu_b + c1) * (2 * s_ab + c2) / ((mu_a**2 + mu_b**2 + c1) * (s_a + s_b + c2))))


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float64])
def test_matlab_ssim_matches_explicit_3d_filter(dtype):
    restored, sharp = noisy_pair(dtype, shape=(24, 29, 3))
    expected = reference_matlab_ssim(restored, sharp, PEAKS[dtype])
    assert metrics.matlab_ssim(restored, sharp) == pytest.approx(expected, abs=1e-12)
    # it differs from the per-channel 2-D convention
    assert abs(metrics.matlab_ssim(restored, sharp) - metrics.ssim(restored, sharp)) > 1e-4


def test_matlab_ssim_2d_uses_2d_window():
    restored, sharp = noisy_pair(np.uint8, shape=(30, 30))
    grid = np.arange(-5, 6)
    kernel_1d = np.exp(-(grid**2) / 4.5)
    kernel_1d /= kernel_1d.sum()
    kernel = np.outer(kernel_1d, kernel_1d)
    a, b = restored.astype(np.float64), sharp.astype(np.float64)

    def blur(v):
        return ndimage.convolve(v, kernel, mode="nearest")

    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu_a, mu_b = blur(a), blur(b)
    local = (2 * mu_a * mu_b + c1) * (2 * (blur(a * b) - mu_a * mu_b) + c2)
    local /= (mu_a**2 + mu_b**2 + c1) * (blur(a * a) - mu_a**2 + blur(b * b) - mu_b**2 + c2)
    assert metrics.matlab_ssim(restored, sharp) == pytest.approx(local.mean(), abs=1e-12)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_masked_metrics_with_all_ones_mask_equal_unmasked(dtype):
    restored, sharp = noisy_pair(dtype)
    ones = np.ones(sharp.shape[:2])
    assert metrics.masked_psnr(restored, sharp, ones) == pytest.approx(metrics.psnr(restored, sharp), rel=1e-12)
    assert metrics.masked_ssim(restored, sharp, ones) == pytest.approx(metrics.ssim(restored, sharp), rel=1e-12)
    assert metrics.masked_ssim(restored, sharp, np.ones(sharp.shape)) == pytest.approx(
        metrics.ssim(restored, sharp), rel=1e-12
    )


def test_masked_psnr_counts_only_the_masked_region():
    restored, sharp = noisy_pair(np.uint8)
    mask = np.zeros(sharp.shape[:2])
    mask[:, :20] = 1
    restored_damaged = restored.copy()
    restored_damaged[:, 20:] = 0  # outside the mask: must not matter
    expected = metrics.psnr(restored[:, :20], sharp[:, :20])
    assert metrics.masked_psnr(restored_damaged, sharp, mask) == pytest.approx(expected)
    assert metrics.masked_ssim(restored_damaged, sharp, mask) > metrics.ssim(restored_damaged, sharp)


def test_mae_on_16_bit_is_in_units_of_the_range():
    sharp = np.full((10, 12, 3), 30000, np.uint16)
    restored = sharp.copy()
    restored[..., 0] += 6553  # one channel off by 6553 / 65535 ~ 0.1
    assert metrics.mae(restored, sharp) == pytest.approx(6553 / 65535 / 3)
    assert metrics.mae(restored.astype(np.float64) / 65535, sharp.astype(np.float64) / 65535) == pytest.approx(
        6553 / 65535 / 3
    )


def test_errors_say_what_is_wrong():
    restored, sharp = noisy_pair(np.uint8)
    with pytest.raises(ValueError, match="differ in shape"):
        metrics.psnr(restored[:-1], sharp)
    with pytest.raises(TypeError, match="data_range"):
        metrics.ssim(restored.astype(np.uint16), sharp)
    with pytest.raises(ValueError, match="mask is empty"):
        metrics.masked_psnr(restored, sharp, np.zeros(sharp.shape[:2]))
    with pytest.raises(ValueError, match="does not fit"):
        metrics.masked_psnr(restored, sharp, np.ones((3, 3)))
    with pytest.raises(TypeError, match="unsupported pixel type"):
        metrics.data_range_of(np.int32)
