"""INPUT arguments -> an ordered list, or stream, of things to classify.

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
from collections.abc import Iterator
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


_FOLDER, _OTHER = "folder", "other"  # what _list_folder notes of entries that are not regular files


def _suffix(name: str) -> str:
    """os.path.splitext(name)[1].lower() for a bare file name, at a tenth of its cost."""
    dot = name.rfind(".")
    return name[dot:].lower() if dot > 0 and name[:dot].lstrip(".") else ""


def _list_folder(folder: str) -> tuple[list[str], dict[str, object]] | str:
    """The folder's entry names, sorted, and what is known of the few that are not
    regular files (_FOLDER, _OTHER, or the OSError raised asking); or why it cannot
    be listed. Names only: an os.DirEntry costs ~210 bytes held, a name ~70
    (measured), and a folder's whole listing is held to walk it in sorted order."""
    names: list[str] = []
    special: dict[str, object] = {}
    try:
        with os.scandir(folder) as listing:
            for entry in listing:
                names.append(entry.name)
                try:
                    if entry.is_dir():  # follows symlinks
                        special[entry.name] = _FOLDER
                    elif not entry.is_file():  # a FIFO, device, socket, broken symlink or loop
                        special[entry.name] = _OTHER
                except OSError as e:
                    special[entry.name] = e
    except OSError as e:
        return f"cannot list folder: {'symlink loop' if e.errno == errno.ELOOP else e.strerror or e}"
    names.sort()
    return names, special


def _walk(root: str, recursive: bool, pattern: str | None, out: Expanded) -> Iterator[Item]:
    """Depth first, sorted, with an explicit stack: folders may nest deeper than
    Python's recursion limit. Symlinks are followed; a symlink loop is a folder that
    is its own ancestor (a link to a sibling folder is walked like any folder).
    Items are yielded as the walk reaches them."""
    listing = _list_folder(root)
    if isinstance(listing, str):
        yield ErrorItem(root, listing)
        return
    try:
        root_id = _folder_id(root)
    except OSError as e:  # gone since it was listed
        yield ErrorItem(root, e.strerror or str(e))
        return
    # + name: os.path.join per file cost ~0.5 us (measured)
    stack = [(os.path.join(root, ""), iter(listing[0]), listing[1], root_id)]
    ancestors = {root_id}
    while stack:
        prefix, names, special, folder_id = stack[-1]
        name = next(names, None)
        if name is None:
            stack.pop()
            ancestors.discard(folder_id)
            continue
        path = prefix + name
        kind = special.get(name)
        if isinstance(kind, OSError):
            yield ErrorItem(path, f"is {kind_of(path)}" if kind.errno == errno.ELOOP else kind.strerror or str(kind))
            continue
        if kind is _FOLDER:
            if not recursive:
                continue
            try:
                sub_id = _folder_id(path)
            except OSError as e:  # gone, or changed, since it was listed
                yield ErrorItem(path, e.strerror or str(e))
                continue
            if sub_id in ancestors:
                yield ErrorItem(path, "symlink loop: links back to a folder that contains it")
                continue
            sub_listing = _list_folder(path)
            if isinstance(sub_listing, str):
                yield ErrorItem(path, sub_listing)
                continue
            stack.append((os.path.join(path, ""), iter(sub_listing[0]), sub_listing[1], sub_id))
            ancestors.add(sub_id)
            continue
        if pattern and not fnmatch.fnmatch(name, pattern):
            continue
        is_array = name.lower().endswith(".npy")
        if not is_array and _suffix(name) not in IMAGE_EXTENSIONS:
            out.skipped += 1
            continue
        if kind is _OTHER:  # named like an image, but not a regular file
            what = kind_of(path)
            if what != REGULAR:
                yield ErrorItem(path, f"is {what}, not a regular file" if what != MISSING else "vanished while walking")
                continue
        yield ArrayItem(path) if is_array else ImageItem(path)


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


def iter_inputs(inputs: list[str], recursive: bool = True, pattern: str | None = None,
                stdin: BinaryIO | None = None, null: bool = False, out: Expanded | None = None) -> Iterator[Item]:
    """The items of expand_inputs, as a stream: a folder's files are yielded as its
    walk reaches them, so a run never holds the items of a whole tree at once.
    `out.skipped` and `out.empty` fill as the stream goes. Standard input is read
    here, at once, so that its usage errors come before any row is written."""
    listed = None
    if "-" in inputs:
        if stdin is None and sys.stdin is None:
            raise UsageError("- reads paths from standard input, which is closed")
        listed = read_path_list((stdin or sys.stdin.buffer).read(), null)
    return _stream(inputs, listed, recursive, pattern, out if out is not None else Expanded())


def _stream(inputs, listed, recursive, pattern, out: Expanded) -> Iterator[Item]:
    for arg in inputs:
        yield from _expand_paths(listed if arg == "-" else [arg], recursive, pattern, out)


def expand_inputs(inputs: list[str], recursive: bool = True, pattern: str | None = None,
                  stdin: BinaryIO | None = None, null: bool = False) -> Expanded:
    """Items in input order; folders walked in sorted order; `-` reads a list of paths
    from `stdin` (binary; default: the process's standard input)."""
    out = Expanded()
    out.items = list(iter_inputs(inputs, recursive, pattern, stdin, null, out))
    return out


def _expand_paths(paths: list[str], recursive: bool, pattern: str | None, out: Expanded) -> Iterator[Item]:
    for path in paths:
        kind = kind_of(path)
        if kind == REGULAR:
            yield _named_file(path)
        elif kind == FOLDER:
            found = False
            for item in _walk(path, recursive, pattern, out):
                found = True
                yield item
            if not found:
                out.empty.append(path)
        elif kind == MISSING:
            yield ErrorItem(path, "no such file or folder")
        else:
            yield ErrorItem(path, f"is {kind}, not a regular file")
