"""Helpers shared by the benchmark sources: layout checks with errors that say what is
missing, image listing, natural sorting and the `<gt> <blur>` list files of RealBlur/RSBlur."""

from __future__ import annotations

import re
from pathlib import Path

from demoe.imageio import IMAGE_SUFFIXES


class DatasetLayoutError(FileNotFoundError):
    """A dataset folder is missing or does not look like the official release."""


def require_dir(path: Path, dataset: str, expected: str) -> Path:
    """`path` if it is a folder, else DatasetLayoutError naming it and what belongs there."""
    if not path.is_dir():
        raise DatasetLayoutError(f"{dataset}: missing folder {path} (expected {expected})")
    return path


def first_existing(candidates: list[Path], dataset: str, expected: str, kind: str = "folder") -> Path:
    """The first candidate that exists; the error lists every place that was looked at."""
    for candidate in candidates:
        if (candidate.is_dir() if kind == "folder" else candidate.is_file()):
            return candidate
    looked = ", ".join(str(candidate) for candidate in candidates)
    raise DatasetLayoutError(f"{dataset}: missing {kind} (expected {expected}); looked for: {looked}")


def natural_key(name: str) -> list:
    """Sort key that orders 'blur_2' before 'blur_10' (RealBlur indices are not zero-padded)."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def list_images(folder: Path, recursive: bool = False) -> list[Path]:
    """Image files in `folder` (or below it), in natural order of their relative paths."""
    pattern = "**/*" if recursive else "*"
    files = [
        path
        for path in folder.glob(pattern)
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")
    ]
    return sorted(files, key=lambda path: natural_key(path.relative_to(folder).as_posix()))


def read_pair_list(list_file: Path, dataset: str) -> list[tuple[str, str]]:
    """(sharp, blurry) relative paths of a RealBlur/RSBlur list file: one `<gt> <blur>` per line.

    Lines are split on any whitespace (RealBlur's lines end with a space) and blank lines are
    skipped (RealBlur's last line has no newline, so files must never be concatenated raw).
    """
    pairs = []
    for number, line in enumerate(list_file.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2:
            raise DatasetLayoutError(
                f"{dataset}: {list_file}:{number}: expected '<sharp path> <blurry path>', got {line!r}"
            )
        pairs.append((fields[0], fields[1]))
    if not pairs:
        raise DatasetLayoutError(f"{dataset}: list file {list_file} is empty")
    return pairs


def check_files_exist(paths: list[Path], dataset: str, what: str, shown: int = 5) -> None:
    """One error for all missing files of a list (naming the first few) instead of failing later
    in a training worker."""
    missing = [path for path in paths if not path.is_file()]
    if missing:
        listed = ", ".join(str(path) for path in missing[:shown])
        more = f" and {len(missing) - shown} more" if len(missing) > shown else ""
        raise DatasetLayoutError(f"{dataset}: {len(missing)} {what} missing: {listed}{more}")


def pair_by_name(blurry_dir: Path, sharp_dir: Path, dataset: str, recursive: bool = False) -> list[tuple[Path, Path]]:
    """(blurry, sharp) files with the same relative path in two folders; an unmatched file
    on either side is an error naming it."""
    blurry = {path.relative_to(blurry_dir).as_posix(): path for path in list_images(blurry_dir, recursive)}
    sharp = {path.relative_to(sharp_dir).as_posix(): path for path in list_images(sharp_dir, recursive)}
    _check_matched(set(blurry) - set(sharp), blurry_dir, sharp_dir, dataset)
    _check_matched(set(sharp) - set(blurry), sharp_dir, blurry_dir, dataset)
    if not sharp:
        raise DatasetLayoutError(f"{dataset}: no images in {sharp_dir}")
    return [(blurry[name], sharp[name]) for name in sorted(sharp, key=natural_key)]


def _check_matched(unmatched: set[str], folder: Path, other: Path, dataset: str) -> None:
    if unmatched:
        names = sorted(unmatched, key=natural_key)
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        raise DatasetLayoutError(
            f"{dataset}: {len(names)} image(s) in {folder} have no file of the same name in {other}: {shown}"
        )


def pair_by_sorted_position(
    blurry_dir: Path, sharp_dir: Path, dataset: str, natural: bool = False
) -> list[tuple[Path, Path]]:
    """(blurry, sharp) files paired by their position in each folder's sorted listing, as the
    official DPDD and IFAN loaders do (their file names differ between the two folders)."""
    key = (lambda path: natural_key(path.name)) if natural else (lambda path: path.name)
    blurry = sorted(list_images(blurry_dir), key=key)
    sharp = sorted(list_images(sharp_dir), key=key)
    if len(blurry) != len(sharp):
        raise DatasetLayoutError(
            f"{dataset}: {blurry_dir} has {len(blurry)} images but {sharp_dir} has {len(sharp)}; "
            "the two folders must hold the same number of images (paired by sorted order)"
        )
    if not sharp:
        raise DatasetLayoutError(f"{dataset}: no images in {sharp_dir}")
    return list(zip(blurry, sharp))
