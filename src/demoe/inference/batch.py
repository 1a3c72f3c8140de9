"""Deblurring many files: finding inputs, naming outputs, never losing data, the JSONL report.

Rules (the `demoe deblur` contract):
- inputs are files, folders (`recursive` to descend) or glob patterns; folders and globs yield
  files with an image suffix, hidden files are skipped, and so is the output folder itself;
- an output path equal to any input is refused, as is a second input mapping to the same output;
- outputs are written atomically (`demoe.imageio.write_image`), so an interrupted run leaves
  no partial files and `skip_existing` resumes it;
- a broken input is reported on one line (file and reason) and the batch goes on.
"""

from __future__ import annotations

import glob
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from tqdm import tqdm

from demoe.imageio import (
    DEFAULT_MAX_PIXELS,
    FORMAT_SUFFIX,
    IMAGE_SUFFIXES,
    SUFFIX_FORMAT,
    ImageReadError,
    check_writable,
    read_image,
    write_image,
)
from demoe.inference.pipeline import Deblurrer, UncertainPolicy

OutputFormat = Literal["same", "png", "tiff", "jpg"]
OUTPUT_FORMATS = {"png": "PNG", "tiff": "TIFF", "jpg": "JPEG"}
_EIGHT_BIT_FORMATS = ("JPEG", "WEBP", "BMP")


@dataclass(frozen=True)
class InputFile:
    """An input file and its path relative to the output folder (folder structure is kept)."""

    path: Path
    relative: Path


@dataclass
class Inputs:
    files: list[InputFile]
    errors: list[tuple[str, str]]  # (what the user gave, reason)


def _is_hidden(path: Path) -> bool:
    return any(part.startswith(".") and part not in (".", "..") for part in path.parts)


def _is_within(path: Path, folder: Path | None) -> bool:
    if folder is None:
        return False
    return path.resolve().is_relative_to(folder.resolve())


def find_inputs(specs: list[str], recursive: bool = False, exclude: Path | None = None) -> Inputs:
    """Expand files, folders and glob patterns into image files, in a stable order.

    `exclude` (the output folder) is never scanned, so re-running into a folder inside the
    input folder does not deblur earlier outputs.
    """
    files: list[InputFile] = []
    errors: list[tuple[str, str]] = []
    seen: set[Path] = set()

    def add(path: Path, relative: Path) -> None:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            files.append(InputFile(path, relative))

    for spec in specs:
        path = Path(spec)
        if path.is_dir():
            pattern = "**/*" if recursive else "*"
            found = sorted(
                p
                for p in path.glob(pattern)
                if p.is_file()
                and p.suffix.lower() in IMAGE_SUFFIXES
                and not _is_hidden(p.relative_to(path))
                and not _is_within(p, exclude)
            )
            if not found:
                hint = "" if recursive else " (use --recursive to descend into subfolders)"
                errors.append((spec, f"folder holds no images{hint}"))
            for p in found:
                add(p, p.relative_to(path))
        elif path.exists():
            add(path, Path(path.name))
        elif glob.has_magic(spec):
            matches = sorted(
                Path(m)
                for m in glob.glob(spec, recursive=recursive)
                if Path(m).is_file() and Path(m).suffix.lower() in IMAGE_SUFFIXES
            )
            if not matches:
                errors.append((spec, "no image files match this pattern"))
            for p in matches:
                add(p, Path(p.name))
        else:
            errors.append((spec, "no such file or folder"))
    return Inputs(files, errors)


def output_path(
    item: InputFile, out_dir: Path, suffix: str, output_format: OutputFormat, detected_format: str | None = None
) -> Path:
    """OUT_DIR / relative folder / (stem + suffix + extension).

    With output_format "same" the input's extension is kept when it names a supported format
    (the detected format's canonical one otherwise).
    """
    if output_format == "same":
        extension = item.path.suffix
        if extension.lower() not in SUFFIX_FORMAT or (
            detected_format is not None and SUFFIX_FORMAT[extension.lower()] != detected_format
        ):
            extension = FORMAT_SUFFIX[detected_format or "PNG"]
    else:
        extension = FORMAT_SUFFIX[OUTPUT_FORMATS[output_format]]
    return out_dir / item.relative.parent / f"{item.relative.stem}{suffix}{extension}"


@dataclass
class BatchOptions:
    """How each image is restored and written (see `Deblurrer.restore`)."""

    task: str = "auto"
    top_k: int = 1
    tile: int = 0
    tile_overlap: int = 32
    suffix: str = "_deblurred"
    output_format: OutputFormat = "same"
    skip_existing: bool = False
    min_confidence: float | None = None
    uncertain: UncertainPolicy = "hard"
    max_pixels: int | None = DEFAULT_MAX_PIXELS


