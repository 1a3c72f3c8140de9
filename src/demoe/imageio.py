"""Reading and writing images as float arrays: the small core shared by data, training,
evaluation and inference.

Arrays are (H, W, 3) float32 in [0, 1]: 8-bit values are divided by 255, 16-bit by 65535.
Grayscale and palette images become RGB; the EXIF orientation is applied. The full-fidelity
reader for the deblurring tool (alpha, ICC profile, bit depth kept) is `demoe.inference.io`.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import tifffile
from PIL import Image, ImageOps

from demoe.fileio import atomic_write

TIFF_SUFFIXES = (".tif", ".tiff")


def read_array(path: str | os.PathLike) -> np.ndarray:
    """Pixels of an image file as stored: (H, W) or (H, W, C), uint8/uint16/float, EXIF-rotated."""
    path = Path(path)
    if path.suffix.lower() in TIFF_SUFFIXES:
        return np.asarray(tifffile.imread(path))
    with Image.open(path) as image:
        if image.format == "PNG" and png_bit_depth(path) == 16:
            return _read_png16(path, image)
        image = ImageOps.exif_transpose(image)
        if image.mode == "P":
            image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        if image.mode in ("I;16", "I;16B", "I;16L", "I"):
            return np.asarray(image).astype(np.uint16)
        if image.mode not in ("L", "LA", "RGB", "RGBA"):
            image = image.convert("RGB")
        return np.asarray(image)


def png_bit_depth(path: str | os.PathLike) -> int:
    """Bit depth from a PNG's IHDR chunk (PIL silently reads 16-bit RGB PNGs as 8-bit)."""
    with open(path, "rb") as handle:
        header = handle.read(26)
    return header[24] if len(header) == 26 and header[:8] == b"\x89PNG\r\n\x1a\n" else 8


_EXIF_ORIENTATION_TAG = 0x0112


def _read_png16(path: Path, image: Image.Image) -> np.ndarray:
    array = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if array is None:
        raise ValueError(f"{path}: cannot decode 16-bit PNG")
    if array.ndim == 3:
        code = cv2.COLOR_BGRA2RGBA if array.shape[2] == 4 else cv2.COLOR_BGR2RGB
        array = cv2.cvtColor(array, code)
    orientation = image.getexif().get(_EXIF_ORIENTATION_TAG, 1)
    return apply_orientation(array, orientation)


def apply_orientation(array: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1..8) to (H, W[, C]) pixels, as ImageOps.exif_transpose does."""
    transforms = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.swapaxes(0, 1),
        6: lambda a: np.rot90(a, -1),
        7: lambda a: a.swapaxes(0, 1)[::-1, ::-1],
        8: lambda a: np.rot90(a, 1),
    }
    transform = transforms.get(orientation)
    return array if transform is None else np.ascontiguousarray(transform(array))


def to_float(array: np.ndarray) -> np.ndarray:
    """uint8 / uint16 / float array -> float32 in [0, 1] (floats are clipped)."""
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    if array.dtype == np.uint16:
        return array.astype(np.float32) / 65535.0
    if np.issubdtype(array.dtype, np.floating):
        return np.clip(array.astype(np.float32), 0.0, 1.0)
    raise ValueError(f"unsupported pixel type {array.dtype}; expected uint8, uint16 or float")


def from_float(array: np.ndarray, dtype: np.dtype | type) -> np.ndarray:
    """float in [0, 1] -> uint8 / uint16 with rounding (values are clipped first)."""
    dtype = np.dtype(dtype)
    if dtype not in (np.uint8, np.uint16):
        raise ValueError(f"unsupported output type {dtype}; expected uint8 or uint16")
    peak = 255.0 if dtype == np.uint8 else 65535.0
    return np.round(np.clip(array, 0.0, 1.0) * peak).astype(dtype)


def as_rgb(array: np.ndarray) -> np.ndarray:
    """(H, W), (H, W, 1), (H, W, 2 = gray+alpha), (H, W, 3) or (H, W, 4) -> (H, W, 3); alpha dropped."""
    if array.ndim == 2:
        return np.repeat(array[:, :, None], 3, axis=2)
    channels = array.shape[2]
    if channels in (1, 2):
        return np.repeat(array[:, :, :1], 3, axis=2)
    if channels in (3, 4):
        return array[:, :, :3]
    raise ValueError(f"unsupported number of channels: {channels}")


def read_rgb_float(path: str | os.PathLike) -> np.ndarray:
    """An image file as (H, W, 3) float32 RGB in [0, 1] (16-bit kept at full precision)."""
    return to_float(as_rgb(read_array(path)))


def write_image(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write (H, W[, C]) uint8/uint16 pixels atomically (temporary file in the same folder,
    then rename). PNG/TIFF keep 16 bits; the format follows the suffix."""
    path = Path(path)

    def write(temporary: str) -> None:
        if path.suffix.lower() in TIFF_SUFFIXES:
            tifffile.imwrite(temporary, array)
        elif array.dtype == np.uint16:
            if path.suffix.lower() != ".png":
                raise ValueError(f"16-bit images can be written as PNG or TIFF, not {path.suffix}")
            _write_png16(temporary, array)
        else:
            Image.fromarray(array).save(temporary, format=Image.registered_extensions()[path.suffix.lower()])

    atomic_write(path, write)


def _write_png16(path: str, array: np.ndarray) -> None:
    # PIL cannot write 16-bit colour PNGs; OpenCV can (it stores BGR order).
    if array.ndim == 3 and array.shape[2] in (3, 4):
        code = cv2.COLOR_RGBA2BGRA if array.shape[2] == 4 else cv2.COLOR_RGB2BGR
        array = cv2.cvtColor(array, code)
    if not cv2.imwrite(path, array):
        raise OSError(f"could not write 16-bit PNG {path}")


def write_rgb_float(path: str | os.PathLike, array: np.ndarray, bit_depth: int = 8) -> None:
    """(H, W, 3) float in [0, 1] -> 8- or 16-bit file, atomically."""
    write_image(path, from_float(array, np.uint8 if bit_depth == 8 else np.uint16))
