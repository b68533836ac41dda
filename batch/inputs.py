"""INPUT arguments -> an ordered list, or stream, of things to classify.

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
from collections.abc import Iterable, Iterator
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


_FOLDER, _SYMLINK = "folder", "symlink"


def _suffix(name: str) -> str:
    """os.path.splitext(name)[1].lower() for a bare file name, at a tenth of its cost."""
    dot = name.rfind(".")
    return name[dot:].lower() if dot > 0 and name[:dot].lstrip(".") else ""


def _list_folder(folder: str) -> tuple[list[str], dict[str, object]]:
    """The folder's entry names, sorted, and what is known of the few that are not
    plain files: _FOLDER, _SYMLINK, or the OSError raised asking. Names only: an
    os.DirEntry costs ~210 bytes held, a name ~70 (measured), and a folder's whole
    listing must be held to walk it in sorted order. Raises OSError."""
    names: list[str] = []
    special: dict[str, object] = {}
    with os.scandir(folder) as listing:
        for entry in listing:
            names.append(entry.name)
            try:
                if entry.is_dir():  # follows symlinks; loops are caught by the walk's `seen`
                    special[entry.name] = _FOLDER
                elif entry.is_symlink():
                    special[entry.name] = _SYMLINK
            except OSError as e:
                special[entry.name] = e
    names.sort()
    return names, special


def _walk(root: str, recursive: bool, pattern: str | None, out: Expanded, seen: set) -> Iterator[Item]:
    try:
        real = os.path.realpath(root)
        if real in seen:
            yield ErrorItem(root, "symlink loop: folder already visited")
            return
        seen.add(real)
        names, special = _list_folder(root)
    except OSError as e:
        yield ErrorItem(root, f"cannot list folder: {_os_error(e)}")
        return
    prefix = os.path.join(root, "")  # + name: os.path.join per file cost ~0.5 us (measured)
    for name in names:
        path = prefix + name
        kind = special.get(name)
        if isinstance(kind, OSError):
            yield ErrorItem(path, _os_error(kind))
            continue
        if kind is _FOLDER:
            if recursive:
                yield from _walk(path, recursive, pattern, out, seen)
            continue
        if pattern and not fnmatch.fnmatch(name, pattern):
            continue
        if name.lower().endswith(".npy"):
            yield ArrayItem(path)
        elif _suffix(name) in IMAGE_EXTENSIONS:
            if kind is _SYMLINK and not os.path.exists(path):
                yield ErrorItem(path, "broken symlink or symlink loop")
            else:
                yield ImageItem(path)
        else:
            out.skipped += 1


def iter_inputs(inputs: Iterable[str], recursive: bool = True, pattern: str | None = None,
                stdin: TextIO | None = None, out: Expanded | None = None) -> Iterator[Item]:
    """The items of expand_inputs, as a stream: a folder's files are yielded as its
    walk reaches them, so a run never holds the items of a whole tree at once.
    `out.skipped` counts the skipped files as the stream goes."""
    out = out if out is not None else Expanded()
    for arg in inputs:
        if arg == "-":
            names = (line.strip() for line in (stdin or sys.stdin))
            yield from iter_inputs((n for n in names if n and n != "-"), recursive, pattern, out=out)
            continue
        try:
            os.stat(arg)
        except OSError as e:
            yield ErrorItem(arg, "no such file or folder" if e.errno == errno.ENOENT else _os_error(e))
            continue
        if os.path.isdir(arg):
            found = False
            for item in _walk(arg, recursive, pattern, out, set()):
                found = True
                yield item
            if not found:
                out.empty.append(arg)
        else:
            yield _named_file(arg)


def expand_inputs(inputs: list[str], recursive: bool = True, pattern: str | None = None,
                  stdin: TextIO | None = None) -> Expanded:
    """Items in input order; folders walked in sorted order; `-` reads paths from stdin."""
    out = Expanded()
    out.items = list(iter_inputs(inputs, recursive, pattern, stdin, out))
    return out
