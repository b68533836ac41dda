"""The classify pipeline: items in, rows out, in input order, streaming.

Items arrive as a stream (a folder's files as the walk lists them), so memory
does not grow with the number of inputs. Images are read and decoded by worker
processes (batch/decoders.py), a few blocks ahead of the model. Threads were
measured and lose: a 28x28 PNG decodes in ~10 us, so the Python around it
dominates and two threads ran slower than one (GIL). Arrays are read with plain
file reads and classified chunk by chunk (batch/arrays.py), so memory stays
flat whatever the input size. With --resume, items and array rows that already
have a row are passed over.
"""

import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from batch.arrays import ArrayError, DigitArray
from batch.inputs import ArrayItem, ErrorItem, ImageItem, ImageRun, Item
from batch.model import OnnxClassifier
from batch.writer import Done, RowWriter

IMAGE_BLOCK = 256  # images per decode task
# Fewer images than this are decoded in-process: starting workers costs more.
POOL_THRESHOLD = 4 * IMAGE_BLOCK
MAX_FILE_BYTES = 64 * 1024 * 1024  # larger "images" are refused before reading them whole


@dataclass
class Summary:
    items: int = 0
    classified: int = 0
    failed: int = 0
    skipped: int = 0
    seconds: float = 0.0
    interrupted: bool = False
    kept: int = 0  # --resume: rows already in the output, kept as they were
    kept_failed: int = 0  # ... of which error rows
    per_label: np.ndarray = field(default_factory=lambda: np.zeros(10, np.int64))

    @property
    def digits_per_second(self) -> float:
        return self.classified / self.seconds if self.seconds > 0 else 0.0


def read_digit(path: str, invert: str) -> np.ndarray | str:
    """The digit in an image file, or why it could not be had."""
    from batch.decode import ImageError, decode_digit  # OpenCV: only for runs with images
    from batch.decoders import read_file

    data = read_file(path)
    if isinstance(data, str):
        return data
    try:
        return decode_digit(data, invert)
    except ImageError as e:
        return str(e)


def _blocks(entries: Iterable[Item | ImageRun], done: Done | None):
    """Consecutive images grouped into blocks of at most IMAGE_BLOCK paths; arrays and
    errors one by one, order kept.

    With `done`, images and errors that already have a row are left out, and
    counted: an int is yielded for each run of them (for the progress bar).
    """
    images: list[str] = []
    passed = 0
    for entry in entries:
        if isinstance(entry, list | ImageItem):
            paths = entry if isinstance(entry, list) else [entry.source]
            if done is not None:
                todo = [path for path in paths if not done.has(path)]
                passed += len(paths) - len(todo)
                paths = todo
            if paths and passed:
                yield passed
                passed = 0
            images += paths
            while len(images) >= IMAGE_BLOCK:
                yield images[:IMAGE_BLOCK]
                del images[:IMAGE_BLOCK]
            continue
        if done is not None and isinstance(entry, ErrorItem) and done.has(entry.source):
            passed += 1
            continue
        if passed:
            yield passed
            passed = 0
        if images:
            yield images
            images = []
        yield entry
    if images:
        yield images
    if passed:
        yield passed


