"""What a path names, and whether the toolkit may read or write it: the one place for each decision.

- `kind_of(path)` says what a path names: a regular file, a folder, a FIFO, a
  device, a socket, nothing, a broken symlink or a symlink loop. Everything that
  reads a user's path asks it (or `open_regular`, which asks the open file), so a
  FIFO named `x.png` is refused instead of blocking the run forever.
- `write_error(path, e)` turns an OSError from writing into the DigitsError the
  user sees; every writer raises through it.
- `refuse_overwriting` stops an output from being written over an input, and
  `refuse_same_targets` two outputs from naming one file.

Only the standard library: batch/ (the runtime) stands on this module.
"""

import errno
import os
import re
import stat
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from core.errors import DigitsError

REGULAR, FOLDER, MISSING = "file", "folder", "missing"


# What each non-regular kind is called in a message.
KIND_NAMES = {
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
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
    return KIND_NAMES.get(stat.S_IFMT(mode), "not a regular file")



def kind_of(path: str | os.PathLike) -> str:
    """What `path` names, following symlinks: REGULAR, FOLDER, MISSING, or words saying
    what else it is ("a FIFO (named pipe)", "a broken symlink", "a symlink loop",
    "unreadable (Permission denied)" ...)."""
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
    """`error` (PathError; ModelError for a model file) unless `path` is a regular file (after
    symlinks) that this process can open for reading, saying what it is instead or why it cannot
    be read. Asked before a library reads it: onnxruntime reported an unreadable model as
    "system error number 13", onnx as "PermissionError"."""
    kind = kind_of(path)
    if kind == MISSING:
        raise error(f"{os.fsdecode(path)}: no such {what}")
    if kind != REGULAR:
        raise error(f"{os.fsdecode(path)}: is {_a(kind)}, not a {what}")
    try:
        os.close(os.open(path, os.O_RDONLY | os.O_NONBLOCK))
    except OSError as e:
        raise error(f"{os.fsdecode(path)}: cannot read the {what} ({_reason(e)})") from e



def _reason(e: OSError) -> str:
    """An OSError in words: "permission denied", not "[Errno 13] ..." or a number."""
    return (e.strerror or str(e)).lower() if e.errno == errno.EACCES else e.strerror or str(e)



def _a(kind: str) -> str:
    return "a folder" if kind == FOLDER else kind



def open_regular(path: str | os.PathLike) -> int:
    """A read-only file descriptor for `path`, which must be a regular file.

    The open does not block on a FIFO (O_NONBLOCK, which regular files ignore),
    and the check is made on the opened file, so nothing can swap the file for a
    FIFO between a check and the read. Raises PathError for anything else
    (message: what it is), OSError when it cannot be opened."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        kind = kind_of_mode(os.fstat(fd).st_mode)
    except BaseException:
        os.close(fd)
        raise
    if kind != REGULAR:
        os.close(fd)
        raise PathError(f"is {_a(kind)}, not a regular file")
    return fd



def write_error(path: str | os.PathLike, e: OSError) -> OutputError:
    """The one message for a failed write of `path`."""
    if e.errno == errno.ENOSPC:
        reason = "no space left on the device"
    elif e.errno == errno.EISDIR:
        reason = "it is a folder"
    elif e.errno == errno.EPIPE:
        reason = "the reader closed it (broken pipe)"
    else:
        reason = e.strerror or str(e)
    return OutputError(f"{os.fsdecode(path)}: cannot write ({reason})")



@contextmanager
def writing(path: str | os.PathLike) -> Iterator[None]:
    """Any OSError inside becomes write_error(path)."""
    try:
        yield
    except OSError as e:
        raise write_error(path, e) from e



def file_name(value: str | os.PathLike) -> Path:
    """An option naming a file to write (`--output`, `--out`), parsed: a name that ends in
    a path separator names a folder, and is refused here. Path() drops the slash, so
    `-o newdir/` used to create a file called `newdir`."""
    value = os.fspath(value)
    if value.endswith(("/", os.sep, "/.", "/..")) or value in (".", ".."):
        raise OutputError(f"{value}: names a folder; give a file name to write to")
    return Path(value)



def check_target(path: Path) -> None:
    """OutputError unless `path` can be a file we replace: a file, nothing yet, or a
    symlink to either; not a folder, a device or FIFO, nor an open stream such as
    /dev/stdout (a set of files cannot be streamed)."""
    kind = kind_of(path)
    if kind not in (REGULAR, MISSING, "a broken symlink"):  # a link is written through (written_through)
        raise OutputError(f"{path}: is {_a(kind)}; give a file name to write to")
    if stream_fd(path) is not None:
        raise OutputError(f"{path}: names an open stream, not a file; give a file name to write to")



_STREAM_LINK = re.compile(r"/dev/std(in|out|err)|/dev/fd/(\d+)|/proc/(self|thread-self|\d+)/fd/(\d+)")



_STREAMS = {"in": 0, "out": 1, "err": 2}



def stream_fd(path: str | os.PathLike) -> int | None:
    """The descriptor of this process that `path` names through /dev/stdout, /dev/fd/N or
    /proc/self/fd/N (followed through symlinks), else None. Such a name is one of our own
    open files, which is written as a stream: renaming over it replaced /dev/stdout, and
    resolving it (`> s.json`) names a file the shell holds open."""
    name = os.fspath(path)
    for _ in range(40):  # the kernel's own limit on a chain of links
        match = _STREAM_LINK.fullmatch(os.path.normpath(name))
        if match and match[3] not in (None, "self", "thread-self", str(os.getpid())):
            return None  # another process's descriptor: not ours to write
        if match:
            return _STREAMS[match[1]] if match[1] else int(match[2] or match[4])
        try:
            name = os.path.join(os.path.dirname(name), os.readlink(name))
        except (OSError, ValueError):
            return None
    return None



def written_through(target: str | os.PathLike) -> Path:
    """The file an atomic write of `target` replaces: `target`, or the file a symlink at
    `target` names (written through, so the link stays a link). OutputError for a link
    into /proc, whose names are not files to replace."""
    target = Path(target)
    if not os.path.islink(target):
        return target
    real = Path(os.path.realpath(target))
    if real.parts[1:2] == ("proc",):
        raise OutputError(f"{target}: links into /proc ({real}); give a file name to write to")
    return real



def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):
        return False



def same_target(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether `a` and `b` name the same file, by what they name and not as typed: the
    same inode (hard links, symlinks) or, for names not there yet, the same real path."""
    if same_file(a, b):
        return True
    try:
        return os.path.realpath(a) == os.path.realpath(b)
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
        if same_file(output, source):
            raise OutputError(
                f"{os.fsdecode(output)}: the {what} would overwrite an input ({os.fsdecode(source)}); "
                f"give another name"
            )



def check_output_target(path: Path) -> None:
    """OutputError for a row output that names a folder or a symlink loop (FIFOs and
    devices such as /dev/null are fine: rows stream into them)."""
    kind = kind_of(path)
    if kind == FOLDER:
        raise OutputError(f"{path}: is a folder; give a file name to write to")
    if kind == "a symlink loop":
        raise OutputError(f"{path}: cannot write (a symlink loop)")
