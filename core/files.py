"""Files the toolkit writes: whole or not at all, and never two runs into one.

- `atomic_path(target)` is how every artefact (models, reports, plots, arrays)
  is written: under a hidden temporary name beside the target, flushed to disk
  (fsync), then renamed over the target (os.replace), and removed on any failure.
  A crash, a full disk or Ctrl-C leaves the old file or the new one, never half.
  `atomic_folder_files` does it for a set of files, its manifest last.
- `open_output` opens a row stream for writing, locked so that two runs cannot
  interleave their rows in one file; `lock_folder` does the same for a folder of
  artefacts (`train --out`). Where the file system cannot lock, both write unlocked.

Which paths may be written, and the errors' words: core/paths.py. Only the standard library.
"""

import errno
import os
import stat
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from core.paths import (
    KIND_NAMES,
    OutputError,
    check_output_target,
    check_target,
    kind_of,
    stream_fd,
    write_error,
    writing,
    written_through,
)

# flock's answers on file systems that cannot lock: write without the lock there.
_NO_LOCKING = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS}



def write_all(fd: int, data: bytes) -> None:
    """Write all of `data` to `fd`, however many writes it takes.

    A signal that arrives while a large write to a pipe waits for its reader cuts
    that write short; Python's text layer then drops the unwritten rest without a
    word (cpython gh-85393: rows lost from the middle of the stream, two rows glued
    into one line). os.write reports how much went out, so the rest is written
    again until nothing is left."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]



def check_atomic_target(target: Path) -> bool:
    """Whether atomic_path(target) streams (True: one of our open streams, a FIFO, a
    character device) or replaces a file (False: a file, nothing yet, or a symlink to
    either, even a broken one); OutputError for anything else."""
    kind = kind_of(target)
    if stream_fd(target) is not None or kind in (KIND_NAMES[stat.S_IFIFO], KIND_NAMES[stat.S_IFCHR]):
        return True
    check_target(target)
    written_through(target)
    return False



def temp_beside(target: Path) -> Path:
    """A hidden name in the target's folder that keeps its suffix (Keras, matplotlib and
    onnxruntime pick the format from it)."""
    return target.with_name(f".{target.stem}.partial-{os.urandom(4).hex()}{target.suffix}")



@contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yields a temporary path to write; on success it replaces `target` whole.

    The temporary file sits beside the target (same file system, so the rename is
    atomic), is fsynced before the rename and its folder after it. On any failure,
    Ctrl-C included, it is removed and the target is untouched. OutputError from the
    write, the sync or the rename (write_error(target)).

    A symlink is written through: the file it names is replaced, the link stays. A FIFO,
    a character device or one of our open streams (/dev/stdout) is never renamed over:
    what was written is copied into it as a stream once the block ends. Anything else
    that is not a file (a folder, a block device, a socket) is refused."""
    target = Path(target)
    if check_atomic_target(target):
        with _streamed(target, stream_fd(target)) as temp:
            yield temp
        return
    real = written_through(target)
    temp = temp_beside(real)
    try:
        with writing(target):
            yield temp
            _fsync(temp)
            os.replace(temp, real)
            _fsync_folder(real.parent)
    finally:
        try:
            temp.unlink(missing_ok=True)
        except OSError:
            pass



@contextmanager
def _streamed(target: Path, fd: int | None) -> Iterator[Path]:
    """A temporary file (in the system's temporary folder) whose bytes are written to the
    stream `target` (our descriptor `fd`, or the FIFO or device opened for writing) when
    the block succeeds."""
    import tempfile

    handle, name = tempfile.mkstemp(suffix=target.suffix, prefix=".digits-")
    os.close(handle)
    temp = Path(name)
    try:
        with writing(target):
            yield temp
            data = temp.read_bytes()
            if fd is not None:
                write_all(fd, data)
            else:
                out = os.open(target, os.O_WRONLY | os.O_CLOEXEC)
                try:
                    write_all(out, data)
                finally:
                    os.close(out)
    finally:
        temp.unlink(missing_ok=True)



