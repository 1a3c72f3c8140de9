"""Overlapping tiles and their smooth blending window: pure functions on sizes and arrays.

A side of length L is covered by tiles of length T starting every T - M pixels (M = overlap),
with starts on the network's downsampling grid; the last tile ends exactly at L, so it may
overlap its neighbour by more than M.
Each tile's output is multiplied by a window that rises as a raised cosine (Hann) over M pixels
at every edge it shares with another tile, and is 1 elsewhere (image borders included). The
accumulated sum divided by the accumulated weights gives the blended image; where exactly two
tiles overlap by M pixels the two windows add up to 1 (sin^2 + cos^2).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Tile:
    """A rectangle of the image: rows [top, bottom), columns [left, right)."""

    top: int
    bottom: int
    left: int
    right: int

    @property
    def height(self) -> int:
        return self.bottom - self.top

    @property
    def width(self) -> int:
        return self.right - self.left


def tile_spans(length: int, tile: int, overlap: int, align: int = 1) -> list[tuple[int, int]]:
    """[start, stop) of the tiles covering [0, length), neighbours sharing at least `overlap`.

    Every start is a multiple of `align`: a network that halves the resolution n times sees a
    tile on the same 2**n grid as the whole image only if the tile starts on that grid (a tile
    shifted by one pixel is restored differently everywhere). All tiles have size `tile` except
    the last, which ends at `length` and has size tile .. tile + align - 1.

    >>> tile_spans(10, 4, 1)
    [(0, 4), (3, 7), (6, 10)]
    >>> tile_spans(10, 4, 1, align=2)
    [(0, 4), (2, 6), (4, 8), (6, 10)]
    >>> tile_spans(3, 8, 2)
    [(0, 3)]
    """
    if length < 1:
        raise ValueError(f"length must be >= 1, got {length}")
    if align < 1:
        raise ValueError(f"align must be >= 1, got {align}")
    if tile < align:
        raise ValueError(f"tile must be >= align ({align}), got {tile}")
    if not 0 <= overlap < tile:
        raise ValueError(f"overlap must be in [0, tile) = [0, {tile}), got {overlap}")
    if length <= tile:
        return [(0, length)]
    stride = max(align, (tile - overlap) // align * align)
    last = (length - tile) // align * align
    spans = [(start, start + tile) for start in range(0, last, stride)]
    spans.append((last, length))
    return spans


def tile_grid(height: int, width: int, tile: int, overlap: int, align: int = 1) -> list[Tile]:
    """All tiles covering a (height, width) image, row by row (see `tile_spans`)."""
    return [
        Tile(top, bottom, left, right)
        for top, bottom in tile_spans(height, tile, overlap, align)
        for left, right in tile_spans(width, tile, overlap, align)
    ]


def core_spans(spans: list[tuple[int, int]], align: int = 1) -> list[tuple[int, int]]:
    """The part of each span that it alone stands for: [start, stop) ranges that partition
    [0, last stop), split at the middle of every overlap, rounded down to a multiple of `align`
    (spans from `tile_spans`, whose starts are multiples of `align`, contain their cores).

    >>> core_spans([(0, 4), (2, 6), (4, 8), (6, 10)], align=2)
    [(0, 2), (2, 4), (4, 6), (6, 10)]
    """
    bounds = [0]
    for (_, previous_stop), (start, _) in zip(spans, spans[1:]):
        bounds.append((previous_stop + start) // 2 // align * align)
    bounds.append(spans[-1][1])
    return list(zip(bounds, bounds[1:]))


def ramp(overlap: int) -> np.ndarray:
    """Rising raised-cosine weights (overlap,), float32, strictly inside (0, 1).

    ramp(M)[i] = sin^2(pi (i + 0.5) / (2 M)), so ramp(M) + ramp(M)[::-1] == 1.
    """
    positions = (np.arange(overlap, dtype=np.float64) + 0.5) / (2 * overlap)
    return (np.sin(np.pi * positions) ** 2).astype(np.float32)


def axis_window(start: int, stop: int, length: int, overlap: int) -> np.ndarray:
    """1D window (stop - start,) of a tile spanning [start, stop) of a side of `length`."""
    size = stop - start
    window = np.ones(size, dtype=np.float32)
    width = min(overlap, size)
    if width == 0:
        return window
    rise = ramp(overlap)[:width]
    if start > 0:
        window[:width] = np.minimum(window[:width], rise)
    if stop < length:
        window[size - width :] = np.minimum(window[size - width :], rise[::-1])
    return window


def tile_window(tile: Tile, height: int, width: int, overlap: int) -> np.ndarray:
    """2D blending weights (tile.height, tile.width), float32 in (0, 1]."""
    rows = axis_window(tile.top, tile.bottom, height, overlap)
    cols = axis_window(tile.left, tile.right, width, overlap)
    return rows[:, None] * cols[None, :]


class TileBlender:
    """Accumulates weighted tile outputs into float32 (H, W, C) and (H, W) arrays.

    Memory: 4 * H * W * (C + 1) bytes, whatever the tile size.
    """

    def __init__(self, height: int, width: int, channels: int, overlap: int) -> None:
        self.height = height
        self.width = width
        self.overlap = overlap
        self.total = np.zeros((height, width, channels), dtype=np.float32)
        self.weight = np.zeros((height, width), dtype=np.float32)

    def add(self, tile: Tile, values: np.ndarray) -> None:
        """values: (tile.height, tile.width, C) float32."""
        window = tile_window(tile, self.height, self.width, self.overlap)
        self.total[tile.top : tile.bottom, tile.left : tile.right] += values * window[:, :, None]
        self.weight[tile.top : tile.bottom, tile.left : tile.right] += window

    def result(self) -> np.ndarray:
        """The blended (H, W, C) float32 image (computed in place; the blender is spent)."""
        if not bool((self.weight > 0).all()):
            raise RuntimeError("some pixels were covered by no tile")
        self.total /= self.weight[:, :, None]
        return self.total
