"""Tiles cover the image on the network's grid and the blending window sums to one."""

from __future__ import annotations

import numpy as np
import pytest

from demoe.inference.tiling import TileBlender, axis_window, ramp, tile_grid, tile_spans


@pytest.mark.parametrize("length", [1, 7, 64, 65, 100, 257])
@pytest.mark.parametrize("tile,overlap,align", [(16, 4, 1), (32, 8, 4), (64, 32, 16), (48, 0, 16)])
def test_spans_cover_everything_on_the_grid_with_enough_overlap(length, tile, overlap, align):
    spans = tile_spans(length, tile, overlap, align)
    covered = np.zeros(length, bool)
    for start, stop in spans:
        covered[start:stop] = True
        assert start % align == 0
        assert stop - start <= tile + align - 1
    assert covered.all()
    assert spans[0][0] == 0 and spans[-1][1] == length
    for (start, stop), (next_start, _) in zip(spans, spans[1:]):
        assert stop - next_start >= overlap  # neighbours share at least `overlap` pixels
        assert next_start > start


def test_spans_reject_bad_arguments():
    with pytest.raises(ValueError, match="overlap must be in"):
        tile_spans(100, 16, 16)
    with pytest.raises(ValueError, match="tile must be >= align"):
        tile_spans(100, 8, 0, align=16)
    with pytest.raises(ValueError, match="length"):
        tile_spans(0, 8, 0)


def test_ramp_is_a_partition_of_unity():
    for overlap in (1, 2, 7, 32):
        rise = ramp(overlap)
        assert (rise > 0).all() and (rise < 1).all()
        np.testing.assert_allclose(rise + rise[::-1], 1.0, atol=1e-6)
        assert (np.diff(rise) > 0).all()


def test_window_is_one_at_image_borders_and_ramps_inside():
    window = axis_window(0, 10, 30, 4)
    assert (window[:6] == 1).all() and (window[6:] < 1).all()
    middle = axis_window(10, 20, 30, 4)
    assert (middle[:4] < 1).all() and (middle[4:6] == 1).all() and (middle[6:] < 1).all()
    assert (axis_window(0, 30, 30, 4) == 1).all()


@pytest.mark.parametrize("height,width", [(37, 53), (64, 64), (5, 90)])
def test_blending_identical_tiles_reproduces_the_image(height, width):
    image = np.random.default_rng(0).random((height, width, 3)).astype(np.float32)
    blender = TileBlender(height, width, 3, overlap=6)
    for tile in tile_grid(height, width, 16, 6, align=4):
        blender.add(tile, image[tile.top : tile.bottom, tile.left : tile.right])
    np.testing.assert_allclose(blender.result(), image, atol=1e-6)


def test_blending_is_smooth_across_seams():
    # Two tiles that disagree by a constant: the blend moves between them without a step.
    blender = TileBlender(1, 40, 1, overlap=8)
    tiles = tile_grid(1, 40, 24, 8)
    for index, tile in enumerate(tiles):
        blender.add(tile, np.full((tile.height, tile.width, 1), float(index), np.float32))
    row = blender.result()[0, :, 0]
    assert row[0] == 0 and row[-1] == len(tiles) - 1
    assert np.abs(np.diff(row)).max() < 0.25  # a hard seam would jump by 1
