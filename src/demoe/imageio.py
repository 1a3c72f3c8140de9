"""Image files: the one reader and writer of demoe (tool, data, training, evaluation).

`read_image` returns the pixels as stored (8-bit stays uint8, 16-bit stays uint16), upright
(EXIF/TIFF orientation applied), with the channel layout kept: (H, W) gray, (H, W, 2) gray +
alpha, (H, W, 3) RGB or (H, W, 4) RGBA. Palette and other modes are converted to one of these.
The ICC profile and the EXIF block (orientation tag removed, since the pixels are now upright)
travel beside the pixels so that `write_image` can copy them to the output.

Every problem with an input file raises `ImageReadError` with a one-line reason (empty file,
not an image, truncated data, over the pixel limit, unsupported mode or format).
Writes are atomic: a temporary file in the target folder, then `os.replace`.

Data, training and evaluation work on arrays: `read_array` (pixels only, no pixel limit),
`as_rgb`, `to_float` / `from_float` ((H, W, 3) float32 in [0, 1]: 8-bit values divided by 255,
16-bit by 65535), `read_rgb_float`, `write_rgb_float`.
"""

from __future__ import annotations

import contextlib
import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import tifffile
from PIL import Image, UnidentifiedImageError

from demoe.fileio import atomic_write


SUPPORTED_FORMATS = ("PNG", "JPEG", "TIFF", "WEBP", "BMP")
# Default decompression-bomb guard: 200 megapixels (a 16-bit RGBA image of that size is 1.6 GB).
DEFAULT_MAX_PIXELS = 200_000_000
# Canonical file suffix of each format, and the formats each suffix names.
FORMAT_SUFFIX = {"PNG": ".png", "JPEG": ".jpg", "TIFF": ".tif", "WEBP": ".webp", "BMP": ".bmp"}
SUFFIX_FORMAT = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".jpe": "JPEG",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".webp": "WEBP",
    ".bmp": "BMP",
}
IMAGE_SUFFIXES = tuple(SUFFIX_FORMAT)
JPEG_QUALITY = 95

_ORIENTATION_TAG = 0x0112
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # classic and BigTIFF
_TIFF_ICC_TAG = 34675
# Errors Pillow and its decoders raise on corrupt or truncated data.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error, IndexError)


class ImageReadError(ValueError):
    """An input file that cannot be used; the message is "<path>: <reason>"."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


@dataclass
class ImageFile:
    """Pixels of an image file plus the metadata copied to the output.

    pixels: (H, W), (H, W, 2), (H, W, 3) or (H, W, 4), uint8 or uint16, upright.
    format: the file's format, one of SUPPORTED_FORMATS.
    icc_profile: the embedded ICC profile (bytes) or None.
    exif: the EXIF block ("Exif\\0\\0" + TIFF structure) without orientation tag, or None.
    """

    pixels: np.ndarray
    format: str
    icc_profile: bytes | None = None
    exif: bytes | None = None

    @property
    def bit_depth(self) -> int:
        return 16 if self.pixels.dtype == np.uint16 else 8

    @property
    def has_alpha(self) -> bool:
        return self.pixels.ndim == 3 and self.pixels.shape[2] in (2, 4)


@contextlib.contextmanager
def _pillow_pixel_limit(max_pixels: int | None) -> Iterator[None]:
    # Pillow's own bomb check warns at MAX_IMAGE_PIXELS and fails at twice that; ours replaces it.
    previous = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = previous


def read_image(path: str | os.PathLike, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> ImageFile:
    """Read an image file at full fidelity; `max_pixels` None or 0 = no limit.

    Raises ImageReadError naming the file and the reason for any unusable input.
    """
    path = Path(path)
    if not path.exists():
        raise ImageReadError(path, "no such file")
    if not path.is_file():
        raise ImageReadError(path, "not a regular file")
    if path.stat().st_size == 0:
        raise ImageReadError(path, "empty file (0 bytes)")
    with open(path, "rb") as handle:
        magic = handle.read(4)
    if magic in _TIFF_MAGIC:
        # 16-bit TIFFs (gray + alpha included) need tifffile; Pillow reads the 8-bit ones.
        tiff16 = _read_tiff16(path, max_pixels)
        if tiff16 is not None:
            return tiff16
    with _pillow_pixel_limit(max_pixels):
        try:
            image = Image.open(path)
        except UnidentifiedImageError:
            raise ImageReadError(path, "not an image file (no PNG, JPEG, TIFF, WebP or BMP data)") from None
        except _DECODE_ERRORS as error:
            raise ImageReadError(path, f"unreadable image header ({error})") from None
        with image:
            file_format = "JPEG" if image.format == "MPO" else image.format
            if file_format not in SUPPORTED_FORMATS:
                raise ImageReadError(
                    path, f"unsupported format {image.format} (supported: PNG, JPEG, TIFF, WebP, BMP)"
                )
            width, height = image.size
            _check_pixel_limit(path, width, height, max_pixels)
            if file_format == "PNG" and png_bit_depth(path) == 16:
                return _read_png16(path, image)
            return _read_with_pillow(path, image, file_format)


@dataclass(frozen=True)
class ImageHeader:
    """What a file's header says, before decoding: size, channels, bytes per sample."""

    width: int
    height: int
    channels: int
    sample_bytes: int


