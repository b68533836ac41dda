"""The classify job on Ray: the same rows as `batch.run`, from a cluster's cores, a shard of inputs per actor call.
How the job is laid out (shards, actors, order, retries, --output-dir) and why: docs/cluster.md.
"""

import itertools
import os
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np

from digits.batch.arrays import SCAN_ROWS, ArrayError, DigitArray
from digits.batch.block import BlockRows, classify_block, count_rows, predict, read_file, read_uri
from digits.batch.classifier import Classifier
from digits.batch.formats import RowFormat
from digits.batch.inputs import ArrayItem, ErrorItem, ImageRun, Item, is_uri
from digits.batch.model import load_classifier
from digits.batch.ray_connect import RayEngineError, ray
from digits.batch.summary import Summary
from digits.batch.writer import RowWriter
from digits.core.contract import IMAGE_BLOCK
from digits.core.errors import first_line

SHARD_IMAGES = 2048  # image paths per shard
SHARD_ROWS = 8192  # array rows per shard
IN_FLIGHT = 2  # shards per actor sent ahead: one running, one waiting in its queue


def _shards(items: Iterable[Item | ImageRun]) -> Iterator[list[tuple]]:
    """The run's items as shards of at most SHARD_IMAGES entries, each ("image", path or URI),
    ("array", path, first row, row count) or ("error", source, message); an array's window is a shard of its own."""
    shard: list[tuple] = []
    for item in items:
        if isinstance(item, ArrayItem):
            if shard:
                yield shard
                shard = []
            yield from ([window] for window in _array_windows(item.source))
            continue
        if isinstance(item, list):  # a run of image paths
            shard += [("image", path) for path in item]
        else:
            shard.append(("error", item.source, item.error) if isinstance(item, ErrorItem) else ("image", item.source))
        if len(shard) >= SHARD_IMAGES:
            yield shard
            shard = []
    if shard:
        yield shard


def _array_windows(path: str) -> Iterator[tuple]:
    """An array's windows of SHARD_ROWS rows, once its header (and a float array's values,
    as the local engine checks them before writing any of its rows) are checked here."""
    try:
        array = DigitArray(path)
        if array.dtype != np.uint8:
            next(array.chunks(SCAN_ROWS), None)  # the float check comes before the first chunk
    except ArrayError as e:
        yield ("error", path, str(e))
        return
    for first in range(0, len(array), SHARD_ROWS):
        yield ("array", path, first, min(SHARD_ROWS, len(array) - first))


def _classify_shard(shard: list[tuple], classifier: Classifier, row_format: RowFormat, invert: str,
                    batch_size: int, header: bool = False, cwd: str | None = None) -> BlockRows:
    """One shard's rows as the local engine writes them, as one file's bytes (with `header`, a csv header
    first), and their counts. An input that cannot be read is an error row, never a failed shard. `cwd`:
    the driver's folder, which relative paths are read from; the rows name them as the user did."""
    def where(source: str) -> str:
        return source if cwd is None or is_uri(source) else os.path.join(cwd, source)

    def read(source: str) -> bytes | str:
        return read_uri(source) if is_uri(source) else read_file(where(source))

    parts: list = []
    counts = Summary()
    images: list[str] = []
    for entry in [*shard, ("end",)]:
        if entry[0] == "image":
            images.append(entry[1])
            continue
        for i in range(0, len(images), IMAGE_BLOCK):
            block = classify_block(images[i : i + IMAGE_BLOCK], invert, classifier, row_format, read=read)
            parts.append(block.text)
            counts.add(block)
        images.clear()
        if entry[0] == "array":
            _, path, first, row_count = entry
            try:
                for start, digits in DigitArray(where(path)).window(first, row_count).chunks(batch_size):
                    predicted = predict(classifier, digits)
                    parts.append(row_format.array_rows(path, first + start, predicted))
                    counts.add(count_rows(predicted, None, row_format))
            except ArrayError as e:  # changed or cut short since it was listed: the rows before stay
                parts.append(row_format.failed(path, str(e)))
                counts.failed += 1
        elif entry[0] == "error":
            parts.append(row_format.failed(entry[1], entry[2]))
            counts.failed += 1
    return BlockRows(row_format.join(parts, header), counts.per_label, counts.failed, counts.review,
                     counts.not_digits, counts.blank)


