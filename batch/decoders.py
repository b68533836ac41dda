"""Worker processes that read and decode blocks of image files into shared memory.

The parent writes a block's paths into a slot of an anonymous shared mapping and
puts the slot's number on a task pipe that all workers read; whichever worker is
free takes it, writes the block's digits into the slot's part of a second
shared mapping and sends back only the slot and its errors (usually none).

Why so: measured on 10,000 28x28 PNGs against the ProcessPoolExecutor this
replaces, that one pickled every [256, 28, 28] block through a pipe, woke a
manager thread for each task and result, and the parent spent about as much CPU
on that traffic as on running the model. A queue per worker then left one
worker idle for the last 13-20 ms of a 150 ms run while the other still had
blocks queued; the shared queue does not. A task is 4 bytes: pipe writes that
small are atomic, so any number of workers read one pipe without a lock (a
lock held by a worker that is killed would stop the others).

Workers are forked, so they inherit OpenCV already imported. Each worker keeps
only its own pipe ends: when the parent dies, even by SIGKILL, every worker
reads end-of-file on the task pipe and exits.
"""

import errno
import fcntl
import mmap
import multiprocessing
import multiprocessing.connection
import multiprocessing.util
import os
import pickle
import signal
import sys
from collections import deque
from contextlib import contextmanager
from stat import S_ISREG

import numpy as np

from batch.decode import MNIST_SIZE, decode_digits
from batch.run import MAX_FILE_BYTES
from digits.errors import DigitsError
from digits.files import PathError, open_regular

BLOCK = 256  # images per task
# A slot's paths, NUL-separated: room for BLOCK paths of up to PATH_MAX bytes each.
_PATH_MAX = os.pathconf("/", "PC_PATH_MAX") if hasattr(os, "pathconf") else 4096
_PATH_AREA = BLOCK * _PATH_MAX + 8
_TASK = 4  # bytes: a slot number
_FS_ENCODING, _FS_ERRORS = sys.getfilesystemencoding(), sys.getfilesystemencodeerrors()  # os.fsencode's
READ_AHEAD = 64 * 1024  # one read takes a digit image whole
_PIXELS = MNIST_SIZE * MNIST_SIZE
_PIPE_BYTES = 1 << 20  # big pipes: neither side ever blocks on a full pipe while the other waits
# The task pipes' write ends of this process's open pools. A worker closes them all: one
# forked for a second pool held the first pool's open, and that pool's workers then
# never read end-of-file (closing the first pool waited 5 s per worker, then killed them).
_TASK_WRITERS: set[int] = set()




def read_file(path: str) -> bytes | str:
    """A file's bytes, or why they could not be had.

    Nothing here blocks: the open is O_NONBLOCK, so a FIFO (the walk already turns
    those into error rows; this is for one swapped in since) reads as empty at once.
    One read takes a digit image whole; the file is checked to be a regular file,
    and its size against the cap, only when that read came back empty, full or
    refused: an fstat on every file cost ~1.3 us, a tenth of a 28x28 PNG's decode.
    """
    try:
        # os-level calls: half the cost of open()/read() on small files (measured).
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        try:
            try:
                data = os.read(fd, READ_AHEAD)
            except BlockingIOError:  # a terminal or such, with nothing to read
                return _not_regular(path)
            if 0 < len(data) < READ_AHEAD:
                return data
            st = os.fstat(fd)
            if not S_ISREG(st.st_mode):
                return _not_regular(path)
            if not data:
                return data  # an empty file: decode_digit says so
            if st.st_size > MAX_FILE_BYTES:  # checked before reading a large file whole
                return f"file larger than {MAX_FILE_BYTES // 2**20} MiB"
            return data + os.read(fd, st.st_size + 1 - len(data))
        finally:
            os.close(fd)
    except IsADirectoryError:
        return _not_regular(path)
    except OSError as e:
        return f"cannot read: {e.strerror or e}"


def _not_regular(path: str) -> str:
    """open_regular's words for what `path` is."""
    try:
        os.close(open_regular(path))
    except PathError as e:
        return str(e)
    except OSError as e:
        return f"cannot read: {e.strerror or e}"
    return "changed while being read"


