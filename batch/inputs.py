"""INPUT arguments -> an ordered list of things to classify.

Named files and folders (walked in sorted order, so runs repeat), `-` for a
list of paths on standard input (one per line, or NUL-separated). What a path
names is decided by digits.files.kind_of: FIFOs, devices and sockets become error
items, never reads that block. Every named thing yields at least one item:
what cannot be found or opened becomes an error item, never a silent gap.
Files in a walked folder that are not images or .npy by extension are only
counted as skipped, and a named folder that holds nothing to classify is listed
in `Expanded.empty` for the summary to say.
"""

import errno
import fnmatch
import os
import sys
from dataclasses import dataclass, field
from typing import BinaryIO

from digits.errors import UsageError
from digits.files import FOLDER, MISSING, REGULAR, kind_of

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


def _list_folder(folder: str) -> list[os.DirEntry] | str:
    """The folder's entries sorted by name, or why it cannot be listed."""
    try:
        with os.scandir(folder) as listing:
            return sorted(listing, key=lambda e: e.name)
    except OSError as e:
        return f"cannot list folder: {'symlink loop' if e.errno == errno.ELOOP else e.strerror or e}"


def _walk(root: str, recursive: bool, pattern: str | None, out: Expanded) -> None:
    """Depth first, sorted, with an explicit stack: folders may nest deeper than
    Python's recursion limit. Symlinks are followed; a symlink loop is a folder that
    is its own ancestor (a link to a sibling folder is walked like any folder)."""
    listing = _list_folder(root)
    if isinstance(listing, str):
        out.items.append(ErrorItem(root, listing))
        return
    try:
        root_id = _folder_id(root)
    except OSError as e:  # gone since it was listed
        out.items.append(ErrorItem(root, e.strerror or str(e)))
        return
    stack = [(iter(listing), root_id)]
    ancestors = {root_id}
    while stack:
        entries, folder_id = stack[-1]
        entry = next(entries, None)
        if entry is None:
            stack.pop()
            ancestors.discard(folder_id)
            continue
        path = entry.path
        try:
            is_dir = entry.is_dir()  # follows symlinks
        except OSError as e:
            out.items.append(ErrorItem(path, f"is {kind_of(path)}" if e.errno == errno.ELOOP else e.strerror or str(e)))
            continue
        if is_dir:
            if not recursive:
                continue
            try:
                sub_id = _folder_id(path)
            except OSError as e:  # gone, or changed, since it was listed
                out.items.append(ErrorItem(path, e.strerror or str(e)))
                continue
            if sub_id in ancestors:
                out.items.append(ErrorItem(path, "symlink loop: links back to a folder that contains it"))
                continue
            sub_listing = _list_folder(path)
            if isinstance(sub_listing, str):
                out.items.append(ErrorItem(path, sub_listing))
                continue
            stack.append((iter(sub_listing), sub_id))
            ancestors.add(sub_id)
            continue
        if pattern and not fnmatch.fnmatch(entry.name, pattern):
            continue
        is_array = path.lower().endswith(".npy")
        if not is_array and not is_image_path(path):
            out.skipped += 1
            continue
        if not entry.is_file():  # a FIFO, device, socket, broken symlink or loop named like an image
            kind = kind_of(path)
            if kind != REGULAR:
                out.items.append(ErrorItem(path, f"is {kind}, not a regular file" if kind != MISSING else "vanished while walking"))
                continue
        out.items.append(ArrayItem(path) if is_array else ImageItem(path))


def _folder_id(path: str) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


def read_path_list(data: bytes, null: bool = False) -> list[str]:
    """Paths listed on standard input: one per line, exactly as written (spaces are
    part of a name), or NUL-separated (`find -print0`) with `null`. Names are bytes;
    one that is not UTF-8 is kept as the same bytes (os.fsdecode)."""
    if not null and b"\0" in data:
        raise UsageError("standard input holds NUL bytes; for a NUL-separated list (find -print0) give -0/--null")
    names = data.split(b"\0" if null else b"\n")
    return [os.fsdecode(name) for name in names if name]


def expand_inputs(inputs: list[str], recursive: bool = True, pattern: str | None = None,
                  stdin: BinaryIO | None = None, null: bool = False) -> Expanded:
    """Items in input order; folders walked in sorted order; `-` reads a list of paths
    from `stdin` (binary; default: the process's standard input)."""
    out = Expanded()
    for arg in inputs:
        if arg == "-":
            if stdin is None and sys.stdin is None:
                raise UsageError("- reads paths from standard input, which is closed")
            data = (stdin or sys.stdin.buffer).read()
            _expand_paths(read_path_list(data, null), recursive, pattern, out)
        else:
            _expand_paths([arg], recursive, pattern, out)
    return out


def _expand_paths(paths: list[str], recursive: bool, pattern: str | None, out: Expanded) -> None:
    for path in paths:
        kind = kind_of(path)
        if kind == REGULAR:
            out.items.append(_named_file(path))
        elif kind == FOLDER:
            before = len(out.items)
            _walk(path, recursive, pattern, out)
            if len(out.items) == before:
                out.empty.append(path)
        elif kind == MISSING:
            out.items.append(ErrorItem(path, "no such file or folder"))
        else:
            out.items.append(ErrorItem(path, f"is {kind}, not a regular file"))
