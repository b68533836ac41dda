"""INPUT arguments -> an ordered list of things to classify.

Named files and folders (walked in sorted order, so runs repeat), `-` for a
list of paths on standard input. What cannot be found or opened becomes an
error item, never a silent gap. Files in a walked folder that are not images
or .npy by extension are only counted as skipped, and a named folder that
holds nothing to classify is listed in `Expanded.empty` for the summary to say.
"""

import errno
import fnmatch
import os
import sys
from dataclasses import dataclass, field
from typing import TextIO

# What OpenCV decodes; other files in a walked folder are skipped, not failed.
IMAGE_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".pbm", ".pnm"}
)


@dataclass(frozen=True)
class ImageItem:
    source: str


@dataclass(frozen=True)
class ArrayItem:
    source: str


@dataclass(frozen=True)
class ErrorItem:
    source: str
    error: str


Item = ImageItem | ArrayItem | ErrorItem


@dataclass
class Expanded:
    items: list[Item] = field(default_factory=list)
    skipped: int = 0
    empty: list[str] = field(default_factory=list)  # named folders that gave no item


def is_image_path(path: str | os.PathLike) -> bool:
    return os.path.splitext(path)[1].lower() in IMAGE_EXTENSIONS


def _named_file(path: str) -> Item:
    return ArrayItem(path) if path.lower().endswith(".npy") else ImageItem(path)


def _os_error(e: OSError) -> str:
    if e.errno == errno.ELOOP:
        return "symlink loop"
    return e.strerror or str(e)


def _walk(root: str, recursive: bool, pattern: str | None, out: Expanded, seen: set) -> None:
    try:
        real = os.path.realpath(root)
        if real in seen:
            out.items.append(ErrorItem(root, "symlink loop: folder already visited"))
            return
        seen.add(real)
        with os.scandir(root) as listing:
            entries = sorted(listing, key=lambda e: e.name)
    except OSError as e:
        out.items.append(ErrorItem(root, f"cannot list folder: {_os_error(e)}"))
        return
    for entry in entries:
        path = entry.path
        try:
            is_dir = entry.is_dir()  # follows symlinks; loops are caught by `seen`
        except OSError as e:
            out.items.append(ErrorItem(path, _os_error(e)))
            continue
        if is_dir:
            if recursive:
                _walk(path, recursive, pattern, out, seen)
            continue
        if pattern and not fnmatch.fnmatch(entry.name, pattern):
            continue
        if path.lower().endswith(".npy"):
            out.items.append(ArrayItem(path))
        elif is_image_path(path):
            if entry.is_symlink() and not os.path.exists(path):
                out.items.append(ErrorItem(path, "broken symlink or symlink loop"))
            else:
                out.items.append(ImageItem(path))
        else:
            out.skipped += 1


def expand_inputs(inputs: list[str], recursive: bool = True, pattern: str | None = None,
                  stdin: TextIO | None = None) -> Expanded:
    """Items in input order; folders walked in sorted order; `-` reads paths from stdin."""
    out = Expanded()
    for arg in inputs:
        if arg == "-":
            names = [line.strip() for line in (stdin or sys.stdin)]
            out_of_stdin = expand_inputs([n for n in names if n and n != "-"], recursive, pattern)
            out.items += out_of_stdin.items
            out.skipped += out_of_stdin.skipped
            out.empty += out_of_stdin.empty
            continue
        try:
            os.stat(arg)
        except OSError as e:
            out.items.append(ErrorItem(arg, "no such file or folder" if e.errno == errno.ENOENT else _os_error(e)))
            continue
        if os.path.isdir(arg):
            before = len(out.items)
            _walk(arg, recursive, pattern, out, set())
            if len(out.items) == before:
                out.empty.append(arg)
        else:
            out.items.append(_named_file(arg))
    return out
