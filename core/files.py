"""Paths the toolkit is given and files it writes: what a path names (`kind_of`: a FIFO named
`x.png` is refused, not read forever), the one message for a failed write, outputs that would
destroy an input, and locked outputs. Only the standard library: batch/ stands on this module.
"""

import errno
import os
import stat
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TextIO

from digits.core.errors import DigitsError

REGULAR, FOLDER, MISSING = "file", "folder", "missing"
FIFO, CHARACTER_DEVICE = "a FIFO (named pipe)", "a character device"
STREAMED = (FIFO, CHARACTER_DEVICE)  # kinds written into as they are: a rename would replace them
# flock's answers on file systems that cannot lock: write without the lock there.
_NO_LOCKING = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS}
_KIND_NAMES = {
    stat.S_IFIFO: FIFO,
    stat.S_IFCHR: CHARACTER_DEVICE,
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}
_WRITE_REASONS = {
    errno.ENOSPC: "no space left on the device",
    errno.EISDIR: "it is a folder",
    errno.EPIPE: "the reader closed it (broken pipe)",
}


class PathError(DigitsError):
    """A path that names something other than what was asked for."""


class OutputError(DigitsError):
    """An output that cannot be written (full disk, permission, a folder ...)."""


def kind_of_mode(mode: int) -> str:
    """REGULAR, FOLDER, or words for anything else ("a FIFO (named pipe)" ...)."""
    if stat.S_ISREG(mode):
        return REGULAR
    if stat.S_ISDIR(mode):
        return FOLDER
    return _KIND_NAMES.get(stat.S_IFMT(mode), "not a regular file")


def kind_of(path: str | os.PathLike) -> str:
    """What `path` names, following symlinks: REGULAR, FOLDER, MISSING, or words saying
    what else it is ("a broken symlink", "a symlink loop", "unreadable (Permission denied)" ...)."""
    try:
        return kind_of_mode(os.stat(path).st_mode)
    except OSError as e:
        if e.errno == errno.ELOOP:
            return "a symlink loop"
        if e.errno == errno.ENOENT:
            return "a broken symlink" if os.path.islink(path) else MISSING
        if e.errno == errno.ENAMETOOLONG:
            return "a name too long for the system"
        return f"unreadable ({e.strerror or e})"
    except ValueError:  # an embedded NUL byte
        return "not a valid path (it holds a NUL byte)"


def require_file(path: str | os.PathLike, what: str = "file", error: type[DigitsError] = PathError) -> None:
    """`error` unless `path` is a regular file (after symlinks) this process can open for
    reading, saying what it is instead or why it cannot be read: in our words, where
    onnxruntime said "system error number 13"."""
    kind = kind_of(path)
    if kind == MISSING:
        raise error(f"{os.fsdecode(path)}: no such {what}")
    if kind != REGULAR:
        raise error(f"{os.fsdecode(path)}: is {_a(kind)}, not a {what}")
    try:
        os.close(os.open(path, os.O_RDONLY | os.O_NONBLOCK))
    except OSError as e:
        reason = e.strerror or str(e)
        reason = reason.lower() if e.errno == errno.EACCES else reason  # "permission denied"
        raise error(f"{os.fsdecode(path)}: cannot read the {what} ({reason})") from e


def _a(kind: str) -> str:
    return "a folder" if kind == FOLDER else kind


def open_regular(path: str | os.PathLike) -> int:
    """A read-only descriptor for `path`, opened without blocking on a FIFO, then checked to be a
    regular file (PathError saying what it is): nothing can swap one in between check and read."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        kind = kind_of_mode(os.fstat(fd).st_mode)
        if kind != REGULAR:
            raise PathError(f"is {_a(kind)}, not a regular file")
    except BaseException:
        os.close(fd)
        raise
    return fd


def write_all(fd: int, data: bytes) -> None:
    """All of `data` to `fd`: a signal cuts a large write to a pipe short, and Python's text
    layer drops the rest without a word (cpython gh-85393)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def write_error(path: str | os.PathLike, e: OSError) -> OutputError:
    """The one message for a failed write of `path`."""
    reason = _WRITE_REASONS.get(e.errno) or e.strerror or str(e)
    return OutputError(f"{os.fsdecode(path)}: cannot write ({reason})")


@contextmanager
def writing(path: str | os.PathLike) -> Iterator[None]:
    """Any OSError inside becomes write_error(path)."""
    try:
        yield
    except OSError as e:
        raise write_error(path, e) from e


def file_name(value: str | os.PathLike) -> Path:
    """An option naming a file to write (`--output`, `--out`), parsed: a name that ends in a
    path separator names a folder and is refused (Path() would drop the slash)."""
    value = os.fspath(value)
    if value.endswith(("/", os.sep, "/.", "/..")) or value in (".", ".."):
        raise OutputError(f"{value}: names a folder; give a file name to write to")
    return Path(value)


