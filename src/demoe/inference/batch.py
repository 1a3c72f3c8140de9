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

import gc
import glob
import json
import os
import re
import time
from collections.abc import Callable, Sequence
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
    read_header,
    read_image,
    write_image,
)
from demoe.inference.memory import MemoryPlan, NotEnoughMemoryError, format_bytes
from demoe.inference.pipeline import DeblurResult, Deblurrer, UncertainPolicy
from demoe.inference.walk import broken_link_reason, glob_files, walk

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
    # entries passed over on purpose (symlink loops, a file reached twice), said once each
    skipped: list[tuple[str, str]] = field(default_factory=list)


def _is_within(path: Path, folder: Path | None) -> bool:
    if folder is None:
        return False
    return path.resolve().is_relative_to(folder.resolve())


def find_inputs(
    specs: list[str], recursive: bool = False, exclude: Path | None = None, suffixes: Sequence[str] = IMAGE_SUFFIXES
) -> Inputs:
    """Expand files, folders and glob patterns into image files, in a stable order.

    `exclude` (the output folder) is never scanned, so re-running into a folder inside the
    input folder does not deblur earlier outputs. Folders and globs yield files whose suffix is
    one of `suffixes` (any case; `demoe deblur` adds the video suffixes); files named
    explicitly are taken whatever their name, and their content decides what they are.
    """
    kind = "images" if set(suffixes) <= set(IMAGE_SUFFIXES) else "images or videos"
    files: list[InputFile] = []
    errors: list[tuple[str, str]] = []
    skipped: list[tuple[str, str]] = []
    seen: dict[Path, Path] = {}

    def add(path: Path, relative: Path) -> None:
        key = path.resolve()
        if key in seen:
            if seen[key] != path:
                skipped.append((str(path), f"same file as {seen[key]}"))
            return
        seen[key] = path
        files.append(InputFile(path, relative))

    for spec in specs:
        path = Path(spec)
        if path.is_dir():
            if _is_within(path, exclude):
                errors.append((spec, "this folder is the output folder (-o) or inside it, and outputs are "
                                     "never read as inputs: write the results into another folder"))
                continue
            found = walk(path, recursive, suffixes, exclude)
            errors += found.errors
            skipped += found.skipped
            if not found.files and not found.errors:
                hint = "" if recursive else " (use --recursive to descend into subfolders)"
                errors.append((spec, f"folder holds no {kind}{hint}"))
            for file, relative in sorted(found.files):
                add(file, relative)
        elif path.exists():
            add(path, Path(path.name))
        elif path.is_symlink():
            errors.append((spec, broken_link_reason(path)))
        elif glob.has_magic(spec):
            found = glob_files(spec, recursive, suffixes)
            errors += found.errors
            skipped += found.skipped
            if not found.files and not found.errors:
                errors.append((spec, f"no {kind} match this pattern"))
            for file, relative in sorted(found.files):
                add(file, relative)
        else:
            errors.append((spec, "no such file or folder"))
    return Inputs(files, errors, skipped)


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
    target = out_dir / item.relative.parent / f"{item.relative.stem}{suffix}{extension}"
    if not Path(os.path.normpath(target)).is_relative_to(os.path.normpath(out_dir)):
        raise ValueError(f"refusing to write {target}: it is outside the output folder {out_dir}")
    return target


def check_suffix(suffix: str) -> None:
    """ValueError unless `suffix` can only extend a file name (no folder separator, no NUL)."""
    separators = {"/", os.sep, os.altsep} - {None}
    if any(separator in suffix for separator in separators) or "\0" in suffix:
        raise ValueError(f"--suffix {suffix!r} must not contain a path separator: it is added to file names "
                         "inside the output folder")


def is_complete_output(path: Path) -> bool:
    """Whether an existing output is a whole, readable image (what --skip-existing may keep):
    not empty, and it decodes. Outputs written by demoe always are (atomic writes); this
    guards against files truncated or emptied by something else."""
    if not path.is_file() or path.stat().st_size == 0:
        return False
    try:
        read_image(path, max_pixels=None)
    except (ImageReadError, OSError, MemoryError):
        return False
    return True


def check_output_folder(out_dir: Path) -> None:
    """ValueError if `out_dir` is a file, or lies below one, so that no folder can be made there."""
    for folder in (out_dir, *out_dir.parents):
        if folder.exists() or folder.is_symlink():
            if not folder.is_dir():
                what = "exists and is not a folder" if folder == out_dir else f"lies inside {folder}, which is not a folder"
                raise ValueError(f"-o {out_dir}: {what}")
            return