def read_header(path: str | os.PathLike) -> ImageHeader | None:
    """Size and layout of an image file from its header (no pixels are decoded), or None when
    the header cannot be read (`read_image` then says why). Channels count as stored (a
    palette image as RGB(A), CMYK as 4), which can only overestimate the decoded array."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            magic = handle.read(4)
        if magic in _TIFF_MAGIC:
            with tifffile.TiffFile(path) as tiff:
                page = tiff.pages[0]
                return ImageHeader(page.imagewidth, page.imagelength, page.samplesperpixel, page.dtype.itemsize)
        with _pillow_pixel_limit(None), Image.open(path) as image:
            width, height = image.size
            bands = len(image.getbands()) if image.mode != "P" else 4 if "transparency" in image.info else 3
            wide = image.mode.startswith("I") or (image.format == "PNG" and png_bit_depth(path) == 16)
            return ImageHeader(width, height, bands, 2 if wide else 1)
    except (UnidentifiedImageError, tifffile.TiffFileError, AttributeError, *_DECODE_ERRORS):
        return None


def _check_pixel_limit(path: Path, width: int, height: int, max_pixels: int | None) -> None:
    if max_pixels and width * height > max_pixels:
        raise ImageReadError(
            path,
            f"{width}x{height} = {width * height:,} pixels exceeds the limit of {max_pixels:,} "
            "(raise it with --max-pixels; it guards against decompression bombs)",
        )


def _read_with_pillow(path: Path, image: Image.Image, file_format: str) -> ImageFile:
    try:
        image.load()
    except _DECODE_ERRORS as error:
        raise ImageReadError(path, f"truncated or corrupt image data ({error})") from None
    icc_profile = image.info.get("icc_profile") or None
    if image.mode in ("CMYK", "LAB"):
        icc_profile = None  # the profile describes the CMYK/Lab data, not the converted RGB
    exif = image.getexif()
    orientation = exif.get(_ORIENTATION_TAG, 1)
    try:
        pixels = pixels_from_pil(image)
    except ValueError as error:
        raise ImageReadError(path, str(error)) from None
    if file_format == "TIFF":
        # Pillow lists TIFF structure tags as "EXIF"; they are no camera metadata to copy.
        orientation = image.tag_v2.get(274, 1) if hasattr(image, "tag_v2") else 1
        exif_bytes = None
    else:
        exif_bytes = _exif_without_orientation(exif)
    return ImageFile(apply_orientation(pixels, orientation), file_format, icc_profile, exif_bytes)


def pixels_from_pil(image: Image.Image) -> np.ndarray:
    """A Pillow image as (H, W[, C]) uint8/uint16 pixels: L, LA, RGB or RGBA (or 16-bit gray).

    Palette images become RGB (RGBA with transparency); 1-bit becomes L; CMYK, YCbCr, Lab and
    HSV become RGB; 16-bit gray (I;16*, or I within 0..65535) becomes uint16. Orientation is not
    touched. ValueError for other modes (e.g. F, 32-bit I outside the 16-bit range).
    """
    mode = image.mode
    if mode in ("L", "LA", "RGB", "RGBA"):
        return np.asarray(image)
    if mode == "1":
        return np.asarray(image.convert("L"))
    if mode == "P":
        return np.asarray(image.convert("RGBA" if "transparency" in image.info else "RGB"))
    if mode in ("PA", "RGBa"):
        return np.asarray(image.convert("RGBA"))
    if mode == "La":
        return np.asarray(image.convert("LA"))
    if mode in ("RGBX", "YCbCr", "HSV", "CMYK", "LAB"):
        return np.asarray(image.convert("RGB"))
    if mode.startswith("I;16"):
        return np.asarray(image).astype(np.uint16)
    if mode == "I":
        values = np.asarray(image)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise ValueError("unsupported image mode I (32-bit integers outside the 16-bit range)")
        return values.astype(np.uint16)
    raise ValueError(
        f"unsupported image mode {mode} (supported: 1, L, LA, P, PA, RGB, RGBA, CMYK, YCbCr, I;16)"
    )


def pil_from_pixels(pixels: np.ndarray, mode: str | None = None) -> Image.Image:
    """(H, W[, C]) uint8/uint16 pixels -> Pillow image; `mode` "I" asks for 32-bit integer gray."""
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[..., 0]
    pixels = np.ascontiguousarray(pixels)
    if pixels.dtype == np.uint16:
        if pixels.ndim != 2:
            raise ValueError("Pillow holds 16-bit images only as gray (mode I;16); use a numpy array")
        if mode == "I":
            return Image.fromarray(pixels.astype(np.int32))
        return Image.fromarray(pixels)
    return Image.fromarray(pixels)


def _exif_without_orientation(exif: Image.Exif) -> bytes | None:
    if not len(exif):
        return None
    exif.pop(_ORIENTATION_TAG, None)
    return exif.tobytes() if len(exif) else None


def _read_png16(path: Path, image: Image.Image) -> ImageFile:
    # Pillow reads 16-bit colour PNGs as 8-bit; OpenCV keeps 16 bits (in BGR order).
    color_type = _png_color_type(path)
    pixels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if pixels is None:
        raise ImageReadError(path, "truncated or corrupt 16-bit PNG data")
    if pixels.ndim == 3:
        code = cv2.COLOR_BGRA2RGBA if pixels.shape[2] == 4 else cv2.COLOR_BGR2RGB
        pixels = cv2.cvtColor(pixels, code)
    if color_type == 4 and pixels.ndim == 3:  # gray + alpha, expanded to RGBA by OpenCV
        pixels = np.stack([pixels[..., 0], pixels[..., 3]], axis=2)
    elif color_type == 0 and pixels.ndim == 3:
        pixels = pixels[..., 0]
    exif = image.getexif()
    orientation = exif.get(_ORIENTATION_TAG, 1)
    return ImageFile(
        apply_orientation(pixels.astype(np.uint16), orientation),
        "PNG",
        image.info.get("icc_profile") or None,
        _exif_without_orientation(exif),
    )


def _png_color_type(path: Path) -> int:
    with open(path, "rb") as handle:
        header = handle.read(26)
    return header[25]


def _read_tiff16(path: Path, max_pixels: int | None) -> ImageFile | None:
    """A TIFF with more than 8 bits per sample, or None for 8-bit TIFFs (read by Pillow)."""
    try:
        with tifffile.TiffFile(path) as tiff:
            page = tiff.pages[0]
            if page.dtype == np.uint8:
                return None
            _check_pixel_limit(path, page.imagewidth, page.imagelength, max_pixels)
            if page.dtype != np.uint16:
                raise ImageReadError(
                    path, f"unsupported TIFF sample type {page.dtype} (supported: 8- and 16-bit unsigned)"
                )
            photometric = int(page.photometric)
            if photometric not in (1, 2):  # MINISBLACK, RGB
                raise ImageReadError(
                    path, f"unsupported 16-bit TIFF photometric {page.photometric.name} (gray and RGB only)"
                )
            samples = page.samplesperpixel
            if samples not in (1, 2, 3, 4):
                raise ImageReadError(path, f"unsupported TIFF with {samples} samples per pixel")
            orientation = int(page.tags[274].value) if 274 in page.tags else 1
            icc_tag = page.tags.get(_TIFF_ICC_TAG)
            icc_profile = bytes(icc_tag.value) if icc_tag is not None else None
            if page.compression in tifffile.TIFF.DECOMPRESSORS:
                pixels = page.asarray()
                if page.planarconfig == 2 and pixels.ndim == 3:  # (S, H, W) -> (H, W, S)
                    pixels = np.moveaxis(pixels, 0, 2)
            else:
                pixels = _read_tiff16_with_opencv(path, samples)
    except ImageReadError:
        raise
    except (tifffile.TiffFileError, *_DECODE_ERRORS) as error:
        raise ImageReadError(path, f"truncated or corrupt TIFF data ({error})") from None
    pixels = np.ascontiguousarray(pixels.squeeze(2) if pixels.ndim == 3 and pixels.shape[2] == 1 else pixels)
    return ImageFile(apply_orientation(pixels, orientation), "TIFF", icc_profile, None)


def _read_tiff16_with_opencv(path: Path, samples: int) -> np.ndarray:
    # libtiff (in OpenCV) decodes the compressions tifffile needs `imagecodecs` for (LZW, JPEG).
    if samples == 2:
        raise ImageReadError(path, "unsupported 16-bit gray+alpha TIFF with this compression")
    pixels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if pixels is None or pixels.dtype != np.uint16:
        raise ImageReadError(path, "truncated or corrupt 16-bit TIFF data")
    if pixels.ndim == 3:
        pixels = cv2.cvtColor(pixels, cv2.COLOR_BGRA2RGBA if pixels.shape[2] == 4 else cv2.COLOR_BGR2RGB)
    return pixels


def read_array(path: str | os.PathLike) -> np.ndarray:
    """Pixels of an image file, upright: (H, W) or (H, W, C), uint8/uint16 (`read_image`
    without metadata and without the pixel limit). Raises ImageReadError naming the file."""
    return read_image(path, max_pixels=None).pixels


def png_bit_depth(path: str | os.PathLike) -> int:
    """Bit depth from a PNG's IHDR chunk (PIL silently reads 16-bit RGB PNGs as 8-bit)."""
    with open(path, "rb") as handle:
        header = handle.read(26)
    return header[24] if len(header) == 26 and header[:8] == b"\x89PNG\r\n\x1a\n" else 8


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