def same_target(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether `a` and `b` name the same file: the same real path (names not there yet
    included) or the same inode (hard links)."""
    try:
        return os.path.realpath(a) == os.path.realpath(b) or os.path.samefile(a, b)
    except (OSError, ValueError):
        return False


def refuse_same_targets(writes: dict[str, str | os.PathLike]) -> None:
    """OutputError when two of a run's outputs ({option: path}) name the same file: the
    second written would replace the first (`-o rows.csv --summary-json rows.csv`)."""
    named = [(what, path) for what, path in writes.items() if path is not None]
    for i, (what, path) in enumerate(named):
        for other, other_path in named[i + 1:]:
            if same_target(path, other_path):
                raise OutputError(f"{os.fsdecode(path)}: {what} and {other} name the same file; give each its own")


def refuse_overwriting(output: str | os.PathLike, inputs: Iterable[str | os.PathLike], what: str = "output") -> None:
    """OutputError when `output` is the same file as one of `inputs` (hard links and
    symlinks included): writing it would destroy what is being read."""
    if kind_of(output) != REGULAR:
        return  # nothing there yet (or a device such as /dev/null): nothing to destroy
    for source in inputs:
        if same_target(output, source):
            raise OutputError(
                f"{os.fsdecode(output)}: the {what} would overwrite an input ({os.fsdecode(source)}); "
                f"give another name"
            )


def open_output(path: Path, append: bool = False) -> TextIO:
    """`path` opened for writing rows (UTF-8; names that are not UTF-8 are written as their bytes),
    locked, then truncated unless `append`: a second run writing the same file is refused
    (OutputError) without touching the first's rows. Devices and FIFOs are opened as they are."""
    kind = kind_of(path)
    if kind == FOLDER:
        raise OutputError(f"{path}: is a folder; give a file name to write to")
    if kind == "a symlink loop":
        raise OutputError(f"{path}: cannot write (a symlink loop)")
    busy = f"{path}: another run is writing this file; wait for it or give another name"
    fd = _open_locked(path, os.O_WRONLY | os.O_CREAT, busy)
    try:
        regular = stat.S_ISREG(os.fstat(fd).st_mode)
        if regular and not append:
            os.ftruncate(fd, 0)
        return open(fd, "a" if regular and append else "w", encoding="utf-8", errors="surrogateescape", newline="")
    except BaseException as e:
        os.close(fd)
        if isinstance(e, OSError):
            raise write_error(path, e) from e
        raise


def _open_locked(path: str | os.PathLike, flags: int, busy: str) -> int:
    """A descriptor for `path` (os.open `flags`), locked exclusively unless it is a device or a FIFO:
    OutputError(busy) when another run holds the lock, no lock where the file system cannot lock,
    write_error(path) for anything else that fails."""
    import fcntl

    try:
        fd = os.open(path, flags | os.O_CLOEXEC, 0o666)
    except OSError as e:
        raise write_error(path, e) from e
    try:
        if kind_of_mode(os.fstat(fd).st_mode) in (REGULAR, FOLDER):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as e:
        os.close(fd)
        raise OutputError(busy) from e
    except OSError as e:
        if e.errno not in _NO_LOCKING:
            os.close(fd)
            raise write_error(path, e) from e
    except BaseException:
        os.close(fd)
        raise
    return fd


class FolderLock:
    """Holds a lock on a folder until it is released or dropped."""

    def __init__(self, fd: int):
        self.fd = fd

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    __del__ = release


def lock_folder(folder: Path) -> FolderLock:
    """An exclusive lock on `folder` while the FolderLock is held: two runs writing the same
    set of artefacts would mix them. OutputError when another run holds it."""
    busy = f"{folder}: another run is writing this folder; wait for it or give another --out"
    return FolderLock(_open_locked(folder, os.O_RDONLY | os.O_DIRECTORY, busy))


def to_devnull(fd: int) -> None:
    """Descriptor `fd` reads and writes /dev/null from now on (a closed `fd` too)."""
    null = os.open(os.devnull, os.O_RDWR)
    if null != fd:  # a closed `fd` may be the number open() gave
        os.dup2(null, fd)
        os.close(null)


@contextmanager
def stderr_muted() -> Iterator[None]:
    """Descriptor 2 goes to /dev/null for a while: what C libraries print there straight (libpng,
    Ray, LiteRT) is not for our stderr, which carries the summary and error lines."""
    with suppress(AttributeError, OSError, ValueError):  # stderr closed or gone
        sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # descriptor 2 closed: nothing to mute
        yield
        return
    try:
        to_devnull(2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
