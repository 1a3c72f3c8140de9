"""The camera side of image formation as pure functions: the sRGB transfer curve, convolution
with a PSF, sensor noise, 8-bit quantisation and JPEG compression.

Images are (H, W, C) float32 arrays. "Linear" arrays are proportional to scene radiance
(white = 1); "sRGB" arrays are display-referred values in [0, 1].
"""

from __future__ import annotations

import io

import cv2
import numpy as np
from PIL import Image


def srgb_to_linear(image: np.ndarray) -> np.ndarray:
    """sRGB-encoded values in [0, 1] -> linear light in [0, 1] (IEC 61966-2-1)."""
    encoded = np.clip(image, 0.0, 1.0, dtype=np.float32)
    linear = (encoded + np.float32(0.055)) * np.float32(1 / 1.055)
    np.power(linear, np.float32(2.4), out=linear)
    return np.where(encoded <= 0.04045, encoded * np.float32(1 / 12.92), linear)


def linear_to_srgb(image: np.ndarray) -> np.ndarray:
    """Linear light (clipped to [0, 1]) -> sRGB-encoded values in [0, 1]."""
    linear = np.clip(image, 0.0, 1.0, dtype=np.float32)
    encoded = np.power(linear, np.float32(1 / 2.4))
    encoded *= np.float32(1.055)
    encoded -= np.float32(0.055)
    return np.where(linear <= 0.0031308, linear * np.float32(12.92), encoded)


def convolve(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Convolve every channel of (H, W[, C]) float32 with a (K, K) kernel (a true convolution:
    the kernel is flipped), mirroring the image at its borders (also for kernels larger than
    the image). Returns float32 of the input's shape."""
    image = np.asarray(image, dtype=np.float32)
    kernel = np.asarray(kernel, dtype=np.float32)
    if kernel.shape == (1, 1):
        return image * kernel[0, 0]
    flipped = np.ascontiguousarray(kernel[::-1, ::-1])
    half_y, half_x = kernel.shape[0] // 2, kernel.shape[1] // 2
    height, width = image.shape[:2]
    if half_y < height and half_x < width:
        filtered = cv2.filter2D(image, -1, flipped, borderType=cv2.BORDER_REFLECT)
    else:  # OpenCV cannot mirror a border wider than the image; numpy mirrors repeatedly
        pad = ((half_y, half_y), (half_x, half_x)) + ((0, 0),) * (image.ndim - 2)
        padded = np.pad(image, pad, mode="symmetric")
        filtered = cv2.filter2D(padded, -1, flipped, borderType=cv2.BORDER_CONSTANT)
        filtered = filtered[half_y : half_y + height, half_x : half_x + width]
    return filtered.reshape(image.shape)  # OpenCV drops a trailing channel axis of length 1


# Above this mean photon count, a Poisson draw is replaced by its Gaussian approximation
# (indistinguishable there, and an order of magnitude faster to sample).
_POISSON_EXACT_BELOW = 32.0


def add_poisson_gaussian_noise(
    linear: np.ndarray, rng: np.random.Generator, photons_at_white: float, read_noise: float
) -> np.ndarray:
    """Sensor noise in linear light: shot noise (Poisson photon counts, `photons_at_white`
    electrons for a value of 1) plus Gaussian read noise of standard deviation `read_noise`.
    Returns float32, not clipped (negative values are clipped by the later encoding)."""
    if photons_at_white <= 0:
        raise ValueError(f"photons_at_white must be positive, got {photons_at_white}")
    expected = np.clip(linear, 0.0, None, dtype=np.float32) * np.float32(photons_at_white)
    electrons = expected + np.sqrt(expected) * rng.standard_normal(expected.shape, dtype=np.float32)
    dim = expected < _POISSON_EXACT_BELOW
    electrons[dim] = rng.poisson(expected[dim])
    noisy = electrons * np.float32(1.0 / photons_at_white)
    noisy += rng.standard_normal(linear.shape, dtype=np.float32) * np.float32(read_noise)
    return noisy


def add_heteroscedastic_noise(
    linear: np.ndarray, rng: np.random.Generator, shot_noise: float, read_noise: float
) -> np.ndarray:
    """Mild sensor noise in linear light, the Gaussian approximation of Poisson-Gaussian noise:
    variance = `shot_noise` * signal + `read_noise`^2. Returns float32, not clipped."""
    sigma = np.sqrt(np.clip(linear, 0.0, None) * np.float32(shot_noise) + np.float32(read_noise) ** 2)
    return linear + rng.standard_normal(linear.shape, dtype=np.float32) * sigma.astype(np.float32)


def quantize(image: np.ndarray, levels: int = 255) -> np.ndarray:
    """Round values in [0, 1] to `levels` steps (255 = 8-bit), clipping first."""
    return (np.round(np.clip(image, 0.0, 1.0) * levels) / levels).astype(np.float32)


JPEG_MCU_PX = 16  # side of a 4:2:0 JPEG's minimum coded unit: its block grid repeats every 16 px


def jpeg_compress(image: np.ndarray, quality: int, phase: tuple[int, int] = (0, 0)) -> np.ndarray:
    """Encode (H, W, 3) sRGB float in [0, 1] as an 8-bit JPEG of `quality` (1..100) with
    PIL and decode it again. Returns float32 (H, W, 3) in [0, 1].

    `phase` (rows, columns), each in 0..15: how far into its first 16x16 coded unit the image
    starts (the image is extended by edge replication before it, encoded, and cut out again).
    (0, 0) is a whole JPEG file; a crop of one starts anywhere in the grid, so training pairs
    draw it: at one fixed phase the block edges become a feature that names the blur type
    (docs/synthetic-blur.md)."""
    if not 1 <= quality <= 100:
        raise ValueError(f"quality must be in 1..100, got {quality}")
    top, left = (int(value) for value in phase)
    if not (0 <= top < JPEG_MCU_PX and 0 <= left < JPEG_MCU_PX):
        raise ValueError(f"phase must be two values in 0..{JPEG_MCU_PX - 1}, got {tuple(phase)}")
    pixels = (np.round(np.clip(image, 0.0, 1.0) * 255)).astype(np.uint8)
    pixels = np.pad(pixels, ((top, 0), (left, 0), (0, 0)), mode="edge")
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=int(quality))
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return np.asarray(decoded.convert("RGB"), dtype=np.float32)[top:, left:] / 255.0