# --------------------------------------------------------------------------------------------
# Writing


def format_of_suffix(path: str | os.PathLike) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in SUFFIX_FORMAT:
        raise ValueError(f"cannot tell the image format of {path}: use one of {', '.join(IMAGE_SUFFIXES)}")
    return SUFFIX_FORMAT[suffix]


def write_image(
    path: str | os.PathLike,
    pixels: np.ndarray,
    file_format: str | None = None,
    icc_profile: bytes | None = None,
    exif: bytes | None = None,
) -> None:
    """Write (H, W[, C]) uint8/uint16 pixels atomically, with ICC profile and EXIF if given.

    C is 1, 2 (gray + alpha), 3 (RGB) or 4 (RGBA). PNG and TIFF keep 16 bits; JPEG, WebP and
    BMP are 8-bit formats; JPEG has no alpha channel. TIFFs are zlib-compressed and get the ICC
    profile but no EXIF; JPEG is written at quality 95 without chroma subsampling.
    """
    path = Path(path)
    file_format = file_format or format_of_suffix(path)
    check_writable(path, pixels.shape, pixels.dtype, file_format)
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[..., 0]

    def write(temporary: str) -> None:
        if file_format == "TIFF":
            _write_tiff(temporary, pixels, icc_profile)
        elif file_format == "PNG" and pixels.dtype == np.uint16:
            Path(temporary).write_bytes(encode_png16(pixels, icc_profile, exif))
        elif file_format == "BMP" and pixels.ndim == 3 and pixels.shape[2] == 4:
            # Pillow writes 32-bit BMPs without an alpha mask (read back as RGB); OpenCV adds it.
            encoded = cv2.imencode(".bmp", cv2.cvtColor(pixels, cv2.COLOR_RGBA2BGRA))[1]
            Path(temporary).write_bytes(encoded.tobytes())
        else:
            _write_with_pillow(temporary, pixels, file_format, icc_profile, exif)

    atomic_write(path, write)


