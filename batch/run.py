"""The classify pipeline: items in, rows out, in input order, streaming.

Images are read and decoded by worker processes, a few blocks ahead of the
model. Threads were measured and lose: a 28x28 PNG decodes in ~10 us, so the
Python around it dominates and two threads ran slower than one (GIL). Arrays
are read with plain file reads and classified chunk by chunk (batch/arrays.py),
so memory stays flat whatever the input size.
"""

import os
import signal
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from batch.arrays import ArrayError, DigitArray
from batch.inputs import ArrayItem, ErrorItem, ImageItem, Item
from batch.model import OnnxClassifier
from batch.writer import RowWriter
from digits.errors import DigitsError
from digits.files import PathError, open_regular

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
    per_label: np.ndarray = field(default_factory=lambda: np.zeros(10, np.int64))

    @property
    def digits_per_second(self) -> float:
        return self.classified / self.seconds if self.seconds > 0 else 0.0


def read_digit(path: str, invert: str) -> np.ndarray | str:
    """The digit in an image file, or why it could not be had."""
    from batch.decode import ImageError, decode_digit  # OpenCV: only for runs with images

    try:
        # os-level calls: half the cost of open()/read() on small files (measured).
        # open_regular: a FIFO or device named like an image is refused, not read forever.
        fd = open_regular(path)
        try:
            size = os.fstat(fd).st_size  # checked first: no reading a huge file whole
            if size > MAX_FILE_BYTES:
                return f"file larger than {MAX_FILE_BYTES // 2**20} MiB"
            data = os.read(fd, size + 1)
        finally:
            os.close(fd)
        return decode_digit(data, invert)
    except (ImageError, PathError) as e:
        return str(e)
    except IsADirectoryError:
        return "is a folder"
    except OSError as e:
        return f"cannot read: {e.strerror or e}"


def _decode_block(paths: list[str], invert: str) -> tuple[np.ndarray, list[str | None]]:
    digits = np.zeros((len(paths), 28, 28), np.uint8)
    errors: list[str | None] = [None] * len(paths)
    for i, path in enumerate(paths):
        result = read_digit(path, invert)
        if isinstance(result, str):
            errors[i] = result
        else:
            digits[i] = result
    return digits, errors


def _ignore_interrupts() -> None:
    # Ctrl-C and a SIGTERM to the process group reach the workers too; only the
    # parent decides what stops, and it shuts the workers down when it has.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


class _InlineExecutor:
    """Runs a task at once; for runs too small to repay starting processes."""

    def submit(self, fn, *args) -> Future:
        future: Future = Future()
        future.set_result(fn(*args))
        return future

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _executor(items: list[Item], workers: int):
    images = sum(isinstance(item, ImageItem) for item in items)
    if images:
        import batch.decode  # noqa: F401  (before forking, so workers inherit it)
    if workers < 2 or images < POOL_THRESHOLD:
        return _InlineExecutor()
    # Imported here: runs without images should not pay for multiprocessing.
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # fork: workers inherit the imported decoder instead of importing it again.
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"),
                               initializer=_ignore_interrupts)


def _blocks(items: list[Item]):
    """Consecutive images grouped into blocks; arrays and errors one by one, order kept."""
    images: list[str] = []
    for item in items:
        if isinstance(item, ImageItem):
            images.append(item.source)
            if len(images) == IMAGE_BLOCK:
                yield images
                images = []
            continue
        if images:
            yield images
            images = []
        yield item
    if images:
        yield images


def classify(
    items: list[Item],
    classifier: OnnxClassifier,
    writer: RowWriter,
    invert: str = "auto",
    batch_size: int = 1024,
    workers: int = 2,
    advance: Callable[[int], None] = lambda n: None,
    stop: Callable[[], bool] = lambda: False,
) -> Summary:
    """Classify every item, writing its row(s) as soon as they are known.

    `advance(n)` is told of each n items done (progress); `stop()` is asked
    between blocks and ends the run early, leaving every written row whole.
    """
    summary = Summary()
    start = time.perf_counter()

    def count(probabilities: np.ndarray, ok: np.ndarray | None = None) -> None:
        labels = probabilities.argmax(axis=1)
        summary.per_label += np.bincount(labels if ok is None else labels[ok], minlength=10)
        classified = len(labels) if ok is None else int(ok.sum())
        summary.classified += classified
        summary.failed += len(labels) - classified
        advance(len(labels))

    def emit_images(sources: list[str], digits: np.ndarray, errors: list[str | None]) -> None:
        probabilities = classifier.predict(digits)
        if any(e is not None for e in errors):
            writer.write_rows(sources, probabilities, errors)
            count(probabilities, np.array([e is None for e in errors]))
        else:
            writer.write_rows(sources, probabilities)
            count(probabilities)

    def emit_array(path: str, first_row: int, digits: np.ndarray) -> None:
        probabilities = classifier.predict(digits)
        writer.write_array_rows(path, first_row, probabilities)
        count(probabilities)

    def fail(source: str, error: str) -> None:
        writer.write_failed(source, error)
        summary.failed += 1
        advance(1)

    with _executor(items, workers) as pool:
        pending: deque = deque()  # (paths, future) decoding ahead, in order

        def drain(keep: int) -> None:
            while len(pending) > keep and not stop():
                paths, future = pending.popleft()
                decoded = _decoded(future, stop)
                if decoded is None:  # stopped while this block was decoding
                    return
                emit_images(paths, *decoded)

        for block in _blocks(items):
            if stop():
                break
            if isinstance(block, list):
                pending.append((block, pool.submit(_decode_block, block, invert)))
                drain(keep=2 * workers)
                continue
            drain(keep=0)
            if stop():
                break
            if isinstance(block, ErrorItem):
                fail(block.source, block.error)
            elif isinstance(block, ArrayItem):
                _classify_array(block.source, batch_size, emit_array, fail, stop)
        drain(keep=0)
        summary.interrupted = stop()
        for _, future in pending:
            future.cancel()

    summary.items = summary.classified + summary.failed
    summary.seconds = time.perf_counter() - start
    return summary


def _decoded(future: Future, stop: Callable[[], bool]) -> tuple[np.ndarray, list[str | None]] | None:
    from concurrent.futures.process import BrokenProcessPool

    try:
        return future.result()
    except BrokenProcessPool as e:
        # A worker was killed: by the signal that is stopping the run (then the
        # block is simply not done), or by something else (the OOM killer ...).
        if stop():
            return None
        raise DigitsError("an image decoder process died (killed by a signal?); rows written so far are whole") from e


def _classify_array(path: str, batch_size: int, emit_array, fail, stop) -> None:
    try:
        array = DigitArray(path)
        for begin, chunk in array.chunks(batch_size):
            if stop():
                return
            emit_array(path, begin, chunk)
    except ArrayError as e:
        # A bad header or bad float values are found before the first block, so the
        # array gets this one row; a file cut short while being read keeps the rows
        # before the cut, and this row says where it was.
        fail(path, str(e))
