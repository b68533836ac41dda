"""INPUT arguments -> an ordered stream of things to classify (docs/classify.md's "Inputs"). What a path
names is decided by core.files.kind_of: FIFOs, devices and sockets become error items, never reads that
block. Every named thing yields at least one item (what cannot be had, an error item)."""

import errno
import fnmatch
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

from digits.core.contract import IMAGE_BLOCK
from digits.core.errors import UsageError, first_line
from digits.core.files import FOLDER, MISSING, REGULAR, kind_of

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
ImageRun = list  # consecutive image files of one folder, as paths (iter_runs)
RUN = IMAGE_BLOCK  # images in a run at most: the first ones go to the workers before the folder's last is looked at


@dataclass
class Expanded:
    skipped: int = 0  # a walked folder's files that are not images or .npy by extension
    empty: list[str] = field(default_factory=list)  # named folders that gave no item


def is_image_path(path: str | os.PathLike) -> bool:
    return os.path.splitext(path)[1].lower() in IMAGE_EXTENSIONS


_FOLDER, _OTHER = "folder", "other"  # what _open_folder notes of entries that are not regular files


def _suffix(name: str) -> str:
    """os.path.splitext(name)[1].lower() for a bare file name, at a tenth of its cost."""
    dot = name.rfind(".")
    # A name of dots then an extension (".png") is a hidden file without one.
    return name[dot:].lower() if dot > 0 and (name[0] != "." or name[:dot].lstrip(".")) else ""


class _Folder(NamedTuple):
    prefix: str  # the path and a separator: prefix + name costs less than os.path.join per file
    id: tuple[int, int]  # (device, inode)
    entries: Iterator  # _entries


def _open_folder(path: str, skip: "Skip | None") -> _Folder | ErrorItem:
    """The folder to walk, or an ErrorItem saying why it cannot be listed (or is gone since). Its whole
    listing is held, to walk it sorted: names only (an os.DirEntry costs three times a name:
    docs/decisions.md), and what is known of the few that are not regular files."""
    names: list[str] = []
    special: dict[str, object] = {}
    try:
        with os.scandir(path) as listing:
            for entry in listing:
                names.append(entry.name)
                try:
                    if entry.is_file():  # follows symlinks; asked first: most entries are files
                        continue
                    # _OTHER: a FIFO, device, socket, broken symlink or loop
                    special[entry.name] = _FOLDER if entry.is_dir() else _OTHER
                except OSError as e:
                    special[entry.name] = e
    except OSError as e:
        return ErrorItem(path, f"cannot list folder: {'symlink loop' if e.errno == errno.ELOOP else e.strerror or e}")
    try:
        folder_id = _folder_id(path)
    except OSError as e:  # gone, or changed, since it was listed
        return ErrorItem(path, e.strerror or str(e))
    if skip is not None and folder_id == skip[0]:
        names = [name for name in names if name != skip[1]]
        special.pop(skip[1], None)
    names.sort()
    return _Folder(os.path.join(path, ""), folder_id, _entries(names, special))


def _entries(names: list[str], special: dict[str, object]) -> Iterator[list[str] | tuple[str, object]]:
    """A folder's entries: each run of regular files as one list of names (the Python around each of
    a big folder's files was most of the walk's cost), each other entry as (name, what was noted)."""
    start = 0
    for i in [i for i, name in enumerate(names) if name in special] if special else []:
        if i > start:
            yield names[start:i]
        yield names[i], special[names[i]]
        start = i + 1
    if start < len(names):
        yield names[start:]


def _walk(root: str, recursive: bool, pattern: str | None, out: Expanded, skip: "Skip | None" = None
          ) -> Iterator[Item | ImageRun]:
    """Depth first, sorted, with an explicit stack: folders may nest deeper than Python's recursion
    limit. Symlinks are followed; a symlink loop is a folder that is its own ancestor. `skip`: a
    file the walk passes over (the run's own output)."""
    top = _open_folder(root, skip)
    if isinstance(top, ErrorItem):
        yield top
        return
    stack, ancestors = [top], {top.id}
    while stack:
        folder = stack[-1]
        entry = next(folder.entries, None)
        if entry is None:
            stack.pop()
            ancestors.discard(folder.id)
            continue
        if isinstance(entry, list):
            yield from _plain_files(folder.prefix, fnmatch.filter(entry, pattern) if pattern else entry, out)
            continue
        name, kind = entry
        path = folder.prefix + name
        if isinstance(kind, OSError):
            yield ErrorItem(path, f"is {kind_of(path)}" if kind.errno == errno.ELOOP else kind.strerror or str(kind))
        elif kind is _FOLDER:
            sub = _open_folder(path, skip) if recursive else None
            if isinstance(sub, _Folder) and sub.id in ancestors:
                sub = ErrorItem(path, "symlink loop: links back to a folder that contains it")
            if isinstance(sub, ErrorItem):
                yield sub
            elif sub is not None:
                stack.append(sub)
                ancestors.add(sub.id)
        elif pattern and not fnmatch.fnmatch(name, pattern):
            continue
        elif not name.lower().endswith(".npy") and _suffix(name) not in IMAGE_EXTENSIONS:
            out.skipped += 1
        elif (what := kind_of(path)) == REGULAR:  # named like an image or array, and has become a file since
            yield from _plain_files(folder.prefix, [name], out)
        else:
            yield ErrorItem(path, f"is {what}, not a regular file" if what != MISSING else "vanished while walking")