def write_rgb_float(path: str | os.PathLike, array: np.ndarray, bit_depth: int = 8) -> None:
    """(H, W, 3) float in [0, 1] -> 8- or 16-bit file, atomically."""
    write_image(path, from_float(array, np.uint8 if bit_depth == 8 else np.uint16))


def check_writable(
    path: str | os.PathLike, shape: tuple[int, ...], dtype: np.dtype, file_format: str
) -> None:
    """ValueError saying why pixels of this shape and dtype cannot be stored as `file_format`
    (e.g. JPEG + alpha, 16-bit BMP)."""
    if file_format not in SUPPORTED_FORMATS:
        raise ValueError(f"cannot write format {file_format} (supported: {', '.join(SUPPORTED_FORMATS)})")
    if dtype not in (np.uint8, np.uint16):
        raise ValueError(f"pixels must be uint8 or uint16, got {dtype}")
    if len(shape) not in (2, 3) or (len(shape) == 3 and shape[2] not in (1, 2, 3, 4)):
        raise ValueError(f"pixels must be (H, W) or (H, W, 1|2|3|4), got shape {shape}")
    if dtype == np.uint16 and file_format not in ("PNG", "TIFF"):
        raise ValueError(f"{path}: {file_format} stores 8 bits per channel; write 16-bit images as PNG or TIFF")
    channels = shape[2] if len(shape) == 3 else 1
    if channels in (2, 4) and file_format == "JPEG":
        raise ValueError(f"{path}: JPEG cannot store the alpha channel; use --format png or tiff")
    if channels == 2 and file_format in ("BMP", "WEBP"):
        raise ValueError(f"{path}: {file_format} cannot store gray + alpha; use --format png or tiff")


