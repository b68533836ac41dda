"""Worker processes that each read, decode, classify and format blocks of image files (block.classify_block) with the
parent's one-thread model session as the fork leaves it; the parent hands out blocks and writes their rows in order
(docs/decisions.md, "Per-image work in worker processes").

A task is a 4-byte slot number (the slot holds a block's paths in a shared mapping) on one pipe that all workers read:
pipe writes that small are atomic, so no lock is needed (one held by a killed worker would stop the others), and no
worker idles while another has blocks queued. Each worker keeps only its own pipe ends, so when the parent dies, even
by SIGKILL, every worker reads end-of-file and exits.
"""

import contextlib
import errno
import mmap
import multiprocessing
import multiprocessing.connection
import multiprocessing.util
import os
import signal
import sys
from collections import deque
from collections.abc import Callable
from pathlib import Path

import numpy as np

from digits.batch.block import BlockRows, classify_block
from digits.batch.classifier import Classifier
from digits.batch.cores import MAX_WORKERS
from digits.batch.formats import RowFormat
from digits.batch.model import load_classifier
from digits.core.contract import IMAGE_BLOCK, IMAGE_SIZE
from digits.core.errors import DigitsError, ModelError
from digits.core.files import to_devnull
from digits.core.memory import address_space_limit, limit_words

# A slot's paths, NUL-separated and UTF-8 (surrogateescape): a block is cut by the walk before its names pass
# BLOCK_NAME_CHARS characters (batch/run.py), and a character is at most 4 bytes, so a block always fits its slot.
BLOCK_NAME_CHARS = 64 * 1024
_PATH_AREA = 4 * BLOCK_NAME_CHARS + 4
_TASK = 4  # bytes: a slot number
_FS_ENCODING, _FS_ERRORS = sys.getfilesystemencoding(), sys.getfilesystemencodeerrors()  # os.fsencode's
_POLL_SECONDS = 0.1  # how often a wait for results looks whether the run was asked to stop
# The task pipes' write ends of this process's open pools: a worker closes them all (one
# forked for a second pool that held the first's would keep that pool's workers alive).
_TASK_WRITERS: set[int] = set()


class WorkerDied(DigitsError):
    """A worker process ended while it had work (killed from outside, or crashed)."""


class WorkersNotStarted(DigitsError):
    """The worker processes could not be started (a limit on open files or processes)."""


class WorkerPool:
    """`workers` processes classifying blocks of at most IMAGE_BLOCK image paths: submit(paths) while fewer than
    `capacity` are held; take() gives the oldest block back as (paths, BlockRows), in submission order."""

    def __init__(self, workers: int, model: Classifier | Path, invert: str, row_format: RowFormat, ahead: int = 4):
        """`model`: the classifier the caller loaded and checked (each worker uses its forked()), or a
        model's path, which each worker loads. `ahead`: blocks queued per worker, so none waits.
        One worker is started here (WorkersNotStarted if it cannot be); the others one per submit(), so
        the first blocks are classified while the rest are forked (64 forks at once held the first block
        back). A worker that cannot be started for want of processes or descriptors leaves the pool as it is."""
        self._context = multiprocessing.get_context("fork")
        self._wanted, self._serving = min(workers, MAX_WORKERS), (model, invert, row_format)
        self.capacity = self._wanted * ahead  # the shared mapping: what the run may use, not any number asked
        # MAP_SHARED and anonymous: the parent writes paths, the workers read them. Pages
        # are only resident once touched, and a slot's area is mostly never touched.
        try:  # out of address space (ulimit -v), or of file descriptors (ulimit -n)
            self._paths_memory = mmap.mmap(-1, self.capacity * _PATH_AREA)
            task_read, self._tasks = os.pipe()
        except OSError as e:
            raise _not_started(e) from e
        self._free = list(range(self.capacity))
        self._queue: deque = deque()  # (slot, paths), oldest first
        self._done: dict[int, BlockRows | str] = {}  # slot -> its rows or why it failed, done out of turn
        _TASK_WRITERS.add(self._tasks)
        self._reader = [task_read]  # held until every worker has its copy
        self._processes: list = []
        self._results: dict = {}  # result pipe -> worker index
        # Closed at exit if the owner never closes it: multiprocessing's own exit hook joins every child, and the
        # workers ignore its SIGTERM, so an unclosed pool would hang the process at exit. Finalizers with a priority run
        # before that join. A Finalize runs once: close() goes through it too, so the exit does not close the pipe's
        # number again (by then perhaps another file's).
        self._kill = [False]  # read by _close when it runs: close(kill=True) sets it
        self._close = multiprocessing.util.Finalize(
            self, _close, args=(self._tasks, self._results, self._processes, self._reader, self._kill), exitpriority=0)
        try:
            self._start_worker()
        except OSError as e:
            self.close(kill=True)
            raise _not_started(e) from e

    def _start_worker(self) -> None:
        """Fork one more worker. OSError (out of processes or descriptors) leaves nothing behind."""
        result_in, result_out = self._context.Pipe(duplex=False)
        try:
            process = self._context.Process(target=_serve, daemon=True, args=(
                self._reader[0], result_out, [*self._results, result_in], self._paths_memory, *self._serving))
            process.start()
        except BaseException:
            result_in.close()
            result_out.close()
            raise
        result_out.close()
        self._results[result_in] = len(self._processes)
        self._processes.append(process)
        if len(self._processes) == self._wanted:
            os.close(self._reader.pop())

    @property
    def workers(self) -> int:
        """Worker processes started so far."""
        return len(self._processes)

    def __len__(self) -> int:
        return len(self._queue)

    def submit(self, paths: list[str]) -> None:
        if self._reader:  # not every worker started yet
            try:
                self._start_worker()
            except OSError:  # out of processes or descriptors: the pool stays at its size
                os.close(self._reader.pop())
        slot = self._free.pop()
        # One encode for the whole block (one per path cost more than the walk of a file).
        names = "\0".join(paths).encode(_FS_ENCODING, _FS_ERRORS)
        area = slot * _PATH_AREA
        self._paths_memory[area : area + 4] = len(names).to_bytes(4, "little")
        self._paths_memory[area + 4 : area + 4 + len(names)] = names
        try:
            os.write(self._tasks, slot.to_bytes(_TASK, "little"))
        except OSError as e:
            raise self._died(paths) from e
        self._queue.append((slot, paths))

    def take(self, stop: Callable[[], bool] = lambda: False) -> tuple[list[str], BlockRows] | None:
        """The oldest block's rows; None when `stop()` turned true while waiting for them
        (asked every _POLL_SECONDS: a slow model must not hold up Ctrl-C)."""
        slot, paths = self._queue[0]
        while slot not in self._done:
            ready = multiprocessing.connection.wait(list(self._results), timeout=_POLL_SECONDS)
            if not ready and stop():
                return None
            for conn in ready:
                try:
                    done, result = conn.recv()
                except (EOFError, OSError) as e:
                    raise self._died(paths, self._results[conn]) from e
                self._done[done] = result
        self._queue.popleft()
        self._free.append(slot)
        result = self._done.pop(slot)
        if isinstance(result, str):
            raise ModelError(result)
        return paths, result

    def _died(self, paths: list, worker: int | None = None) -> WorkerDied:
        """`worker`: the one whose result pipe ended; None: the task pipe has no reader left."""
        ended = [self._processes[worker]] if worker is not None else self._processes
        for process in ended:
            process.join(timeout=1)
        codes = [process.exitcode for process in ended if process.exitcode is not None]
        code = f" (exit code {codes[0]})" if codes else ""
        return WorkerDied(f"a worker process ended{code} before {paths[0]} ... {paths[-1]} were "
                          f"classified{_memory_limit_hint()}; the rows written so far are whole (--resume continues)")

    def close(self, kill: bool = False) -> None:
        """Stop the workers: each ends after the block in hand, told by end-of-file; with
        `kill` (the run was interrupted: their blocks' rows will not be written) at once."""
        if kill:
            self._kill[0] = True
        self._close()


