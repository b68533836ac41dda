"""Files written whole (`atomic_path`, `atomic_folder_files`: the one place for how an
artefact reaches its path), and `json_text`, the strict JSON every artefact is written as."""

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from digits.core.files import FOLDER, MISSING, REGULAR, STREAMED, OutputError, kind_of, write_all, write_error, writing


def json_text(payload: object) -> str:
    """`payload` as strict JSON (indented, one trailing newline) that JSON.parse and jq read:
    a NaN or infinity (an empty reliability bin's mean) becomes null."""
    import json

    strict = json.loads(json.dumps(payload), parse_constant=lambda _: None)  # NaN, Infinity, -Infinity
    return json.dumps(strict, indent=2, allow_nan=False) + "\n"


def check_target(path: Path) -> None:
    """OutputError unless `path` can be a file we replace (a file, nothing yet, or a symlink to
    either): not a folder, a device, a FIFO nor an open stream such as /dev/stdout."""
    kind = kind_of(path)
    if kind not in (REGULAR, MISSING, "a broken symlink"):  # a link is written through (written_through)
        raise OutputError(f"{path}: is {'a folder' if kind == FOLDER else kind}; give a file name to write to")
    if stream_fd(path) is not None:
        raise OutputError(f"{path}: names an open stream, not a file; give a file name to write to")


_STREAM_LINK = re.compile(r"/dev/std(in|out|err)|/dev/fd/(\d+)|/proc/(self|thread-self|\d+)/fd/(\d+)")
_STREAMS = {"in": 0, "out": 1, "err": 2}


def stream_fd(path: str | os.PathLike) -> int | None:
    """The descriptor of this process that `path` names through /dev/stdout, /dev/fd/N or
    /proc/self/fd/N (followed through symlinks), else None. Renaming over such a name would
    replace /dev/stdout, and resolving it (`> s.json`) names a file the shell holds open."""
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


def check_atomic_target(target: Path) -> bool:
    """Whether atomic_path(target) streams (True: one of our open streams, a FIFO, a
    character device) or replaces a file (False); OutputError for anything else."""
    if stream_fd(target) is not None or kind_of(target) in STREAMED:
        return True
    check_target(target)
    written_through(target)
    return False


def written_through(target: str | os.PathLike) -> Path:
    """The file an atomic write of `target` replaces: `target`, or the file a symlink there
    names (so the link stays a link). OutputError for a link into /proc."""
    target = Path(target)
    if not os.path.islink(target):
        return target
    real = Path(os.path.realpath(target))
    if real.parts[1:2] == ("proc",):
        raise OutputError(f"{target}: links into /proc ({real}); give a file name to write to")
    return real


@contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yields a temporary path to write; on success it replaces `target` whole, so a crash, a full
    disk or Ctrl-C leaves the old file or the new one (OutputError from the write, the sync or
    the rename). A FIFO, a character device or one of our open streams (/dev/stdout) is never
    renamed over: what was written is copied into it once the block ends."""
    target = Path(target)
    if not check_atomic_target(target):
        with atomic_folder_files({"target": target}) as temps:
            yield temps["target"]
        return
    import tempfile

    # A stream: written to a temporary file in the system's folder, then copied into our own
    # descriptor, or the FIFO or device opened for writing, once the block succeeds.
    fd = stream_fd(target)
    handle, name = tempfile.mkstemp(suffix=target.suffix, prefix=".digits-")
    os.close(handle)
    temp = Path(name)
    try:
        with writing(target):
            yield temp
            out = fd if fd is not None else os.open(target, os.O_WRONLY | os.O_CLOEXEC)
            try:
                write_all(out, temp.read_bytes())
            finally:
                if out != fd:
                    os.close(out)
    finally:
        temp.unlink(missing_ok=True)


@contextmanager
def atomic_folder_files(targets: dict[str, Path]) -> Iterator[dict[str, Path]]:
    """Several artefacts written together: {key: temporary path}. None lands unless the block
    succeeds; then each is fsynced and renamed into place in the dict's order, so the last (a
    manifest naming the others) lands after all of them. A symlink is written through."""
    for target in targets.values():
        check_target(target)
    reals = {key: written_through(target) for key, target in targets.items()}
    # Hidden names in each target's folder (same file system: the rename is atomic) that keep
    # the suffix (Keras, matplotlib and onnxruntime pick the format from it).
    temps = {key: real.with_name(f".{real.stem}.partial-{os.urandom(4).hex()}{real.suffix}")
             for key, real in reals.items()}
    try:
        try:
            yield temps
        except OSError as e:  # name the artefact, not its temporary name; else the one target, or their folder
            first = next(iter(targets.values()))
            failed = {str(temp): targets[key] for key, temp in temps.items()}.get(
                os.fsdecode(e.filename) if e.filename else "", first if len(targets) == 1 else first.parent)
            raise write_error(failed, e) from e
        for key, target in targets.items():
            with writing(target):
                _fsync(temps[key])
        for key, target in targets.items():
            with writing(target):
                os.replace(temps[key], reals[key])
        for folder in {real.parent for real in reals.values()}:
            with suppress(OSError):  # a folder some file systems cannot open or sync: the rename is still atomic
                _fsync(folder)
    finally:
        for temp in temps.values():
            with suppress(OSError):
                temp.unlink(missing_ok=True)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