@dataclass
class BatchSummary:
    done: int = 0
    skipped: int = 0
    low_confidence: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed


class ReportWriter:
    """`--report FILE.jsonl`: one JSON object per input, flushed as each image finishes."""

    def __init__(self, path: Path | None) -> None:
        self.handle = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.handle = open(path, "w", encoding="utf-8")

    def write(self, record: dict) -> None:
        if self.handle is not None:
            self.handle.write(json.dumps(record) + "\n")
            self.handle.flush()

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()


def run_batch(
    inputs: Inputs,
    out_dir: Path,
    deblurrer: Deblurrer,
    options: BatchOptions,
    report: ReportWriter | None = None,
    quiet: bool = False,
    say: Callable[[str], None] = print,
) -> BatchSummary:
    """Restore every input into out_dir; returns counts and the failures (input, reason).

    `say` receives every message line (errors, low-confidence flags); the progress bar is shown
    on an interactive terminal unless `quiet`.
    """
    start = time.perf_counter()
    report = report or ReportWriter(None)
    summary = BatchSummary()
    protected = {item.path.resolve() for item in inputs.files}
    claimed: dict[Path, str] = {}

    def fail(name: str, reason: str) -> None:
        summary.failed.append((name, reason))
        say(f"error: {name}: {reason}")
        report.write({"input": name, "error": reason})

    for spec, reason in inputs.errors:
        fail(spec, reason)

    progress = tqdm(inputs.files, unit="image", disable=True if quiet else None, dynamic_ncols=True)
    for item in progress:
        name = str(item.path)
        try:
            target = output_path(item, out_dir, options.suffix, options.output_format)
            _check_target(target, protected, claimed)
            if options.skip_existing and target.exists():
                summary.skipped += 1
                report.write({"input": name, "output": str(target), "skipped": True})
                continue
            image = read_image(item.path, options.max_pixels)
            detected = output_path(item, out_dir, options.suffix, options.output_format, image.format)
            if detected != target:  # the extension did not name the file's real format
                target = detected
                _check_target(target, protected, claimed)
            file_format = SUFFIX_FORMAT[target.suffix.lower()]
            out_dtype = np.dtype(np.uint8) if file_format in _EIGHT_BIT_FORMATS else image.pixels.dtype
            check_writable(target, image.pixels.shape, out_dtype, file_format)
            result = deblurrer.restore(
                image.pixels,
                task=options.task,
                top_k=options.top_k,
                tile=options.tile,
                tile_overlap=options.tile_overlap,
                min_confidence=options.min_confidence,
                uncertain=options.uncertain,
            )
            pixels = result.image
            if file_format in _EIGHT_BIT_FORMATS and pixels.dtype == np.uint16:
                pixels = np.round(pixels / 257.0).astype(np.uint8)  # JPEG holds 8 bits
            write_image(target, pixels, file_format, image.icc_profile, image.exif)
            claimed[target.resolve()] = name
        except ImageReadError as error:
            fail(name, error.reason)
            continue
        except (ValueError, OSError, RuntimeError) as error:
            fail(name, _one_line(error))
            continue
        summary.done += 1
        record = {
            "input": name,
            "output": str(target),
            "task_probs": result.task_probs,
            "experts_used": result.experts_used,
            "entropy": result.entropy,
            "seconds": round(result.seconds, 4),
        }
        if options.min_confidence is not None:
            record["low_confidence"] = result.low_confidence
        if result.fp32_fallback:
            record["fp32_fallback"] = True
        report.write(record)
        if result.low_confidence:
            summary.low_confidence += 1
            top = max(result.task_probs, key=result.task_probs.get)
            how = "mixed " + "+".join(result.experts_used) if options.uncertain == "soft" else "kept top-k"
            say(
                f"low confidence: {name}: top {top} p={result.task_probs[top]:.2f} < "
                f"{options.min_confidence:.2f} ({how})"
            )
    progress.close()
    summary.seconds = time.perf_counter() - start
    return summary


def _check_target(target: Path, protected: set[Path], claimed: dict[Path, str]) -> None:
    resolved = target.resolve()
    if resolved in protected or (target.exists() and any(_same_file(target, p) for p in protected)):
        raise ValueError(
            f"refusing to write {target}: it is an input of this run (choose another -o folder or --suffix)"
        )
    if resolved in claimed:
        raise ValueError(f"output {target} is already written for {claimed[resolved]} (same name in two inputs)")


def _same_file(first: Path, second: Path) -> bool:
    try:
        return os.path.samefile(first, second)
    except OSError:
        return False


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if not isinstance(error, ValueError) else text
