"""Full-fidelity image files: every kind reads back with its size, depth, mode, alpha, ICC and
orientation, and every broken file gets a one-line reason."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
from PIL import Image, ImageCms

from demoe import imageio as image_io
from demoe.imageio import ImageReadError, encode_png16, read_image, write_image

from inference_testing import file_hash, psnr

SRGB_ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _pixels(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    peak = 255 if dtype == np.uint8 else 65535
    return rng.integers(0, peak + 1, size=shape, dtype=np.int64).astype(dtype)


# Files written by independent writers (Pillow, OpenCV, tifffile), read by read_image.
LOSSLESS_CASES = [
    ("png", "L", (9, 13), np.uint8),
    ("png", "LA", (9, 13, 2), np.uint8),
    ("png", "RGB", (9, 13, 3), np.uint8),
    ("png", "RGBA", (9, 13, 4), np.uint8),
    ("png", "I;16", (9, 13), np.uint16),
    ("png", "RGB16", (9, 13, 3), np.uint16),
    ("png", "RGBA16", (9, 13, 4), np.uint16),
    ("png", "LA16", (9, 13, 2), np.uint16),
    ("tif", "L", (9, 13), np.uint8),
    ("tif", "RGB", (9, 13, 3), np.uint8),
    ("tif", "RGBA", (9, 13, 4), np.uint8),
    ("tif", "L16", (9, 13), np.uint16),
    ("tif", "LA16", (9, 13, 2), np.uint16),
    ("tif", "RGB16", (9, 13, 3), np.uint16),
    ("tif", "RGBA16", (9, 13, 4), np.uint16),
    ("tif", "RGB16-lzw", (9, 13, 3), np.uint16),
    ("bmp", "RGB", (9, 13, 3), np.uint8),
    ("bmp", "RGBA", (9, 13, 4), np.uint8),
]


def _write_independently(path: Path, kind: str, pixels: np.ndarray) -> None:
    suffix = path.suffix
    if suffix == ".png" and pixels.dtype == np.uint16 and kind != "I;16":
        if kind == "LA16":
            path.write_bytes(encode_png16(pixels))  # OpenCV cannot write gray + alpha
            return
        code = cv2.COLOR_RGBA2BGRA if pixels.shape[2] == 4 else cv2.COLOR_RGB2BGR
        assert cv2.imwrite(str(path), cv2.cvtColor(pixels, code))
    elif suffix == ".tif" and kind.endswith("-lzw"):
        assert cv2.imwrite(str(path), cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR))  # libtiff LZW
    elif suffix == ".tif":
        extrasamples = ["unassalpha"] if pixels.ndim == 3 and pixels.shape[2] in (2, 4) else None
        photometric = "minisblack" if pixels.ndim == 2 or pixels.shape[2] == 2 else "rgb"
        tifffile.imwrite(path, pixels, photometric=photometric, extrasamples=extrasamples)
    elif suffix == ".bmp" and pixels.shape[2] == 4:
        assert cv2.imwrite(str(path), cv2.cvtColor(pixels, cv2.COLOR_RGBA2BGRA))  # BITFIELDS alpha
    else:
        Image.fromarray(pixels).save(path)


@pytest.mark.parametrize("suffix,kind,shape,dtype", LOSSLESS_CASES, ids=[f"{c[0]}-{c[1]}" for c in LOSSLESS_CASES])
def test_lossless_files_read_exactly_and_write_back_exactly(tmp_path, suffix, kind, shape, dtype):
    pixels = _pixels(shape, dtype)
    source = tmp_path / f"in.{suffix}"
    _write_independently(source, kind, pixels)
    image = read_image(source)
    assert image.pixels.dtype == dtype
    assert image.pixels.shape == shape
    np.testing.assert_array_equal(image.pixels, pixels)
    assert image.has_alpha == (len(shape) == 3 and shape[2] in (2, 4))

    out = tmp_path / f"out.{suffix}"
    write_image(out, image.pixels, image.format, icc_profile=SRGB_ICC)
    again = read_image(out)
    assert again.format == image.format
    np.testing.assert_array_equal(again.pixels, pixels)
    if suffix != "bmp":  # BMP has no ICC support in Pillow
        assert again.icc_profile == SRGB_ICC


@pytest.mark.parametrize("suffix,channels", [("jpg", 1), ("jpg", 3), ("webp", 3), ("webp", 4)])
def test_lossy_formats_keep_size_mode_and_alpha(tmp_path, suffix, channels):
    pixels = (np.linspace(0, 255, 16 * 24 * channels).reshape(16, 24, channels)).astype(np.uint8)
    pixels = pixels[..., 0] if channels == 1 else pixels
    Image.fromarray(pixels).save(tmp_path / f"in.{suffix}", quality=100)
    image = read_image(tmp_path / f"in.{suffix}")
    assert image.pixels.shape == pixels.shape and image.pixels.dtype == np.uint8
    write_image(tmp_path / f"out.{suffix}", image.pixels, image.format)
    again = read_image(tmp_path / f"out.{suffix}")
    assert again.pixels.shape == pixels.shape
    assert psnr(again.pixels, image.pixels, peak=255) > 35
    if channels == 4:
        np.testing.assert_array_equal(again.pixels[..., 3], image.pixels[..., 3])


def test_palette_images_are_converted(tmp_path):
    rgb = _pixels((8, 10, 3), np.uint8)
    palette = Image.fromarray(rgb).quantize(16)
    palette.save(tmp_path / "p.png")
    image = read_image(tmp_path / "p.png")
    assert image.pixels.shape == (8, 10, 3)
    np.testing.assert_array_equal(image.pixels, np.asarray(palette.convert("RGB")))

    with_transparency = palette.copy()
    with_transparency.info["transparency"] = 0
    with_transparency.save(tmp_path / "pt.png", transparency=0)
    image = read_image(tmp_path / "pt.png")
    assert image.pixels.shape == (8, 10, 4)
    assert set(np.unique(image.pixels[..., 3])) <= {0, 255}


def test_one_bit_and_cmyk_are_converted(tmp_path):
    Image.fromarray(_pixels((6, 7), np.uint8) > 128).save(tmp_path / "bits.png")
    assert read_image(tmp_path / "bits.png").pixels.shape == (6, 7)
    Image.fromarray(_pixels((6, 7, 3), np.uint8)).convert("CMYK").save(tmp_path / "cmyk.jpg")
    image = read_image(tmp_path / "cmyk.jpg")
    assert image.pixels.shape == (6, 7, 3) and image.pixels.dtype == np.uint8


@pytest.mark.parametrize("suffix", ["jpg", "png", "webp"])
def test_exif_orientation_is_applied_and_other_tags_kept(tmp_path, suffix):
    pixels = _pixels((6, 10, 3), np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    exif[0x010F] = "TestCamera"
    options = {"quality": 100} if suffix == "jpg" else {"lossless": True} if suffix == "webp" else {}
    Image.fromarray(pixels).save(tmp_path / f"o.{suffix}", exif=exif.tobytes(), **options)
    image = read_image(tmp_path / f"o.{suffix}")
    assert image.pixels.shape == (10, 6, 3)
    if suffix != "jpg":
        np.testing.assert_array_equal(image.pixels, np.rot90(pixels, -1))
    write_image(tmp_path / f"out.{suffix}", image.pixels, image.format, image.icc_profile, image.exif)
    with Image.open(tmp_path / f"out.{suffix}") as written:
        tags = written.getexif()
        assert 0x0112 not in tags
        assert tags[0x010F] == "TestCamera"
        assert written.size == (6, 10)


def test_orientation_of_16_bit_png(tmp_path):
    pixels = _pixels((4, 7, 3), np.uint16)
    exif = Image.Exif()
    exif[0x0112] = 8
    (tmp_path / "o16.png").write_bytes(encode_png16(pixels, exif=exif.tobytes()))
    image = read_image(tmp_path / "o16.png")
    np.testing.assert_array_equal(image.pixels, np.rot90(pixels, 1))


def test_icc_profile_of_jpeg_and_16_bit_png_is_copied(tmp_path):
    Image.fromarray(_pixels((5, 6, 3), np.uint8)).save(tmp_path / "c.jpg", icc_profile=SRGB_ICC)
    assert read_image(tmp_path / "c.jpg").icc_profile == SRGB_ICC
    (tmp_path / "c16.png").write_bytes(encode_png16(_pixels((5, 6, 3), np.uint16), icc_profile=SRGB_ICC))
    with Image.open(tmp_path / "c16.png") as check:  # an independent reader sees the profile
        assert check.info["icc_profile"] == SRGB_ICC
    assert read_image(tmp_path / "c16.png").icc_profile == SRGB_ICC


def _truncated_png(tmp_path):
    Image.fromarray(_pixels((64, 64, 3), np.uint8)).save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "truncated.png").write_bytes(data[: len(data) // 2])
    return tmp_path / "truncated.png"


def _truncated_jpeg(tmp_path):
    Image.fromarray(_pixels((64, 64, 3), np.uint8)).save(tmp_path / "full.jpg")
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "truncated.jpg").write_bytes(data[: len(data) // 2])
    return tmp_path / "truncated.jpg"


def _truncated_png16(tmp_path):
    data = encode_png16(_pixels((64, 64, 3), np.uint16))
    (tmp_path / "truncated16.png").write_bytes(data[: len(data) // 2])
    return tmp_path / "truncated16.png"


def _float_tiff(tmp_path):
    tifffile.imwrite(tmp_path / "float.tif", np.zeros((4, 4), np.float32))
    return tmp_path / "float.tif"


def _gif(tmp_path):
    Image.fromarray(_pixels((4, 4, 3), np.uint8)).save(tmp_path / "anim.gif")
    return tmp_path / "anim.gif"


def _text(tmp_path):
    (tmp_path / "notes.png").write_text("not an image at all\n")
    return tmp_path / "notes.png"


def _empty(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    return tmp_path / "empty.jpg"


BROKEN = [
    (_empty, "empty file"),
    (_text, "not an image file"),
    (_truncated_png, "truncated or corrupt"),
    (_truncated_jpeg, "truncated or corrupt"),
    (_truncated_png16, "truncated or corrupt 16-bit PNG"),
    (_float_tiff, "unsupported TIFF sample type float32"),
    (_gif, "unsupported format GIF"),
]


@pytest.mark.parametrize("make,reason", BROKEN, ids=[b[0].__name__.strip("_") for b in BROKEN])
def test_broken_files_give_a_one_line_reason_and_stay_untouched(tmp_path, make, reason):
    path = make(tmp_path)
    before = file_hash(path)
    with pytest.raises(ImageReadError) as caught:
        read_image(path)
    message = str(caught.value)
    assert message.startswith(str(path)) and reason in message
    assert "\n" not in message
    assert file_hash(path) == before


def test_pixel_limit_guards_against_decompression_bombs(tmp_path):
    Image.fromarray(np.zeros((100, 100), np.uint8)).save(tmp_path / "big.png")
    with pytest.raises(ImageReadError, match="100x100 = 10,000 pixels exceeds the limit of 9,999"):
        read_image(tmp_path / "big.png", max_pixels=9_999)
    assert read_image(tmp_path / "big.png", max_pixels=10_000).pixels.shape == (100, 100)
    assert read_image(tmp_path / "big.png", max_pixels=None).pixels.shape == (100, 100)


def test_missing_file(tmp_path):
    with pytest.raises(ImageReadError, match="no such file"):
        read_image(tmp_path / "nope.png")


def test_write_refuses_what_the_format_cannot_hold(tmp_path):
    with pytest.raises(ValueError, match="JPEG cannot store the alpha channel"):
        write_image(tmp_path / "a.jpg", _pixels((4, 4, 4), np.uint8))
    with pytest.raises(ValueError, match="8 bits per channel"):
        write_image(tmp_path / "a.bmp", _pixels((4, 4, 3), np.uint16))
    assert list(tmp_path.iterdir()) == []


def test_interrupted_write_leaves_nothing_and_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "out.png"
    write_image(target, _pixels((8, 8, 3), np.uint8, seed=1))
    before = file_hash(target)

    def interrupted(*args, **kwargs):
        Path(args[0]).write_bytes(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(image_io, "_write_with_pillow", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_image(target, _pixels((8, 8, 3), np.uint8, seed=2))
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]
    assert file_hash(target) == before


def test_written_files_get_normal_permissions(tmp_path):
    write_image(tmp_path / "p.png", _pixels((3, 3), np.uint8))
    assert (tmp_path / "p.png").stat().st_mode & 0o044  # readable by group/others under a normal umask


def test_png16_encoder_matches_independent_decoders():
    for shape in [(1, 1), (3, 5, 2), (7, 2, 3), (4, 4, 4)]:
        pixels = _pixels(shape, np.uint16, seed=len(shape))
        data = encode_png16(pixels)
        decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        if pixels.ndim == 2:
            np.testing.assert_array_equal(decoded, pixels)
        elif shape[2] == 2:
            np.testing.assert_array_equal(decoded[..., 0], pixels[..., 0])
            np.testing.assert_array_equal(decoded[..., 3], pixels[..., 1])
        else:
            code = cv2.COLOR_BGRA2RGBA if shape[2] == 4 else cv2.COLOR_BGR2RGB
            np.testing.assert_array_equal(cv2.cvtColor(decoded, code), pixels)
    with Image.open(io.BytesIO(encode_png16(_pixels((3, 4), np.uint16)))) as gray:
        assert gray.mode == "I;16"