class ShardWorker:
    """A Ray actor: one one-thread model session (the actor holds one CPU), classifying whole shards.
    The model's bytes come through the object store, so nodes need no copy of it."""

    def __init__(self, model: list, name: str, out_dir: str | None, *shard: object):
        """`shard`: _classify_shard's arguments after the classifier."""
        # `model` is [ObjectRef of the file's bytes]: wrapped in a list, the ref is not
        # a constructor argument itself, which Ray would pin for actor restarts.
        path = Path(tempfile.mkdtemp(prefix="digits-model-")) / name
        path.write_bytes(ray.get(model[0]))
        self.classifier = load_classifier(path, threads=1, spin=False)
        self.out_dir, self.shard = out_dir, shard

    def where(self) -> str:
        """The node this actor runs on (its id): the actors are ready once every one answers."""
        return ray.get_runtime_context().get_node_id()

    def run(self, index: int, shard: list[tuple]) -> BlockRows:
        rows = _classify_shard(shard, self.classifier, *self.shard)
        if self.out_dir is not None:
            _write_shard_file(self.out_dir, f"part-{index:06d}.{self.shard[0].fmt}", rows.text)
            rows.text = b""
        return rows


def _write_shard_file(out_dir: str, name: str, data: bytes) -> None:
    """The shard's file, whole or not at all: written under a temporary name and renamed
    (a local or shared folder), or as one object (a URI: object stores commit on close)."""
    if is_uri(out_dir):
        import pyarrow.fs as pafs

        fs, folder = pafs.FileSystem.from_uri(out_dir)
        with fs.open_output_stream(f"{folder.rstrip('/')}/{name}") as f:
            f.write(data)
        return
    os.makedirs(out_dir, exist_ok=True)
    temporary = os.path.join(out_dir, f".{name}.{os.getpid()}.partial")
    with open(temporary, "wb") as f:
        f.write(data)
    os.replace(temporary, os.path.join(out_dir, name))


def classify(items: Iterable[Item | ImageRun], classifier: Classifier, writer: RowWriter | None, *,
             row_format: RowFormat, out_dir: str | None = None, invert: str = "auto", batch_size: int = 1024,
             concurrency: int | None = None, advance: Callable[[int], None] = lambda n: None,
             stop: Callable[[], bool] = lambda: False) -> Summary:
    """Classify every item (batch.inputs.iter_runs, with URIs) on the Ray that ray_connect joined or
    started, with the model `classifier` was loaded from. Rows go to `writer` in input order, or as
    shard files `part-NNNNNN.<format>` into `out_dir` (a new or empty folder, or a URI prefix).
    `concurrency`: model actors, one CPU each (at most one per CPU of the cluster). `advance(n)`: n more
    rows are done; `stop()`: asked between shards, ends the job early with every written row whole."""
    summary = Summary(cpus=int(ray.cluster_resources().get("CPU", 0)))
    start = time.perf_counter()
    if out_dir is not None:
        if not is_uri(out_dir):  # the actors' working folder is the cluster's, not ours
            out_dir = os.path.abspath(out_dir)
        _prepare_out_dir(out_dir)
    shards = _shards(items)
    first = next(shards, None)
    if first is None:  # nothing to classify: no actor is started
        summary.ready_seconds = time.perf_counter() - start
        return summary
    # More actors than CPUs would wait for a CPU forever (each holds one).
    count = min(concurrency or max(1, summary.cpus), max(1, summary.cpus))
    model = Path(classifier.path)
    model_data = [ray.put(model.read_bytes())]  # held for the job: an actor restarted after a crash reads it
    worker = ray.remote(ShardWorker).options(
        num_cpus=1, max_restarts=-1, max_task_retries=-1,
        # Spread over the nodes: a cluster's CPUs, not the first node's, run the model.
        scheduling_strategy="SPREAD")
    try:
        cwd = os.getcwd()
    except OSError:  # the driver's folder is gone: relative paths name nothing anywhere
        cwd = None
    actors = [worker.remote(model_data, model.name, out_dir, row_format, invert, batch_size, out_dir is not None, cwd)
              for _ in range(count)]
    nodes = ray.get([actor.where.remote() for actor in actors])  # each holds its session now
    summary.actors, summary.nodes = len(actors), len(set(nodes))
    summary.ready_seconds = time.perf_counter() - start
    start = time.perf_counter()
    try:
        _run_shards(actors, itertools.chain([first], shards), writer, out_dir, summary, advance, stop)
    except ray.exceptions.RayError as e:
        # Bad files are error rows; what reaches here is the job itself failing.
        raise RayEngineError(f"the Ray job failed: {_cause(e)}") from None
    summary.seconds = time.perf_counter() - start
    return summary