def decode_files(paths: list, invert: str, out: np.ndarray | None = None) -> tuple[np.ndarray, list[str | None]]:
    """Read and decode image files in this process: (uint8 [N, 28, 28] digits, errors),
    errors[i] saying why file i could not be had (its digit is then zeros), else None.
    What each worker does with a block; for engines that run their own workers."""
    if _in_worker:
        return decode_digits([read_file(path) for path in paths], invert, out=out)
    with _libpng_silenced():
        return decode_digits([read_file(path) for path in paths], invert, out=out)


_in_worker = False  # a decoder process: its stderr is /dev/null for good (_serve)


@contextmanager
def _libpng_silenced():
    """stderr (descriptor 2) is /dev/null while images decode: libpng prints its own
    "libpng error: ..." lines for a corrupt PNG there, whatever --quiet says, and the
    file's error row already tells it. Three system calls a block."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 2)
        os.close(null)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class DecoderDied(DigitsError):
    """A worker process ended while it had work (killed from outside, or crashed)."""


class DecodersNotStarted(DigitsError):
    """The worker processes could not be started (a limit on open files or processes)."""


def _widen(fd: int) -> None:
    try:
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, _PIPE_BYTES)
    except OSError:  # an unprivileged process may be capped lower; the default still works
        pass


class DecodePool:
    """`workers` processes decoding blocks of at most BLOCK image paths, results in submission order.

    submit(paths) while not full(); take() gives the oldest block back as
    (paths, uint8 [n, 28, 28] digits, errors or None). The digits are a view
    into shared memory, valid until the next take().
    """

    def __init__(self, workers: int, invert: str, ahead: int = 6):
        context = multiprocessing.get_context("fork")
        self.capacity = workers * ahead
        slots = self.capacity + 1  # + the block the caller holds from its last take()
        # MAP_SHARED and anonymous: the parent writes paths, children write digits. Pages
        # are only resident once touched: a path area is mostly never touched.
        self._digits_memory = mmap.mmap(-1, slots * BLOCK * _PIXELS)
        self._paths_memory = mmap.mmap(-1, slots * _PATH_AREA)
        self._slots = np.frombuffer(self._digits_memory, np.uint8).reshape(slots, BLOCK, MNIST_SIZE, MNIST_SIZE)
        self._free = list(range(slots))
        self._held: int | None = None
        self._queue: deque = deque()  # (slot, paths), oldest first
        self._decoded: dict[int, bytes] = {}  # slot -> result message, for blocks done out of turn
        try:
            task_read, self._tasks = os.pipe()
        except OSError as e:  # out of file descriptors (ulimit -n)
            raise DecodersNotStarted(f"cannot start the image decoder processes: {e.strerror or e}") from e
        _widen(self._tasks)
        _TASK_WRITERS.add(self._tasks)
        self._processes = []
        results: list = []
        try:
            results += [context.Pipe(duplex=False) for _ in range(workers)]
            for _, result_out in results:
                _widen(result_out.fileno())
                others = [end for pipe in results for end in pipe if end is not result_out]
                process = context.Process(
                    target=_serve, daemon=True,
                    args=(task_read, result_out, others, self._paths_memory, self._digits_memory, invert),
                )
                process.start()
                self._processes.append(process)
        except OSError as e:  # out of file descriptors or processes: the workers started end, or the
            os.close(task_read)  # exit would wait for them forever (they ignore its SIGTERM)
            _close(self._tasks, [end for pipe in results for end in pipe], self._processes)
            raise DecodersNotStarted(f"cannot start the image decoder processes: {e.strerror or e}") from e
        os.close(task_read)
        self._results = {result_in: i for i, (result_in, _) in enumerate(results)}
        for _, result_out in results:
            result_out.close()
        # Closed at exit if the owner never closes it: multiprocessing's own exit hook
        # joins every child, and the workers ignore its SIGTERM, so without this an
        # unclosed pool hung the process at exit (seen). Finalizers with a priority
        # run before that join. A Finalize runs once: close() goes through it too, so
        # the exit does not close the pipe's number again (by then perhaps another file's).
        self._close = multiprocessing.util.Finalize(
            self, _close, args=(self._tasks, list(self._results), self._processes), exitpriority=0)

    def full(self) -> bool:
        return len(self._queue) >= self.capacity

    def __len__(self) -> int:
        return len(self._queue)

    def submit(self, paths: list) -> None:
        slot = self._free.pop()
        names = _encoded(paths)
        area = slot * _PATH_AREA
        self._paths_memory[area : area + 4] = len(names).to_bytes(4, "little")
        self._paths_memory[area + 4 : area + 4 + len(names)] = names
        try:
            os.write(self._tasks, slot.to_bytes(_TASK, "little"))
        except OSError as e:
            raise self._died(paths) from e
        self._queue.append((slot, paths))

    def take(self) -> tuple[list, np.ndarray, list | None]:
        if self._held is not None:
            self._free.append(self._held)
            self._held = None
        slot, paths = self._queue.popleft()
        while slot not in self._decoded:
            for conn in multiprocessing.connection.wait(list(self._results)):
                try:
                    message = conn.recv_bytes()
                except (EOFError, OSError) as e:
                    raise self._died(paths, self._results[conn]) from e
                self._decoded[int.from_bytes(message[:_TASK], "little")] = message[_TASK:]
        errors = self._decoded.pop(slot)
        self._held = slot
        return paths, self._slots[slot, : len(paths)], pickle.loads(errors) if errors else None

    def _died(self, paths: list, worker: int | None = None) -> DecoderDied:
        """`worker`: the one whose result pipe ended; None: the task pipe has no reader left."""
        ended = [self._processes[worker]] if worker is not None else self._processes
        for process in ended:
            process.join(timeout=1)
        codes = [process.exitcode for process in ended if process.exitcode is not None]
        code = f" (exit code {codes[0]})" if codes else ""
        return DecoderDied(f"an image decoder process ended{code} before {paths[0]} ... {paths[-1]} were "
                           "decoded; the rows written so far are whole (--resume continues)")

    def close(self) -> None:
        """Stop the workers: each ends after the block in hand, told by end-of-file."""
        self._close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def _encoded(paths: list[str]) -> bytes:
    """Paths as the bytes the OS gets, NUL-separated; one too long to be opened goes as b""
    (the worker says why). One encode for the whole block: per path it cost ~0.4 us."""
    names = "\0".join(paths).encode(_FS_ENCODING, _FS_ERRORS)
    if len(names) < _PATH_MAX:  # no path can be too long
        return names
    return b"\0".join(name if len(name) < _PATH_MAX else b"" for name in names.split(b"\0"))


def _close(tasks: int, connections: list, processes: list) -> None:
    _TASK_WRITERS.discard(tasks)
    try:
        os.close(tasks)
    except OSError:  # closed already
        pass
    for conn in connections:
        conn.close()
    for process in processes:
        process.join(timeout=5)
        if process.is_alive():
            process.kill()
            process.join()


def _serve(task_read: int, results, inherited, paths_memory, digits_memory, invert) -> None:
    # Ctrl-C, or a SIGTERM to the process group, reaches the workers too; only the
    # parent decides what stops, and then ends them by closing the task pipe.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # A worker's findings go back as error rows; what libpng prints for a corrupt PNG
    # ("libpng error: ..."), on stderr whatever --quiet says, goes nowhere.
    global _in_worker
    _in_worker = True
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    os.close(null)
    for fd in _TASK_WRITERS:  # this pool's task pipe's write end, and any other open pool's:
        os.close(fd)  # holding the parent's end would hide the parent's exit
    for conn in inherited:  # others' pipe ends, likewise
        conn.close()
    slots = np.frombuffer(digits_memory, np.uint8).reshape(-1, BLOCK, MNIST_SIZE, MNIST_SIZE)
    while True:
        try:
            task = os.read(task_read, _TASK)
        except OSError:
            return
        if len(task) != _TASK:  # end-of-file: the parent closed the pool, or died
            return
        slot = int.from_bytes(task, "little")
        area = slot * _PATH_AREA
        size = int.from_bytes(paths_memory[area : area + 4], "little")
        paths = paths_memory[area + 4 : area + 4 + size].decode(_FS_ENCODING, _FS_ERRORS).split("\0")
        _, errors = decode_files(paths, invert, out=slots[slot, : len(paths)])
        if "" in paths:  # paths too long to open (_encoded)
            errors = [e if path else f"cannot read: {os.strerror(errno.ENAMETOOLONG)}" for path, e in zip(paths, errors)]
        message = task + (pickle.dumps(errors) if any(e is not None for e in errors) else b"")
        try:
            results.send_bytes(message)
        except OSError:  # the parent is gone
            return