def _not_started(e: OSError) -> WorkersNotStarted:
    memory = _memory_limit_hint() if e.errno in (errno.ENOMEM, errno.EAGAIN) else ""
    return WorkersNotStarted(f"cannot start the worker processes: {e.strerror or e}{memory}")


def _memory_limit_hint() -> str:
    """Under an address-space limit, the likely reason a worker could not start or died:
    a library's allocation that failed where no Python code sees it."""
    return f" ({limit_words()} is likely too low)" if address_space_limit() is not None else ""


def _close(tasks: int, connections, processes: list, reader: list, kill: list[bool]) -> None:
    _TASK_WRITERS.discard(tasks)
    while reader:  # the task pipe's read end, still held for workers not yet started
        os.close(reader.pop())
    if kill[0]:
        for process in processes:
            process.kill()  # a process that has ended already is left alone
    with contextlib.suppress(OSError):  # closed already
        os.close(tasks)
    for conn in list(connections):
        conn.close()
    for process in processes:
        process.join(timeout=5)
        process.kill()  # still running after 5 s
        process.join()


def _serve(task_read: int, results, inherited, paths_memory, model, invert: str, row_format: RowFormat) -> None:
    # Ctrl-C, or a SIGTERM to the process group, reaches the workers too; only the
    # parent decides what stops, and then ends them.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    for fd in _TASK_WRITERS:  # this pool's task pipe's write end, and any other open pool's:
        os.close(fd)  # holding the parent's end would hide the parent's exit
    for conn in inherited:  # others' pipe ends, likewise
        conn.close()
    to_devnull(2)  # libpng's lines for a corrupt PNG, whatever --quiet says: the file's error row says it
    classifier, failure = None, None
    try:  # the parent's session as the fork left it, or the model at a path, loaded here
        classifier = load_classifier(model, threads=1, spin=False) if isinstance(model, str | os.PathLike) \
            else model.forked()
    except DigitsError as e:  # the parent loaded it a moment ago: the file changed, or memory ran out
        failure = str(e)
    digits = np.zeros((IMAGE_BLOCK, IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    while True:
        task = os.read(task_read, _TASK)
        if len(task) != _TASK:  # end-of-file: the parent closed the pool, or died
            return
        slot = int.from_bytes(task, "little")
        area = slot * _PATH_AREA
        size = int.from_bytes(paths_memory[area : area + 4], "little")
        paths = paths_memory[area + 4 : area + 4 + size].decode(_FS_ENCODING, _FS_ERRORS).split("\0")
        try:  # the block's rows, or why it failed
            result = failure if failure is not None else classify_block(paths, invert, classifier, row_format,
                                                                        out=digits[: len(paths)])
        except DigitsError as e:
            result = str(e)
        except MemoryError:
            result = f"a worker process ran out of memory classifying {paths[0]} ... {paths[-1]}{_memory_limit_hint()}"
        try:
            results.send((slot, result))
        except OSError:  # the parent is gone
            return