def _prepare_out_dir(out_dir: str) -> None:
    """A new or empty folder (or URI prefix): shards of an earlier job would be read back
    with this one's as one dataset, and a second job into it would double every row."""
    held = RayEngineError(f"{out_dir}: --output-dir must be new or empty; it holds files already")
    try:
        if is_uri(out_dir):
            import pyarrow.fs as pafs

            fs, folder = pafs.FileSystem.from_uri(out_dir)
            info = fs.get_file_info(folder)
            if info.type == pafs.FileType.File:
                raise RayEngineError(f"{out_dir}: cannot write the output (it is a file, not a folder)")
            if info.type == pafs.FileType.Directory and fs.get_file_info(pafs.FileSelector(folder)):
                raise held
            return
        os.makedirs(out_dir, exist_ok=True)
        with os.scandir(out_dir) as listing:
            if next(listing, None) is not None:
                raise held
    except OSError as e:
        raise RayEngineError(f"{out_dir}: cannot write the output ({e.strerror or first_line(e)})") from e


def _run_shards(actors: list, shards: Iterator[list[tuple]], writer: RowWriter | None, out_dir: str | None,
                summary: Summary, advance, stop) -> None:
    """Shards go to the actors in turn, IN_FLIGHT per actor ahead; their rows are taken oldest first,
    so that they come out in input order and the driver holds only the shards in flight."""
    pending: deque = deque()

    def take() -> None:
        shard_first, ref = pending.popleft()
        try:
            rows: BlockRows = ray.get(ref)
        except ray.exceptions.RayTaskError as e:
            if isinstance(e.cause, OSError) and out_dir is not None:
                raise RayEngineError(f"{out_dir}: cannot write the output ({first_line(e.cause)})") from None
            raise RayEngineError(f"the Ray job failed on the shard from {shard_first}: {_cause(e)}") from None
        if writer is not None:
            writer.write(rows.text.decode("utf-8", "surrogateescape"))
        summary.add(rows)
        advance(rows.rows)

    for index, shard in enumerate(shards):
        if stop():
            break
        pending.append((shard[0][1], actors[index % len(actors)].run.remote(index, shard)))
        if len(pending) >= IN_FLIGHT * len(actors):
            take()
    while pending and not stop():
        take()
    summary.interrupted = stop()


def _cause(e: BaseException) -> str:
    """What went wrong, in one line: a task's own exception, else the last line of Ray's text."""
    cause = getattr(e, "cause", None)
    if isinstance(cause, BaseException) and not isinstance(cause, ray.exceptions.RayError):
        return f"{type(cause).__name__}: {first_line(cause)}"
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    return (lines[-1] if lines else type(e).__name__)[:300]