def _write_with_pillow(
    path: str, pixels: np.ndarray, file_format: str, icc_profile: bytes | None, exif: bytes | None
) -> None:
    image = Image.fromarray(np.ascontiguousarray(pixels))
    options: dict = {}
    if icc_profile and file_format != "BMP":
        options["icc_profile"] = icc_profile
    if exif and file_format in ("PNG", "JPEG", "WEBP"):
        options["exif"] = exif
    if file_format == "JPEG":
        options.update(quality=JPEG_QUALITY, subsampling=0)
    elif file_format == "WEBP":
        options.update(quality=JPEG_QUALITY)
    image.save(path, format=file_format, **options)


def _write_tiff(path: str, pixels: np.ndarray, icc_profile: bytes | None) -> None:
    gray = pixels.ndim == 2 or pixels.shape[2] in (1, 2)
    options: dict = {
        "photometric": "minisblack" if gray else "rgb",
        "compression": "zlib",
        "metadata": None,
    }
    if pixels.ndim == 3 and pixels.shape[2] in (2, 4):
        options["extrasamples"] = ["unassalpha"]
    if icc_profile:
        options["iccprofile"] = icc_profile
    tifffile.imwrite(path, pixels, **options)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def encode_png16(pixels: np.ndarray, icc_profile: bytes | None = None, exif: bytes | None = None) -> bytes:
    """A 16-bit PNG file of (H, W[, C]) uint16 pixels, C in 1..4, with optional iCCP and eXIf.

    (Pillow cannot write 16-bit colour PNGs and OpenCV writes no ICC profile or gray + alpha.)
    Every row uses PNG filter 1 ("Sub"), which is vectorised here and compresses photographs well.
    """
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    height, width, channels = pixels.shape
    color_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    bytes_per_pixel = 2 * channels
    raw = np.ascontiguousarray(pixels.astype(">u2")).view(np.uint8).reshape(height, width * bytes_per_pixel)
    filtered = raw.copy()
    filtered[:, bytes_per_pixel:] = raw[:, bytes_per_pixel:] - raw[:, :-bytes_per_pixel]  # wraps mod 256
    scanlines = np.concatenate([np.ones((height, 1), np.uint8), filtered], axis=1)
    chunks = [_png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, color_type, 0, 0, 0))]
    if icc_profile:
        chunks.append(_png_chunk(b"iCCP", b"ICC profile\x00\x00" + zlib.compress(icc_profile)))
    if exif:
        chunks.append(_png_chunk(b"eXIf", exif.removeprefix(b"Exif\x00\x00")))
    chunks.append(_png_chunk(b"IDAT", zlib.compress(scanlines.tobytes(), 6)))
    chunks.append(_png_chunk(b"IEND", b""))
    return b"\x89PNG\r\n\x1a\n" + b"".join(chunks)