def remove_empty_folders(folders: list[Path]) -> None:
    """Remove the folders a run created (deepest first) if they are still empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:  # not empty, or already gone
            return


def check_report_path(report: Path, inputs: Inputs) -> None:
    """ValueError if the report would overwrite an input or is a folder."""
    if report.is_dir():
        raise ValueError(f"--report {report} is a folder; give a file name, e.g. {report / 'report.jsonl'}")
    blocking = next((folder for folder in report.parents if folder.exists() and not folder.is_dir()), None)
    if blocking is not None:
        raise ValueError(f"--report {report}: {blocking} is not a folder")
    if report.exists() and any(_same_file(report, item.path) for item in inputs.files):
        raise ValueError(f"--report {report} is an input of this run; it would be overwritten")


@dataclass
class BatchOptions:
    """How each image is restored and written (see `Deblurrer.restore`)."""

    task: str = "auto"
    top_k: int | None = None  # None = the model's own config.top_k
    tile: int = 0
    tile_overlap: int = 32
    suffix: str = "_deblurred"
    output_format: OutputFormat = "same"
    skip_existing: bool = False
    min_confidence: float | None = None
    uncertain: UncertainPolicy = "hard"
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    # bytes one restoration may use (None = what the system reports available; 0 = no check):
    # images that do not fit whole are tiled, those that do not fit at all fail with a reason
    max_memory: int | None = None
    tlc: bool = False  # TLC: local channel statistics (Deblurrer.restore(tlc=True))

    def __post_init__(self) -> None:
        check_suffix(self.suffix)
        if self.max_pixels is not None and self.max_pixels < 0:
            raise ValueError(f"max_pixels must be >= 0 (0 or None = no limit), got {self.max_pixels}")
        if self.max_memory is not None and self.max_memory < 0:
            raise ValueError(f"max_memory must be >= 0 (0 = no check), got {self.max_memory}")

    def experts_mixed(self, model_top_k: int) -> int:
        """Experts one image may be restored with (what its memory estimate assumes);
        `model_top_k` is the model's own top-k, used when the options name none."""
        if self.task != "auto":
            return 1
        top_k = self.top_k or model_top_k or 1
        return max(top_k, 2) if self.uncertain == "soft" else top_k


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
    protected: set[Path] | None = None,
) -> BatchSummary:
    """Restore every input into out_dir; returns counts and the failures (input, reason).

    `say` receives every message line (errors, low-confidence flags); the progress bar is shown
    on an interactive terminal unless `quiet`. `protected`: resolved paths no output may take
    (default the inputs; a sharded run passes the inputs of every rank).
    """
    start = time.perf_counter()
    if protected is None:
        protected = {item.path.resolve() for item in inputs.files}
    run = _BatchRun(out_dir, deblurrer, options, report or ReportWriter(None), say, protected)
    for spec, reason in inputs.errors:
        run.fail(spec, reason)
    progress = tqdm(inputs.files, unit="image", disable=True if quiet else None, dynamic_ncols=True)
    for item in progress:
        run.restore(item)
    progress.close()
    run.summary.seconds = time.perf_counter() - start
    return run.summary


