"""The manifest: the one list-of-pairs format that data tools write and training and
evaluation read.

A manifest is a JSON Lines file; every line is one object with the fields of `PairRecord`:

    {"blurry": "GoPro/test/GOPR0384_11_00/blur/000001.png",
     "sharp": "GoPro/test/GOPR0384_11_00/sharp/000001.png",
     "task": "synth_global_motion", "dataset": "GoPro", "split": "test", "mask": null}

`blurry`, `sharp` and `mask` are file paths; relative paths are relative to the manifest
file's own folder. `sharp` is null for blurry-only sets (Real-LOLBlur). `task` is one of
`demoe.config.TASK_NAMES`. Lines starting with '#' are comments.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable

from demoe.config import TASK_NAMES
from demoe.fileio import atomic_write_text

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class PairRecord:
    blurry: str  # path of the blurry image
    sharp: str | None  # path of the sharp ground truth; None for blurry-only sets
    task: str  # blur type, one of TASK_NAMES
    dataset: str  # source dataset name (e.g. "GoPro", "synthetic")
    split: str  # "train", "val" or "test"
    mask: str | None = None  # optional mask of blurred regions (ReLoBlur)

    def __post_init__(self) -> None:
        if self.task not in TASK_NAMES:
            raise ValueError(f"unknown task {self.task!r}; valid tasks: {', '.join(TASK_NAMES)}")
        if self.split not in SPLITS:
            raise ValueError(f"unknown split {self.split!r}; valid splits: {', '.join(SPLITS)}")

    @property
    def label(self) -> int:
        """Router class index of the blur type."""
        return TASK_NAMES.index(self.task)


def read_manifest(path: str | os.PathLike) -> list[PairRecord]:
    """Records of a manifest, with relative paths resolved against the manifest's folder."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest not found: {path}")
    base = path.resolve().parent
    records = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            values = json.loads(line)
            record = PairRecord(**values)
        except (json.JSONDecodeError, TypeError, ValueError) as error:
            raise ValueError(f"{path}:{number}: not a manifest record: {error}") from None
        records.append(
            PairRecord(
                blurry=_resolve(base, record.blurry),
                sharp=_resolve(base, record.sharp),
                task=record.task,
                dataset=record.dataset,
                split=record.split,
                mask=_resolve(base, record.mask),
            )
        )
    return records


def _resolve(base: Path, value: str | None) -> str | None:
    if value is None:
        return None
    candidate = Path(value)
    return str(candidate if candidate.is_absolute() else base / candidate)


def write_manifest(path: str | os.PathLike, records: Iterable[PairRecord], relative_to_manifest: bool = True) -> Path:
    """Write records atomically; paths under the manifest's folder are stored relative to it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)  # resolve() below needs the folder
    base = path.resolve().parent
    lines = []
    for record in records:
        values = asdict(record)
        if relative_to_manifest:
            for key in ("blurry", "sharp", "mask"):
                if values[key] is not None:
                    values[key] = _relative(base, values[key])
        lines.append(json.dumps(values))
    return atomic_write_text(path, "\n".join(lines) + ("\n" if lines else ""))


def _relative(base: Path, value: str) -> str:
    resolved = Path(value).resolve()
    try:
        return str(resolved.relative_to(base))
    except ValueError:
        return str(resolved)
