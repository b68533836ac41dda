"""The local engine: items in, rows out, in input order, streaming.

Items arrive as a stream (a folder's files as the walk lists them), so memory
does not grow with the number of inputs. Image files go in blocks to worker
processes (batch/workers.py) that read, decode, classify and format them; a run
with few images does its blocks itself, where starting workers would cost more.
Arrays are classified chunk by chunk in this process, one model call per core
side by side, so memory stays flat whatever the input size. With --resume,
items and array rows that already have a row are passed over.

Model calls made in this process run on a thread, and the wait for them (or for
a worker's rows) looks every 0.1 s whether the run was asked to stop: a slow
model must not hold up Ctrl-C.
"""

import bisect
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from itertools import accumulate

import numpy as np

from digits.batch.arrays import ArrayError, DigitArray
from digits.batch.block import BlockRows, classify_block, count_rows, predict
from digits.batch.classifier import Classifier
from digits.batch.inputs import ErrorItem, ImageItem, ImageRun, Item
from digits.batch.resume import Done
from digits.batch.summary import Summary
from digits.batch.writer import RowWriter
from digits.core.contract import IMAGE_BLOCK

# Workers start once this many images are waiting, counted in whole blocks (4 blocks of
# IMAGE_BLOCK: 769 images make 4 and start them).
POOL_THRESHOLD = 4 * IMAGE_BLOCK
_POLL_SECONDS = 0.1


def classify(items: Iterable[Item | ImageRun], classifier: Classifier, writer: RowWriter, invert: str = "auto",
             batch_size: int = 1024, workers: int = 2, model_calls: int = 1,
             advance: Callable[[int], None] = lambda n: None, stop: Callable[[], bool] = lambda: False,
             done: Done | None = None) -> Summary:
    """Classify every item, writing its row(s) as soon as they are known.

    `items` may be a list or a stream (consumed once, in order). `advance(n)` is
    told of each n items done (progress); `stop()` is asked between blocks and
    while waiting, and ends the run early, leaving every written row whole.
    `done` (from resume.resume_output, for --resume): sources already in the
    output; their items and array rows are passed over, and counted by advance.
    `workers`: processes for image blocks (fewer than 2: none, all in this
    process). `model_calls`: array chunks in the model at once, each on its own
    thread (give a classifier with one onnxruntime thread and one call per core).
    """
    return _LocalRun(classifier, writer, invert, batch_size, workers, model_calls, advance, stop).run(items, done)


class _LocalRun:
    def __init__(self, classifier: Classifier, writer: RowWriter, invert: str, batch_size: int, workers: int,
                 model_calls: int, advance: Callable[[int], None], stop: Callable[[], bool]):
        self.classifier, self.writer, self.invert = classifier, writer, invert
        self.batch_size, self.workers, self.model_calls = batch_size, workers, max(1, model_calls)
        self.advance, self.stop = advance, stop
        self.summary = Summary()
        self.pool = None
        self.waiting: list[list[str]] = []  # image blocks not yet sent anywhere (before the pool starts)

    def run(self, items: Iterable[Item | ImageRun], done: Done | None) -> Summary:
        if done is not None:
            self.summary.kept, self.summary.kept_failed = done.rows, done.failed
        start = time.perf_counter()
        self._model_thread = ThreadPoolExecutor(self.model_calls, thread_name_prefix="model")
        interrupted = True
        try:
            for block in _blocks(items, done):
                if self.stop():
                    break
                if isinstance(block, int):
                    self.advance(block)
                elif isinstance(block, list):
                    self._images(block)
                else:
                    self._flush()  # every image before this item has its row first
                    if self.stop():
                        break
                    if isinstance(block, ErrorItem):
                        self._failed(block.source, block.error)
                    else:
                        self._array(block.source, done)
            else:
                self._flush()
            interrupted = self.summary.interrupted = self.stop()
        finally:
            if interrupted:
                self.classifier.stop()  # calls under way end now; their rows are not written
            self._model_thread.shutdown(wait=not interrupted, cancel_futures=True)
            if self.pool is not None:
                self.pool.close(kill=interrupted)
        self.summary.workers = self.pool.workers if self.pool is not None else 0
        self.summary.seconds = time.perf_counter() - start
        return self.summary

    # Images: blocks to the workers, or done here while there are few.

    def _images(self, paths: list[str]) -> None:
        if self.pool is not None:
            self._submit(paths)
            return
        self.waiting.append(paths)
        if self.workers >= 2 and len(self.waiting) * IMAGE_BLOCK >= POOL_THRESHOLD:
            # Enough images to repay starting workers (batch.workers is already imported
            # by _blocks, for BLOCK_NAME_CHARS: what a run with few images saves is the forks).
            from digits.batch.workers import WorkerPool

            self.pool = WorkerPool(self.workers, self.classifier, self.invert, self.writer.format)
            for waiting in self.waiting:
                self._submit(waiting)
            self.waiting.clear()

    def _submit(self, paths: list[str]) -> None:
        if self.pool.full():
            self._write_taken(keep=self.pool.capacity - 1)
        if not self.stop():
            self.pool.submit(paths)

    def _write_taken(self, keep: int) -> None:
        """Write the pool's oldest blocks' rows until `keep` are left in it."""
        while len(self.pool) > keep and not self.stop():
            taken = self.pool.take(self.stop)
            if taken is None:
                return
            self._write_block(len(taken[0]), taken[1])

    def _flush(self) -> None:
        """Every image handed out so far gets its rows."""
        if self.pool is not None:
            self._write_taken(keep=0)
        for paths in self.waiting:
            rows = self._wait(self._model_thread.submit(classify_block, paths, self.invert, self.classifier,
                                                        self.writer.format))
            if rows is None:
                break
            self._write_block(len(paths), rows)
        self.waiting.clear()

    def _write_block(self, n: int, rows: BlockRows) -> None:
        self.writer.write(rows.text)
        self.summary.add(rows)
        self.advance(n)

    def _wait(self, future: Future):
        """The future's result; None if the run is asked to stop meanwhile."""
        while not wait([future], timeout=_POLL_SECONDS).done:
            if self.stop():
                return None
        return future.result()

    # Errors and arrays, in this process.

    def _failed(self, source: str, error: str) -> None:
        self.writer.write_failed(source, error)
        self.summary.failed += 1
        self.advance(1)

    def _array(self, path: str, done: Done | None) -> None:
        if done is not None and done.take(path):  # the whole array failed before: its row is kept
            self.advance(1)
            return
        try:
            work = _array_work(DigitArray(path), self.batch_size, self.stop,
                               done.array_rows(path) if done else None, self.advance)
            for first_row, future, rows in self._submitted(work):
                block = self._wait(future)
                if block is None:
                    return
                if rows is None:
                    self.writer.write_array_rows(path, first_row, block)
                else:  # --resume: only some rows of this chunk were still to do
                    self.writer.write_rows([f"{path}#{i}" for i in rows.tolist()], block)
                self.summary.add(count_rows(block, None, self.writer.format))
                self.advance(len(block.probabilities))
        except ArrayError as e:
            # A bad header or bad float values are found before the first block, so the
            # array gets this one row; a file cut short while being read keeps every row
            # before the cut, and this row says where it was.
            self._failed(path, str(e))

    def _submitted(self, work: Iterator) -> Iterator:
        """(tag, future of block.Predicted, extra) for each (tag, digits, extra) of `work`, in order,
        with up to model_calls in the model at once, each on its own thread (onnxruntime releases the
        GIL, so they run side by side while this thread reads the next chunk and writes rows). At most
        model_calls + 1 chunks are held, so memory stays flat whatever the array's size. When reading
        `work` fails, the chunks read before it still come out first."""
        pending: deque = deque()
        failure = None
        try:
            for tag, digits, extra in work:
                pending.append((tag, self._model_thread.submit(predict, self.classifier, digits), extra))
                if len(pending) > self.model_calls:
                    yield pending.popleft()
        except ArrayError as e:
            failure = e
        yield from pending
        if failure is not None:
            raise failure


