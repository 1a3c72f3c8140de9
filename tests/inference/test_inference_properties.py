"""Property-based tests (hypothesis) over random sizes, channel layouts, bit depths and tilings."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from demoe.imageio import read_image, write_image
from demoe.inference.pipeline import Deblurrer
from demoe.inference.tiling import TileBlender, tile_grid

from inference_testing import psnr, tiny_model

DEBLURRER = Deblurrer(tiny_model(), device="cpu")
PROPERTY_SETTINGS = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])

sizes = st.tuples(st.integers(1, 40), st.integers(1, 40))
layouts = st.sampled_from([None, 1, 2, 3, 4])  # None = (H, W)
dtypes = st.sampled_from([np.uint8, np.uint16, np.float32])


def _image(size, channels, dtype, seed):
    shape = size if channels is None else (*size, channels)
    rng = np.random.default_rng(seed)
    if dtype == np.float32:
        return rng.random(shape, dtype=np.float32)
    peak = 255 if dtype == np.uint8 else 65535
    return rng.integers(0, peak + 1, size=shape).astype(dtype)


@PROPERTY_SETTINGS
@given(size=sizes, channels=layouts, dtype=dtypes, tile=st.sampled_from([0, 8, 16]), seed=st.integers(0, 99))
def test_restore_keeps_shape_dtype_and_alpha(size, channels, dtype, tile, seed):
    image = _image(size, channels, dtype, seed)
    result = DEBLURRER.restore(image, tile=tile, tile_overlap=4)
    assert result.image.shape == image.shape
    assert result.image.dtype == image.dtype
    if channels in (2, 4):
        np.testing.assert_array_equal(result.image[..., -1], image[..., -1])
    if dtype == np.float32:
        assert np.isfinite(result.image).all()
        assert result.image.min() >= 0 and result.image.max() <= 1
    assert len(result.experts_used) == 1


@PROPERTY_SETTINGS
@given(
    size=sizes,
    channels=layouts,
    depth=st.sampled_from([8, 16]),
    suffix=st.sampled_from([".png", ".tif", ".bmp"]),
    seed=st.integers(0, 99),
)
def test_lossless_files_round_trip(size, channels, depth, suffix, seed):
    if suffix == ".bmp" and (depth == 16 or channels == 2):
        return  # BMP holds neither 16 bits nor gray + alpha (write_image refuses, tested elsewhere)
    image = _image(size, channels, np.uint8 if depth == 8 else np.uint16, seed)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"x{suffix}"
        write_image(path, image)
        back = read_image(path).pixels
    expected = image[..., 0] if image.ndim == 3 and image.shape[2] == 1 else image
    assert back.dtype == image.dtype
    np.testing.assert_array_equal(back, expected)


@PROPERTY_SETTINGS
@given(
    height=st.integers(1, 90),
    width=st.integers(1, 90),
    tile=st.sampled_from([8, 16, 24]),
    overlap_fraction=st.floats(0, 0.9),
    align=st.sampled_from([1, 4]),
)
def test_blending_reproduces_any_image_from_its_own_tiles(height, width, tile, overlap_fraction, align):
    overlap = min(tile - 1, int(tile * overlap_fraction))
    image = np.random.default_rng(height * 100 + width).random((height, width, 3)).astype(np.float32)
    blender = TileBlender(height, width, 3, overlap)
    for region in tile_grid(height, width, tile, overlap, align):
        blender.add(region, image[region.top : region.bottom, region.left : region.right])
    np.testing.assert_allclose(blender.result(), image, atol=1e-5)


@settings(max_examples=4, deadline=None)
@given(height=st.integers(33, 64), width=st.integers(33, 64), seed=st.integers(0, 99))
def test_tiled_matches_whole_for_random_sizes(height, width, seed):
    image = np.random.default_rng(seed).random((height, width, 3)).astype(np.float32)
    whole = DEBLURRER.restore(image, task="global_motion").image
    tiled = DEBLURRER.restore(image, task="global_motion", tile=32, tile_overlap=16).image
    assert psnr(tiled, whole) >= 45