Skip = tuple[tuple[int, int], str]  # (the folder's (device, inode), a file name in it)


def output_to_skip(path: str | os.PathLike | None) -> Skip | None:
    """What the walk must pass over so that a run never reads its own output (`-o scans/rows.npy`
    while walking scans/): the output's real folder, by identity, and its real name."""
    if path is None:
        return None
    folder, name = os.path.split(os.path.realpath(path))
    try:
        return _folder_id(folder), name
    except OSError:  # a folder that is not there holds no input either
        return None


def _plain_files(prefix: str, names: list[str], out: Expanded) -> Iterator[Item | ImageRun]:
    """Regular files of one folder, in order: runs of images, arrays one by one;
    other files are counted as skipped."""
    run: ImageRun = []
    for name in names:
        if _suffix(name) in IMAGE_EXTENSIONS:
            run.append(prefix + name)
            if len(run) == RUN:
                yield run
                run = []
        elif name.lower().endswith(".npy"):  # as for a named file: ".npy" alone is an array too
            if run:
                yield run
                run = []
            yield ArrayItem(prefix + name)
        else:
            out.skipped += 1
    if run:
        yield run


def _folder_id(path: str) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


def read_path_list(data: bytes, null: bool = False) -> list[str]:
    """Paths listed on standard input: one per line, exactly as written (spaces are part of a name), or
    NUL-separated (`find -print0`) with `null`; a name that is not UTF-8 keeps its bytes (os.fsdecode)."""
    if not null and b"\0" in data:
        raise UsageError("standard input holds NUL bytes; for a NUL-separated list (find -print0) give -0/--null")
    return [os.fsdecode(name) for name in data.split(b"\0" if null else b"\n") if name]


def iter_runs(inputs: list[str], recursive: bool = True, pattern: str | None = None, out: Expanded | None = None,
              skip: Skip | None = None, uris: bool = False) -> Iterator[Item | ImageRun]:
    """Every named input's items, in input order, as a stream: a folder's files as its walk reaches
    them (never a whole tree's at once), its consecutive image files as one ImageRun. `out` fills
    as the stream goes. A `-` is the caller's to read and splice in first (batch.api). `uris`: names
    like s3://... are listed with pyarrow (walk_uri), not taken as paths."""
    out = Expanded() if out is None else out
    for path in inputs:
        uri = uris and is_uri(path)  # a file or a prefix: walk_uri tells
        kind = FOLDER if uri else kind_of(path)
        if kind == REGULAR:
            yield ArrayItem(path) if path.lower().endswith(".npy") else ImageItem(path)
        elif kind == FOLDER:
            found = False
            for item in walk_uri(path, recursive, pattern, out) if uri else _walk(path, recursive, pattern, out, skip):
                found = True
                yield item
            if not found:
                out.empty.append(path)
        else:
            yield ErrorItem(path, "no such file or folder" if kind == MISSING else f"is {kind}, not a regular file")


def is_uri(text: str) -> bool:
    """s3://, gs://, hdfs://, file://...: listed and read with pyarrow's filesystems."""
    return "://" in text


def walk_uri(uri: str, recursive: bool, pattern: str | None, out: Expanded) -> Iterator[Item]:
    """A URI's items, as _walk gives a folder's: a file, or a prefix walked depth first in sorted
    order, one level listed at a time (a folder's files before its subfolders')."""
    import pyarrow.fs as pafs

    scheme = uri.split("://", 1)[0]
    try:
        fs, root = pafs.FileSystem.from_uri(uri)
        info = fs.get_file_info(root)
    except (OSError, ValueError) as e:
        yield ErrorItem(uri, f"cannot list: {first_line(e)}")
        return
    if info.type != pafs.FileType.Directory:
        yield _uri_file(f"{scheme}://{info.path}") if info.type == pafs.FileType.File else \
            ErrorItem(uri, "no such file or folder")
        return
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            listing = sorted(fs.get_file_info(pafs.FileSelector(folder)), key=lambda i: i.base_name)
        except (OSError, ValueError) as e:
            yield ErrorItem(f"{scheme}://{folder}", f"cannot list: {first_line(e)}")
            continue
        subfolders = []
        for i in listing:
            if i.type == pafs.FileType.Directory:
                subfolders += [i.path] if recursive else []
            elif i.type == pafs.FileType.File and not (pattern and not fnmatch.fnmatch(i.base_name, pattern)):
                if _suffix(i.base_name) in IMAGE_EXTENSIONS or i.base_name.lower().endswith(".npy"):
                    yield _uri_file(f"{scheme}://{i.path}")
                else:
                    out.skipped += 1
        stack.extend(reversed(subfolders))


def _uri_file(source: str) -> Item:
    if source.lower().endswith(".npy"):  # DigitArray reads a file by path: arrays are read from paths every node sees
        return ErrorItem(source, ".npy arrays are read from local or shared paths, not URIs")
    return ImageItem(source)