def _array_work(array: DigitArray, batch_size: int, stop, finished: np.ndarray | None, advance):
    """(first row, digits, row numbers or None when the rows run on from the first) still to classify."""
    for begin, chunk in array.chunks(batch_size):
        if stop():
            return
        rows = np.arange(begin, begin + len(chunk))
        todo = None if finished is None else np.isin(rows, finished, assume_unique=True, invert=True)
        if todo is None or todo.all():
            yield begin, chunk, None
            continue
        advance(int(len(todo) - todo.sum()))  # rows already in the output
        if todo.any():
            yield begin, chunk[todo], rows[todo]


def _blocks(entries: Iterable[Item | ImageRun], done: Done | None):
    """Consecutive images grouped into blocks of at most IMAGE_BLOCK paths (and at most
    BLOCK_NAME_CHARS characters of names, so a block fits a worker's slot); arrays and
    errors one by one, order kept.

    With `done`, images and errors that already have a row are left out, and
    counted: an int is yielded for each run of them (for the progress bar).
    """
    from digits.batch.workers import BLOCK_NAME_CHARS

    images: list[str] = []
    passed = 0
    for entry in entries:
        if isinstance(entry, list | ImageItem):
            paths = entry if isinstance(entry, list) else [entry.source]
            if done is not None:
                todo = [path for path in paths if not done.take(path)]
                passed += len(paths) - len(todo)
                paths = todo
            if paths and passed:
                yield passed
                passed = 0
            images += paths
            yield from _cut(images, BLOCK_NAME_CHARS, final=False)
            continue
        if done is not None and isinstance(entry, ErrorItem) and done.take(entry.source):
            passed += 1
            continue
        if passed:
            yield passed
            passed = 0
        yield from _cut(images, BLOCK_NAME_CHARS, final=True)
        yield entry
    yield from _cut(images, BLOCK_NAME_CHARS, final=True)
    if passed:
        yield passed


def _cut(images: list[str], max_chars: int, final: bool):
    """Whole blocks off the front of `images` (all of them when `final`). A name longer
    than a block's room cannot be opened anyway (the system's limit is far below): it
    is an error item."""
    while len(images) >= IMAGE_BLOCK or final and images:
        n = min(len(images), IMAGE_BLOCK)
        if sum(map(len, images[:n])) + n > max_chars:
            fits = bisect.bisect_right(list(accumulate(len(path) + 1 for path in images[:n])), max_chars)
            if fits == 0:
                yield ErrorItem(images.pop(0), "cannot read: File name too long")
                continue
            n = fits
        yield images[:n]
        del images[:n]