@dataclass
class _BatchRun:
    """One `run_batch`: what it was asked, the outputs written so far (output -> input), the
    counts, and whether the note about automatic tiling was said."""

    out_dir: Path
    deblurrer: Deblurrer
    options: BatchOptions
    report: ReportWriter
    say: Callable[[str], None]
    protected: set[Path]
    claimed: dict[Path, str] = field(default_factory=dict)
    summary: BatchSummary = field(default_factory=BatchSummary)
    said_auto_tile: bool = False

    def fail(self, name: str, reason: str) -> None:
        report_failure(self.summary, self.report, self.say, name, reason)

    def restore(self, item: InputFile) -> None:
        """Restore one file and report it, or report on one line why not; the batch goes on."""
        name = str(item.path)
        try:
            written = self._write(item)
        except ImageReadError as error:
            self.fail(name, error.reason)
            return
        except NotEnoughMemoryError as error:  # refused before anything was allocated
            self.fail(name, str(error))
            return
        except (MemoryError, RuntimeError) as error:
            if not is_out_of_memory(error):
                self.fail(name, one_line_reason(error))
                return
            self.fail(name, f"out of memory while restoring it ({_failed_allocation(error)}); restore it in "
                            "smaller tiles (--tile 512) or free memory")
            del error  # its traceback holds the frames, and so the tensors, of the failed pass
            gc.collect()
            return
        except (ValueError, OSError) as error:
            self.fail(name, one_line_reason(error))
            return
        if written is not None:
            self._report_done(name, *written)

    def _write(self, item: InputFile) -> tuple[Path, DeblurResult] | None:
        """Restore `item` into its output file (atomically); None when --skip-existing keeps
        a complete output."""
        name, options = str(item.path), self.options
        target = output_path(item, self.out_dir, options.suffix, options.output_format)
        check_target(target, self.protected, self.claimed)
        if options.skip_existing and target.exists():
            if is_complete_output(target):
                self.summary.skipped += 1
                self.report.write({"input": name, "output": str(target), "skipped": True})
                return None
            self.say(f"note: {target} exists but is empty or unreadable: restoring {name} again")
        plan = _plan_before_decoding(item.path, self.deblurrer, options)  # NotEnoughMemoryError
        image = read_image(item.path, options.max_pixels)
        detected = output_path(item, self.out_dir, options.suffix, options.output_format, image.format)
        if detected != target:  # the extension did not name the file's real format
            target = detected
            check_target(target, self.protected, self.claimed)
        file_format = SUFFIX_FORMAT[target.suffix.lower()]
        out_dtype = np.dtype(np.uint8) if file_format in _EIGHT_BIT_FORMATS else image.pixels.dtype
        check_writable(target, image.pixels.shape, out_dtype, file_format)
        result = self.deblurrer.restore(
            image.pixels,
            task=options.task,
            top_k=options.top_k,
            tile=options.tile,
            tile_overlap=options.tile_overlap,
            min_confidence=options.min_confidence,
            uncertain=options.uncertain,
            max_memory=options.max_memory,
            tlc=options.tlc,
        )
        if result.auto_tile and not self.said_auto_tile:
            self.said_auto_tile = True
            numbers = "" if plan is None or plan.available is None else (
                f" (about {format_bytes(plan.whole_needed)} needed, {format_bytes(plan.available)} available)")
            self.say(f"note: {name} is too large for a whole-image pass in the memory available{numbers}: "
                     f"restored in {result.auto_tile}-px tiles; other such images are tiled without a note "
                     "(--tile N sets the tile size)")
        pixels = result.image
        if file_format in _EIGHT_BIT_FORMATS and pixels.dtype == np.uint16:
            pixels = np.round(pixels / 257.0).astype(np.uint8)  # JPEG holds 8 bits
        write_image(target, pixels, file_format, image.icc_profile, image.exif)
        self.claimed[target.resolve()] = name
        return target, result

    def _report_done(self, name: str, target: Path, result: DeblurResult) -> None:
        """The report line of a restored image, and the low-confidence flag."""
        self.summary.done += 1
        record = {
            "input": name,
            "output": str(target),
            "task_probs": result.task_probs,
            "experts_used": result.experts_used,
            "entropy": result.entropy,
            "seconds": round(result.seconds, 4),
        }
        if self.options.min_confidence is not None:
            record["low_confidence"] = result.low_confidence
        if result.fp32_fallback:
            record["fp32_fallback"] = True
        if result.auto_tile:
            record["auto_tile"] = result.auto_tile
        self.report.write(record)
        if result.low_confidence:
            self.summary.low_confidence += 1
            top = max(result.task_probs, key=result.task_probs.get)
            how = "mixed " + "+".join(result.experts_used) if self.options.uncertain == "soft" else "kept top-k"
            self.say(
                f"low confidence: {name}: top {top} p={result.task_probs[top]:.2f} < "
                f"{self.options.min_confidence:.2f} ({how})"
            )


def report_failure(
    summary: BatchSummary, report: ReportWriter, say: Callable[[str], None], name: str, reason: str
) -> None:
    """An input that failed, for images and videos alike: counted in `summary`, said as
    "error: NAME: REASON" and written to the report as {"input", "error"}."""
    summary.failed.append((name, reason))
    say(f"error: {name}: {reason}")
    report.write({"input": name, "error": reason})


def _plan_before_decoding(path: Path, deblurrer: Deblurrer, options: BatchOptions) -> MemoryPlan | None:
    """The memory plan from the file's header, so that an image too large for the memory fails
    before it is decoded (None: no header to read, or over the pixel limit, which read_image
    reports)."""
    header = read_header(path)
    if header is None or (options.max_pixels and header.width * header.height > options.max_pixels):
        return None
    return deblurrer.plan_memory(header.height, header.width, header.channels, header.sample_bytes, options.tile,
                                 options.tile_overlap, options.experts_mixed(deblurrer.model.config.top_k),
                                 options.max_memory)


def check_target(target: Path, protected: set[Path], claimed: dict[Path, str]) -> None:
    """ValueError unless `target` may be written: it is no input of the run (`protected`,
    resolved paths, also reached by another name) and no other input's output (`claimed`,
    resolved output -> input)."""
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


def is_out_of_memory(error: BaseException) -> bool:
    """MemoryError (numpy, Pillow) or PyTorch's allocator failing (CPU or GPU)."""
    if isinstance(error, MemoryError):
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text
                                                or "not enough memory" in text)


def _failed_allocation(error: BaseException) -> str:
    """"an allocation of 13.4 GiB failed" from PyTorch's CPU or CUDA allocator message."""
    text = str(error)
    cpu = re.search(r"allocate (\d+) bytes", text)
    if cpu:
        return f"an allocation of {format_bytes(int(cpu.group(1)))} failed"
    cuda = re.search(r"[Tt]ried to allocate ([\d.]+ [KMGT]i?B)", text)
    if cuda:
        return f"an allocation of {cuda.group(1)} failed"
    return type(error).__name__


def one_line_reason(error: BaseException) -> str:
    """The message of an error on one line; other than a ValueError's, led by its type name."""
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if not isinstance(error, ValueError) else text