@contextmanager
def atomic_folder_files(targets: dict[str, Path]) -> Iterator[dict[str, Path]]:
    """Several artefacts written together: {key: temporary path}. None lands unless the
    block succeeds; then each is moved into place atomically, in the dict's order, so the
    last one (a manifest naming the others) lands only after all of them. Symlinks are
    written through; streams, devices and FIFOs are refused (check_target)."""
    for target in targets.values():
        check_target(target)  # written_through checks the links
    reals = {key: written_through(target) for key, target in targets.items()}
    temps = {key: temp_beside(real) for key, real in reals.items()}
    try:
        try:
            yield temps
        except OSError as e:  # name the artefact, not its temporary name
            failed = {str(temp): targets[key] for key, temp in temps.items()}.get(
                os.fsdecode(e.filename) if e.filename else "", next(iter(targets.values())).parent)
            raise write_error(failed, e) from e
        for key, target in targets.items():
            with writing(target):
                _fsync(temps[key])
        for key, target in targets.items():
            with writing(target):
                os.replace(temps[key], reals[key])
        for folder in {real.parent for real in reals.values()}:
            _fsync_folder(folder)
    finally:
        for temp in temps.values():
            try:
                temp.unlink(missing_ok=True)
            except OSError:
                pass



def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)



def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder or ".", os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return  # a folder we cannot open for syncing: the rename is still atomic
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems do not sync folders; nothing to do about it
    finally:
        os.close(fd)



def open_output(path: Path, append: bool = False) -> TextIO:
    """`path` opened for writing rows (UTF-8; file names that are not UTF-8 are written
    as their bytes), truncated (unless `append`: classify --resume), and locked for as
    long as it is open.

    The lock is taken before truncating, so a second run writing the same file is
    refused (OutputError) without touching the first run's rows. Devices and FIFOs
    (/dev/null, a pipe) are opened as they are, without truncating or locking."""
    import fcntl

    check_output_target(path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o666)
    except OSError as e:
        raise write_error(path, e) from e
    try:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as e:
                raise OutputError(f"{path}: another run is writing this file; wait for it or give another name") from e
            except OSError as e:
                if e.errno not in _NO_LOCKING:
                    raise
            if append:
                return open(fd, "a", encoding="utf-8", errors="surrogateescape", newline="")
            os.ftruncate(fd, 0)
        return open(fd, "w", encoding="utf-8", errors="surrogateescape", newline="")
    except OSError as e:
        os.close(fd)
        raise write_error(path, e) from e
    except BaseException:
        os.close(fd)
        raise



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
    """An exclusive lock on `folder`, held until the returned FolderLock is released
    or dropped: two runs writing the same set of artefacts would otherwise mix
    them (one run's model beside the other's metrics). OutputError when another
    run holds it."""
    import fcntl

    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        raise write_error(folder, e) from e
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno in _NO_LOCKING:
            return FolderLock(fd)  # a file system without locks: write unlocked, as before
        os.close(fd)
        if isinstance(e, BlockingIOError):
            raise OutputError(f"{folder}: another run is writing this folder; wait for it or give another --out") from e
        raise write_error(folder, e) from e
    return FolderLock(fd)



@contextmanager
def stderr_muted() -> Iterator[None]:
    """Descriptor 2 goes to /dev/null for a while: what C libraries print there straight
    (libpng's lines for a corrupt PNG, Ray's core starting, LiteRT's delegate notice)
    is not for our stderr, which carries the summary and `digits: error:` lines. Python's
    own sys.stderr is flushed first; with descriptor 2 closed there is nothing to mute."""
    try:
        sys.stderr.flush()
    except (AttributeError, OSError, ValueError):  # stderr closed or gone
        pass
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 2)
        os.close(null)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
