"""The local engine: items in, rows out, in input order, streaming, so memory does not grow with the inputs.

Image blocks go to worker processes (batch/workers.py), or are done here when there are few; arrays are classified
here, a model call per core side by side. When the workers start, and how a wait hears that the run is to stop:
docs/decisions.md, "Per-image work in worker processes".
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
from digits.batch.workers import BLOCK_NAME_CHARS, WorkerPool
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
    """Classify every item (a list, or a stream consumed once), writing its rows in order as soon as they are known.

    `advance(n)`: n more items are done. `stop()`: asked between blocks and while waiting, ends the run
    early with every written row whole. `done` (--resume): sources whose items and array rows are in the
    output already, passed over and counted by advance. `workers`: processes for image blocks (under 2:
    none). `model_calls`: array chunks in the model at once, each on its own thread (give a classifier
    with one onnxruntime thread, and one call per core)."""
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

    def _images(self, paths: list[str]) -> None:
        """Blocks go to the workers once enough wait to repay starting them; until then they are done here."""
        if self.pool is not None:
            self._submit(paths)
            return
        self.waiting.append(paths)
        if self.workers >= 2 and len(self.waiting) * IMAGE_BLOCK >= POOL_THRESHOLD:
            self.pool = WorkerPool(self.workers, self.classifier, self.invert, self.writer.format)
            for waiting in self.waiting:
                self._submit(waiting)
            self.waiting.clear()

    def _submit(self, paths: list[str]) -> None:
        if len(self.pool) >= self.pool.capacity:
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

    def _failed(self, source: str, error: str) -> None:
        self.writer.write(self.writer.format.failed(source, error))
        self.summary.failed += 1
        self.advance(1)

    def _array(self, path: str, done: Done | None) -> None:
        if done is not None and done.take(path):  # the whole array failed before: its row is kept
            self.advance(1)
            return
        try:
            for first_row, future, rows in self._predicted(DigitArray(path), done.array_rows(path) if done else None):
                block = self._wait(future)
                if block is None:
                    return
                if rows is None:
                    self.writer.write(self.writer.format.array_rows(path, first_row, block))
                else:  # --resume: only some rows of this chunk were still to do
                    self.writer.write(self.writer.format.rows([f"{path}#{i}" for i in rows.tolist()], block))
                self.summary.add(count_rows(block, None, self.writer.format))
                self.advance(len(block.probabilities))
        except ArrayError as e:
            # A bad header or bad float values are found before the first block, so the array gets this one row; a file
            # cut short while being read keeps every row before the cut, and this row says where it was.
            self._failed(path, str(e))

    def _predicted(self, array: DigitArray, finished: np.ndarray | None) -> Iterator:
        """(first row, future of its block.Predicted, row numbers or None when they run on from the first) for
        each chunk of `array` still to classify (`finished`: rows already in the output), in order. Up to
        model_calls chunks are in the model at once, on their own threads (onnxruntime releases the GIL),
        at most model_calls + 1 held. A read that fails comes after the chunks before it."""
        pending: deque = deque()
        failure = None
        try:
            for begin, chunk in array.chunks(self.batch_size):
                if self.stop():
                    break
                rows = np.arange(begin, begin + len(chunk))
                todo = None if finished is None else np.isin(rows, finished, assume_unique=True, invert=True)
                if todo is None or todo.all():
                    rows = None
                else:
                    self.advance(int(len(todo) - todo.sum()))  # rows already in the output
                    chunk, rows = chunk[todo], rows[todo]
                    if not len(rows):
                        continue
                pending.append((begin, self._model_thread.submit(predict, self.classifier, chunk), rows))
                if len(pending) > self.model_calls:
                    yield pending.popleft()
        except ArrayError as e:
            failure = e
        yield from pending
        if failure is not None:
            raise failure


def _blocks(entries: Iterable[Item | ImageRun], done: Done | None):
    """Consecutive images in blocks of at most IMAGE_BLOCK paths (and BLOCK_NAME_CHARS characters of
    names, so a block fits a worker's slot); arrays and errors one by one, order kept. With `done`,
    images and errors that already have a row are left out, and counted: an int for each run of them."""
    images: list[str] = []
    for entry in entries:
        if isinstance(entry, list | ImageItem):
            paths = entry if isinstance(entry, list) else [entry.source]
            if done is not None:
                todo = [path for path in paths if not done.take(path)]
                if len(todo) < len(paths):
                    yield len(paths) - len(todo)
                paths = todo
            images += paths
            yield from _cut(images, final=False)
        elif done is not None and isinstance(entry, ErrorItem) and done.take(entry.source):
            yield 1
        else:
            yield from _cut(images, final=True)
            yield entry
    yield from _cut(images, final=True)


def _cut(images: list[str], final: bool):
    """Whole blocks off the front of `images` (all of them when `final`). A name longer than a block's
    room cannot be opened anyway (the system's limit is far below): it is an error item."""
    while len(images) >= IMAGE_BLOCK or final and images:
        n = min(len(images), IMAGE_BLOCK)
        if sum(map(len, images[:n])) + n > BLOCK_NAME_CHARS:
            fits = bisect.bisect_right(list(accumulate(len(path) + 1 for path in images[:n])), BLOCK_NAME_CHARS)
            if fits == 0:
                yield ErrorItem(images.pop(0), "cannot read: File name too long")
                continue
            n = fits
        yield images[:n]
        del images[:n]
