"""Atomic file writes: a temporary file in the target's folder, then a rename.

An interrupted write leaves the previous file (or none), never a partial one.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable


def _read_umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


_UMASK = _read_umask()  # read once at import: os.umask is process-wide, not thread-safe


def atomic_write(target: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call `write(temporary_path)`, give the file the usual permissions, rename it to `target`.

    The temporary file keeps the target's suffix, so writers that choose the format by suffix
    work unchanged.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=target.suffix, dir=target.parent)
    os.close(handle)
    try:
        write(temporary)
        os.chmod(temporary, 0o666 & ~_UMASK)  # mkstemp creates 0600
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return target


def atomic_write_text(target: str | os.PathLike, text: str) -> Path:
    """Write `text` (UTF-8) to `target` atomically; see `atomic_write`."""
    return atomic_write(target, lambda temporary: Path(temporary).write_text(text, encoding="utf-8"))
