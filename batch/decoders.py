"""Worker processes that read and decode blocks of image files into shared memory.

The parent sends each worker a block of paths and a slot number; the worker
writes the block's digits into that slot of an anonymous shared mapping and
sends back only the errors (usually none). Measured on 10,000 28x28 PNGs
against the ProcessPoolExecutor this replaces: that one pickled every
[256, 28, 28] block through a pipe, woke a manager thread for each task and
result, and the parent spent about as much CPU on that traffic as on running
the model; here the parent's share is the model and the rows.

Workers are forked, so they inherit OpenCV already imported. Each worker
keeps only its own two pipe ends: when the parent dies, even by SIGKILL, every
worker reads end-of-file on its task pipe and exits.
"""

import fcntl
import mmap
import multiprocessing
import multiprocessing.util
import os
import pickle
import signal
from collections import deque
from stat import S_ISREG

import numpy as np

from batch.decode import MNIST_SIZE, decode_digits
from batch.run import MAX_FILE_BYTES
from digits.errors import DigitsError
from digits.files import PathError, open_regular

BLOCK = 256  # images per task
READ_AHEAD = 64 * 1024  # one read takes a digit image whole
_PIXELS = MNIST_SIZE * MNIST_SIZE
_PIPE_BYTES = 1 << 20  # big pipes: neither side ever blocks on a full pipe while the other waits




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
    return decode_digits([read_file(path) for path in paths], invert, out=out)


class DecoderDied(DigitsError):
    """A worker process ended while it had work (killed from outside, or crashed)."""


def _widen(conn) -> None:
    try:
        fcntl.fcntl(conn.fileno(), fcntl.F_SETPIPE_SZ, _PIPE_BYTES)
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
        self._memory = mmap.mmap(-1, slots * BLOCK * _PIXELS)  # MAP_SHARED: children write, parent reads
        self._slots = np.frombuffer(self._memory, np.uint8).reshape(slots, BLOCK, MNIST_SIZE, MNIST_SIZE)
        self._free = list(range(slots))
        self._held: int | None = None
        self._queue: deque = deque()  # (worker, slot, paths), oldest first
        self._busy = [0] * workers
        pipes = [(context.Pipe(duplex=False), context.Pipe(duplex=False)) for _ in range(workers)]
        everything = [end for pair in pipes for pipe in pair for end in pipe]
        self._processes = []
        for (task_in, task_out), (_, result_out) in pipes:
            for conn in (task_out, result_out):
                _widen(conn)
            keep = (task_in, result_out)
            process = context.Process(
                target=_serve, daemon=True,
                args=(task_in, result_out, [c for c in everything if c not in keep], self._memory, invert),
            )
            process.start()
            self._processes.append(process)
        self._tasks = [task_out for (_, task_out), _ in pipes]
        self._results = [result_in for _, (result_in, _) in pipes]
        for (task_in, _), (_, result_out) in pipes:
            task_in.close()
            result_out.close()
        # Closed at exit if the owner never closes it: multiprocessing's own exit hook
        # joins every child, and the workers ignore its SIGTERM, so without this an
        # unclosed pool hung the process at exit (seen). Finalizers with a priority
        # run before that join.
        multiprocessing.util.Finalize(self, _close, args=(self._tasks + self._results, self._processes),
                                      exitpriority=0)

    def full(self) -> bool:
        return len(self._queue) >= self.capacity

    def __len__(self) -> int:
        return len(self._queue)

    def submit(self, paths: list) -> None:
        worker = min(range(len(self._busy)), key=self._busy.__getitem__)  # the least loaded
        slot = self._free.pop()
        try:
            self._tasks[worker].send_bytes(pickle.dumps((slot, paths), pickle.HIGHEST_PROTOCOL))
        except OSError as e:
            raise self._died(worker, paths) from e
        self._busy[worker] += 1
        self._queue.append((worker, slot, paths))

    def take(self) -> tuple[list, np.ndarray, list | None]:
        if self._held is not None:
            self._free.append(self._held)
        worker, slot, paths = self._queue.popleft()
        try:
            message = self._results[worker].recv_bytes()
        except (EOFError, OSError) as e:
            raise self._died(worker, paths) from e
        self._busy[worker] -= 1
        self._held = slot
        return paths, self._slots[slot, : len(paths)], pickle.loads(message) if message else None

    def _died(self, worker: int, paths: list) -> DecoderDied:
        self._processes[worker].join(timeout=1)
        return DecoderDied(f"an image decoder process ended (exit code {self._processes[worker].exitcode}) "
                           f"with {paths[0]} ... {paths[-1]} in hand; the rows written so far are whole "
                           "(--resume continues)")

    def close(self) -> None:
        """Stop the workers: each ends after the block in hand, told by end-of-file."""
        _close(self._tasks + self._results, self._processes)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def _close(connections: list, processes: list) -> None:
    for conn in connections:
        conn.close()
    for process in processes:
        process.join(timeout=5)
        if process.is_alive():
            process.kill()
            process.join()


def _serve(tasks, results, inherited, memory, invert) -> None:
    # Ctrl-C, or a SIGTERM to the process group, reaches the workers too; only the
    # parent decides what stops, and then ends them by closing their pipes.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    for conn in inherited:  # others' pipe ends: holding them would hide the parent's exit
        conn.close()
    slots = np.frombuffer(memory, np.uint8).reshape(-1, BLOCK, MNIST_SIZE, MNIST_SIZE)
    while True:
        try:
            slot, paths = pickle.loads(tasks.recv_bytes())
        except (EOFError, OSError):
            return
        _, errors = decode_files(paths, invert, out=slots[slot, : len(paths)])
        try:
            results.send_bytes(pickle.dumps(errors) if any(e is not None for e in errors) else b"")
        except OSError:  # the parent is gone
            return