def classify(
    items: Iterable[Item | ImageRun],
    classifier: OnnxClassifier,
    writer: RowWriter,
    invert: str = "auto",
    batch_size: int = 1024,
    workers: int = 2,
    model_calls: int = 1,
    advance: Callable[[int], None] = lambda n: None,
    stop: Callable[[], bool] = lambda: False,
    done: Done | None = None,
    pool=None,
) -> Summary:
    """Classify every item, writing its row(s) as soon as they are known.

    `items` may be a list or a stream (consumed once, in order). `advance(n)` is
    told of each n items done (progress); `stop()` is asked between blocks and
    ends the run early, leaving every written row whole. `done` (from
    writer.resume_output, for --resume): sources already in the output; their items
    and array rows are passed over, and counted by advance. `pool`: a
    decoders.DecodePool already started (the caller closes it); without one, a
    run with enough images starts its own. `model_calls`: how many chunks of an
    array are in the model at once, each call on its own thread (give a classifier
    with one onnxruntime thread and one call per core).
    """
    summary = Summary()
    if done is not None:
        summary.kept, summary.kept_failed = done.rows, done.failed
    start = time.perf_counter()

    def count(probabilities: np.ndarray, ok: np.ndarray | None = None) -> None:
        labels = probabilities.argmax(axis=1)
        summary.per_label += np.bincount(labels if ok is None else labels[ok], minlength=10)
        classified = len(labels) if ok is None else int(ok.sum())
        summary.classified += classified
        summary.failed += len(labels) - classified
        advance(len(labels))

    def emit_images(sources: list[str], digits: np.ndarray, errors: list[str | None] | None,
                    probabilities: np.ndarray | None = None) -> None:
        if probabilities is None:
            probabilities = classifier.predict(digits)
        if errors is not None and any(e is not None for e in errors):
            writer.write_rows(sources, probabilities, errors)
            count(probabilities, np.array([e is None for e in errors]))
        else:
            writer.write_rows(sources, probabilities)
            count(probabilities)

    def emit_array(path: str, first_row: int, probabilities: np.ndarray, rows: np.ndarray | None) -> None:
        if rows is None:
            writer.write_array_rows(path, first_row, probabilities)
        else:  # --resume: only some rows of this chunk were still to do
            writer.write_rows([f"{path}#{i}" for i in rows.tolist()], probabilities)
        count(probabilities)

    def fail(source: str, error: str) -> None:
        writer.write_failed(source, error)
        summary.failed += 1
        advance(1)

    own_pool = pool is None
    # A caller's pool may still hold blocks of an earlier run that stopped early: not this run's rows.
    while pool is not None and len(pool):
        pool.take()
    waiting: list[list[str]] = []  # image blocks not yet sent anywhere (before the pool starts)

    def decode_inline() -> None:
        if not waiting:
            return  # runs without images never import OpenCV
        from batch.decoders import decode_files

        for paths in waiting:
            if stop():
                break
            emit_images(paths, *decode_files(paths, invert))
        waiting.clear()

    def decoded(keep: int):
        from batch.decoders import DecoderDied

        while len(pool) > keep and not stop():
            try:
                yield pool.take()
            except DecoderDied:
                if stop():  # killed by the signal that is stopping the run: that block is not done
                    return
                raise

    def drain(keep: int) -> None:
        if keep or model_calls < 2:
            for block in decoded(keep):
                emit_images(*block)
            return
        # Emptying the pool (the walk is over, or an array comes next): the decoders
        # fall idle block by block, so the model takes their cores, one call per core
        # (the blocks are copied out of shared memory: take() reuses their slots).
        work = ((paths, digits.copy(), errors) for paths, digits, errors in decoded(0))
        for paths, probabilities, errors in _predicted(work, classifier.predict, model_calls):
            emit_images(paths, None, errors, probabilities)

    try:
        for block in _blocks(items, done):
            if stop():
                break
            if isinstance(block, int):
                advance(block)
                continue
            if isinstance(block, list):
                if pool is None:
                    waiting.append(block)
                    if workers < 2 or len(waiting) * IMAGE_BLOCK < POOL_THRESHOLD:
                        continue
                    # Enough images to repay starting workers; imported only now, so
                    # that runs without many images never load multiprocessing.
                    from batch.decoders import DecodePool

                    pool = DecodePool(workers, invert)
                    for paths in waiting:
                        pool.submit(paths)
                    waiting.clear()
                    continue
                if pool.full():
                    drain(keep=pool.capacity - 1)
                    if stop():
                        break
                pool.submit(block)
                continue
            if pool is not None:
                drain(keep=0)
            decode_inline()
            if stop():
                break
            if isinstance(block, ErrorItem):
                fail(block.source, block.error)
            elif isinstance(block, ArrayItem):
                _classify_array(block.source, batch_size, classifier, model_calls, emit_array, fail, stop, done,
                                advance)
        if pool is not None:
            drain(keep=0)
        decode_inline()
        summary.interrupted = stop()
    finally:
        if own_pool and pool is not None:
            pool.close()

    summary.items = summary.classified + summary.failed
    summary.seconds = time.perf_counter() - start
    return summary


def _classify_array(path: str, batch_size: int, classifier: OnnxClassifier, model_calls: int, emit_array, fail,
                    stop, done: Done | None, advance) -> None:
    if done is not None and done.has(path):  # the whole array failed before: its row is kept
        advance(1)
        return
    try:
        array = DigitArray(path)
    except ArrayError as e:  # a bad header: the array gets this one row
        fail(path, str(e))
        return
    # Bad float values are found before the first block. A file cut short while being
    # read keeps the rows before the cut, those already in the model included, and
    # then this row says where it was cut.
    errors: list[ArrayError] = []
    work = _until_error(_array_work(array, batch_size, stop, done.array_rows(path) if done else None, advance), errors)
    for first_row, probabilities, rows in _predicted(work, classifier.predict, model_calls):
        emit_array(path, first_row, probabilities, rows)
    if errors:
        fail(path, str(errors[0]))


def _until_error(work, errors: list):
    """`work` until it raises ArrayError, which is kept in `errors`: ending the stream
    instead of raising through _predicted lets the chunks in flight get their rows."""
    try:
        yield from work
    except ArrayError as e:
        errors.append(e)


def _array_work(array: DigitArray, batch_size: int, stop, finished: np.ndarray | None, advance):
    """(first row, digits, row numbers or None when the rows run on from the first) still to classify."""
    for begin, chunk in array.chunks(batch_size):
        if stop():
            return
        if finished is None or not len(finished):
            yield begin, chunk, None
            continue
        rows = np.arange(begin, begin + len(chunk))
        todo = ~np.isin(rows, finished, assume_unique=True)
        if todo.all():
            yield begin, chunk, None
            continue
        advance(int(len(todo) - todo.sum()))  # rows already in the output
        if todo.any():
            yield begin, chunk[todo], rows[todo]


def _predicted(work, predict, calls: int):
    """(tag, probabilities, extra) for each (tag, digits, extra) of `work`, in order, with
    up to `calls` pieces in the model at once. onnxruntime releases the GIL while it runs,
    so on threads the calls run side by side while this thread reads the next chunk
    and writes rows. On 2 cores, 100k digits: two one-thread calls at a time took
    0.316 s, one two-thread call at a time 0.362 s, reading and rows included
    (measured; the probabilities were bit-identical). At most calls + 1 chunks are
    held, so memory stays flat whatever the array's size."""
    if calls < 2:
        for tag, digits, extra in work:
            yield tag, predict(digits), extra
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(calls, thread_name_prefix="model") as model:
        pending: deque = deque()
        for tag, digits, extra in work:
            pending.append((tag, model.submit(predict, digits), extra))
            if len(pending) > calls:
                tag, future, extra = pending.popleft()
                yield tag, future.result(), extra
        while pending:
            tag, future, extra = pending.popleft()
            yield tag, future.result(), extra
