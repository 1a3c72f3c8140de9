"""Files under folders and recursive glob patterns, found safely.

Symbolic links are followed, to files and to folders, but every real folder is entered once
(by device and inode), so links that loop (`dir/self -> .`, `dir/sub/up -> ..`) end the walk
instead of repeating it forever. What is passed over is said, never silently dropped:
- `skipped`: a link back to a folder already walked (a loop, or a second way into one folder);
- `errors`: entries with a wanted suffix that cannot be used (a dangling link, a link that
  points to itself, a folder that cannot be listed).
Hidden entries (names starting with ".") are not walked, as `glob` does not match them.

Example:
    >>> import tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> (root / "a.png").touch(); (root / "self").symlink_to(".")
    >>> found = walk(root, recursive=True, suffixes=(".png",))
    >>> [p.name for p, _ in found.files], [why.split(":")[0] for _, why in found.skipped]
    (['a.png'], ['link to a folder already walked'])
"""

from __future__ import annotations

import errno
import fnmatch
import glob
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Walk:
    files: list[tuple[Path, Path]] = field(default_factory=list)  # (path as reached, relative to the root)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (entry, why it was passed over)
    errors: list[tuple[str, str]] = field(default_factory=list)  # (entry, why it cannot be used)


def _folder_key(path: Path) -> tuple[int, int]:
    info = os.stat(path)
    return info.st_dev, info.st_ino


def walk(
    root: Path,
    recursive: bool,
    suffixes: Sequence[str],
    exclude: Path | None = None,
) -> Walk:
    """Files under `root` whose suffix (any case) is one of `suffixes`, sorted by path.

    recursive: descend into subfolders (through links, each real folder once).
    exclude: a folder never entered (the output folder), nor anything inside it.
    """
    found = Walk()
    wanted = {suffix.lower() for suffix in suffixes}
    excluded = exclude.resolve() if exclude is not None else None
    visited = {_folder_key(root)}

    def visit(folder: Path, relative: Path) -> None:
        try:
            entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
        except OSError as error:
            found.errors.append((str(folder), f"cannot list this folder ({error.strerror})"))
            return
        for entry in entries:
            if entry.name.startswith("."):
                continue
            path = folder / entry.name
            is_link = entry.is_symlink()
            try:
                is_dir = entry.is_dir()  # follows links
                exists = is_dir or entry.is_file() or os.path.exists(path)
            except OSError:
                is_dir, exists = False, False
            if is_dir:
                if not recursive or (excluded is not None and path.resolve().is_relative_to(excluded)):
                    continue
                key = _folder_key(path)
                if key in visited:
                    found.skipped.append(
                        (str(path), f"link to a folder already walked: {os.readlink(path) if is_link else path}")
                    )
                    continue
                visited.add(key)
                visit(path, relative / entry.name)
            elif Path(entry.name).suffix.lower() in wanted:
                if is_link and not exists:
                    found.errors.append((str(path), broken_link_reason(path)))
                elif not entry.is_file():
                    found.skipped.append((str(path), "not a regular file"))
                elif excluded is None or not path.resolve().is_relative_to(excluded):
                    found.files.append((path, relative / entry.name))

    visit(root, Path())
    return found


def broken_link_reason(path: Path) -> str:
    """Why a symbolic link cannot be followed: it dangles, or it loops back to itself."""
    target = os.readlink(path)
    try:
        path.stat()
    except OSError as error:
        if error.errno == errno.ELOOP:  # a link that (eventually) points to itself
            return f"symbolic link loop ({path.name} -> {target})"
    return f"dangling symbolic link: its target {target} does not exist"


def glob_files(pattern: str, recursive: bool, suffixes: Sequence[str]) -> Walk:
    """Files matching a glob pattern with a wanted suffix, sorted.

    With `recursive`, `**` matches any number of folders; the walk below the pattern's first
    wildcard follows links once per real folder (see `walk`), where `glob.glob` would follow
    looping links until the path length limit, doubling its work at every level. Without it,
    `**` is `*` (glob's rule) and plain `glob.glob` is used: its depth is the pattern's.
    """
    found = Walk()
    wanted = {suffix.lower() for suffix in suffixes}
    parts = Path(pattern).parts
    if not recursive or "**" not in parts:
        for match in sorted(glob.glob(pattern, recursive=False)):
            path = Path(match)
            if path.suffix.lower() not in wanted:
                continue
            if path.is_symlink() and not path.exists():
                found.errors.append((match, broken_link_reason(path)))
            elif path.is_file():
                found.files.append((path, Path(path.name)))
        return found
    literal = next(index for index, part in enumerate(parts) if glob.has_magic(part))
    root = Path(*parts[:literal]) if literal else Path(".")
    rest = parts[literal:]
    if not root.is_dir():
        return found
    below = walk(root, recursive=True, suffixes=suffixes)
    for path, relative in below.files:
        if _match(relative.parts, rest):
            found.files.append((Path(*parts[:literal], *relative.parts) if literal else relative, Path(path.name)))
    found.skipped = below.skipped
    for entry, why in below.errors:  # broken entries the pattern names, folders it could not list
        if Path(entry).is_dir() or _match(Path(entry).relative_to(root).parts, rest):
            found.errors.append((entry, why))
    return found


def _match(names: tuple[str, ...], pattern: tuple[str, ...]) -> bool:
    """Path components against pattern components; `**` matches zero or more components."""
    if not pattern:
        return not names
    if pattern[0] == "**":
        return any(_match(names[index:], pattern[1:]) for index in range(len(names) + 1))
    return bool(names) and fnmatch.fnmatchcase(names[0], pattern[0]) and _match(names[1:], pattern[1:])
