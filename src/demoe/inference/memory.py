"""How much memory a restoration needs, how much there is, and the tiling that fits.

A restoration of an H x W image with C channels of S bytes (the decoded file), by a model whose
full-resolution width is c channels, needs about (bytes):

    pixels      H W C S                       the decoded image, alive throughout
    output      2 H W C S                     the result at the input's bit depth (+ one copy)
    pass(h, w)  4 h w (a c + 16)              one forward pass over h x w pixels
    whole       pixels + output + pass(H, W)
    tiled       pixels + output + 16 H W + 2 pass(T + A, T + A)
                                              float32 sum and weight accumulators (16 B/px), and
                                              twice the pass of one tile of side T (the last tile
                                              is up to T + A - 1, A = the model's size multiple):
                                              the allocator does not hand one tile's buffers back
                                              before the next tile's are taken (measured: up to
                                              0.85 of a tile pass more than one pass)

At full resolution a forward pass holds its float input and output, the first level's skip
connection and the 5c channels a NAFBlock expands to, plus the decoder's skip and a MoE block's
expert outputs: a = 11 for one expert per image, 13 when top-k > 1 experts are mixed (their
outputs are summed into a buffer). Against the measured peak resident memory of a 1024 x 1024
CPU pass (`python benchmarks/bench_memory.py`, benchmarks/results/memory.json) the estimate is
1.24 x for width 8, 1.18 / 1.20 x for width 16 top-1 / top-3, 1.07 / 1.32 x for width 32
(demoe) top-1 / top-2, and 1.31 / 1.39 x tiled (512-px tiles of 3000 x 3000 and 2048 x 2048).
Architectures other than the NAFNet U-Net, and experts made of other blocks, are not measured:
they get a = 26.

`available_memory()` is what the machine and its container let this process allocate now:
the smallest of MemAvailable (/proc/meminfo) and, for each cgroup (v1 or v2) the process is in,
its limit minus its usage plus its reclaimable page cache; `os.sysconf` elsewhere; None if
unknown (then nothing is checked).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

from demoe.config import ModelConfig

# Tile sides tried, largest first, when a whole-image pass does not fit.
AUTO_TILES = (2048, 1024, 512, 256, 128)
# Keep this share of the available memory free (allocator overhead, the rest of the process).
HEADROOM = 0.9


class NotEnoughMemoryError(MemoryError):
    """A restoration that cannot fit in the memory available, not even tile by tile."""


@dataclass(frozen=True)
class MemoryPlan:
    """How an image will be restored. tile: 0 = whole image; needed / whole_needed: bytes of
    this plan and of a whole-image pass; available: the budget compared with (None = unknown);
    auto: tiles were chosen because the whole image did not fit."""

    tile: int
    needed: int
    whole_needed: int
    available: int | None
    auto: bool = False


def format_bytes(count: float) -> str:
    """1.5 GiB, 320 MiB, 12 KiB (powers of 1024, as `parse_bytes` reads them)."""
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if count >= size:
            return f"{count / size:.1f} {unit}"
    return f"{int(count)} B"


def parse_bytes(text: str) -> int:
    """"4G", "512M", "1.5GB", "2000000" -> bytes (powers of 1024 for K/M/G/T; 0 allowed)."""
    value = text.strip().upper().removesuffix("B").removesuffix("I")
    scale = 1
    if value and value[-1] in "KMGT":
        scale = 1024 ** ("KMGT".index(value[-1]) + 1)
        value = value[:-1]
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"not a memory size: {text!r} (e.g. 4G, 512M)") from None
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"not a memory size: {text!r} (must be >= 0)")
    return int(number * scale)


def pass_bytes(config: ModelConfig, height: int, width: int, top_k: int = 1) -> int:
    """Peak bytes of one forward pass over (height, width) pixels (padded to the size multiple)."""
    multiple = config.size_multiple
    pixels = (-(-height // multiple) * multiple) * (-(-width // multiple) * multiple)
    measured = getattr(config, "architecture", "demoe") == "demoe" and getattr(config, "expert_block", "nafblock") == "nafblock"
    factor = (13 if config.is_moe and top_k > 1 else 11) if measured else 26
    return 4 * pixels * (factor * config.width + 16)


def restoration_bytes(
    config: ModelConfig,
    height: int,
    width: int,
    channels: int,
    sample_bytes: int,
    tile: int = 0,
    top_k: int = 1,
    pixels_in_memory: bool = False,
) -> int:
    """Bytes a restoration needs (see the module docstring). tile 0 = whole image; an image
    no larger than the tile is processed whole. pixels_in_memory: the decoded image is already
    allocated, so it is not counted."""
    pixels = 0 if pixels_in_memory else height * width * channels * sample_bytes
    output = 2 * height * width * channels * sample_bytes
    if not tile or (height <= tile and width <= tile):
        return pixels + output + pass_bytes(config, height, width, top_k)
    side = tile + config.size_multiple
    return pixels + output + 16 * height * width + 2 * pass_bytes(config, min(side, height), min(side, width), top_k)


def plan_restoration(
    config: ModelConfig,
    height: int,
    width: int,
    channels: int,
    sample_bytes: int,
    tile: int,
    tile_overlap: int,
    top_k: int,
    budget: int | None,
    pixels_in_memory: bool = False,
) -> MemoryPlan:
    """The tiling to restore with: `tile` when it fits `budget` (bytes; None = do not check);
    for tile 0 (whole image) that does not fit, the largest of AUTO_TILES that does. Raises
    NotEnoughMemoryError naming the memory needed and the --tile that would fit, if any."""

    def needed(side: int) -> int:
        return restoration_bytes(config, height, width, channels, sample_bytes, side, top_k, pixels_in_memory)

    whole = needed(0)
    requested = needed(tile)
    if budget is None or requested <= budget * HEADROOM:
        return MemoryPlan(tile, requested, whole, budget)
    candidates = [side for side in AUTO_TILES if side > 2 * tile_overlap and side >= config.size_multiple]
    fitting = [side for side in candidates if (not tile or side < tile) and needed(side) <= budget * HEADROOM]
    size = f"{width}x{height}"
    if not tile and fitting:
        return MemoryPlan(fitting[0], needed(fitting[0]), whole, budget, auto=True)
    if tile and fitting:
        raise NotEnoughMemoryError(
            f"{size} needs about {format_bytes(requested)} of memory with --tile {tile}, more than the "
            f"{format_bytes(budget)} available: use --tile {fitting[0]} (about {format_bytes(needed(fitting[0]))})"
        )
    smallest = candidates[-1] if candidates else tile
    floor = needed(smallest) if smallest else whole
    if floor == whole:  # the image is no larger than the smallest tile: tiling cannot help
        raise NotEnoughMemoryError(
            f"{size} needs about {format_bytes(whole)} of memory; {format_bytes(budget)} is available "
            "(free memory, or raise --max-memory if more is free than reported)"
        )
    raise NotEnoughMemoryError(
        f"{size} needs about {format_bytes(whole)} of memory for a whole-image pass and still about "
        f"{format_bytes(floor)} with --tile {smallest}; {format_bytes(budget)} is available "
        "(free memory, or raise --max-memory if more is free than reported)"
    )


# ---------------------------------------------------------------------------------------------
# Memory available to this process


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None  # "max" (cgroup v2: no limit) -> None


def _stat_value(path: Path, key: str) -> int:
    try:
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key and value.strip().isdigit():
                return int(value)
    except OSError:
        pass
    return 0


def _meminfo_available(root: Path) -> int | None:
    try:
        for line in (root / "proc" / "meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_limits(root: Path) -> list[int]:
    """limit - usage + inactive page cache of every cgroup level with a memory limit."""
    try:
        lines = (root / "proc" / "self" / "cgroup").read_text().splitlines()
    except OSError:
        return []
    free = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # cgroup v2 unified hierarchy
            base, limit_file, usage_file, cache_key = root / "sys" / "fs" / "cgroup", "memory.max", "memory.current", "inactive_file"
        elif "memory" in controllers.split(","):
            base, limit_file, usage_file, cache_key = (
                root / "sys" / "fs" / "cgroup" / "memory", "memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file"
            )
        else:
            continue
        folder = base / path.lstrip("/")
        while True:
            limit, usage = _read_int(folder / limit_file), _read_int(folder / usage_file)
            if limit is not None and usage is not None and limit < 2**60:  # v1 "unlimited" is ~2**63
                free.append(max(0, limit - usage + _stat_value(folder / "memory.stat", cache_key)))
            if folder == base or base not in folder.parents:
                break
            folder = folder.parent
    return free


def available_memory(root: str | os.PathLike = "/") -> int | None:
    """Bytes this process can allocate now (see the module docstring), or None if unknown.
    `root` is where /proc and /sys are looked for (tests give a folder of fake files)."""
    root = Path(root)
    candidates = [value for value in (_meminfo_available(root), *_cgroup_limits(root)) if value is not None]
    if candidates:
        return min(candidates)
    if str(root) == "/" and hasattr(os, "sysconf"):
        try:
            return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError):
            return None
    return None


def device_memory(device) -> int | None:
    """Free bytes on a CUDA device (its own free memory plus what PyTorch caches but does not
    use); None for the CPU and MPS, which share the host memory."""
    import torch

    if getattr(device, "type", str(device)) != "cuda":
        return None
    free, _ = torch.cuda.mem_get_info(device)
    return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))


def memory_budget(device, max_memory: int | None = None) -> int | None:
    """Bytes a restoration on `device` may use: the smallest of the host memory available, the
    device's free memory (CUDA) and `max_memory`; max_memory 0 = no limit (None returned)."""
    if max_memory == 0:
        return None
    known = [value for value in (available_memory(), device_memory(device), max_memory) if value is not None]
    return min(known) if known else None
