"""The classify job on Ray: the same rows as `batch.run`, from a cluster's cores.

The unit of work is a shard: a few thousand inputs (image paths, a window of an
array's rows, error items), in input order. The driver lists the inputs as a
stream and cuts it into shards; plain Ray actors, one per CPU with a one-thread
onnxruntime session each, take a shard whole and do the local engine's work on
it (read, decode, classify, format: `_classify_shard`), and send back only the
rows' bytes and the counts. The driver keeps IN_FLIGHT shards per actor in
flight and writes the rows in input order, or, with `--output-dir`, the actors
write each shard as its own file and send back only the counts.

So Ray's costs (a task, an object, a scheduling decision) are paid per shard,
not per file, and the driver holds only the shards in flight, never the whole
listing: its memory does not grow with the number of inputs.

A worker that dies is restarted by Ray and its shard run again (max_restarts and
max_task_retries are unbounded): a shard's rows reach the output only when its
call returns, once; a shard file is written under a temporary name and renamed,
and written again, under the same name, by a retry.

Ray is imported by this module only; `batch.cli` imports it only for `--engine ray`.
Measurements behind SHARD_IMAGES, SHARD_ROWS, IN_FLIGHT and the default
concurrency are in docs/decisions.md.
"""

import fnmatch
import io
import logging
import os
import signal
import socket
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from batch.arrays import SCAN_ROWS, ArrayError, DigitArray
from batch.block import BlockRows, classify_block, decode_files, read_file
from batch.formats import RowFormat
from batch.inputs import IMAGE_EXTENSIONS, ArrayItem, ErrorItem, Expanded, Skip, iter_runs, read_path_list
from batch.model import Classifier, OnnxClassifier
from batch.summary import Summary
from batch.writer import RowWriter
from core import interrupts
from core.contract import IMAGE_BLOCK, MAX_IMAGE_FILE_BYTES, NUM_CLASSES, PIXELS
from core.errors import EXIT_INTERRUPTED, DigitsError, UsageError
from core.files import stderr_muted

try:
    import ray
except ImportError as e:  # the `ray` extra is not installed
    raise DigitsError("--engine ray needs Ray: pip install 'digits[ray]' "
                      f"(with -c constraints.txt for the tested versions); {e}") from e

SHARD_IMAGES = 2048  # image paths per shard
SHARD_ROWS = 8192  # array rows per shard
IN_FLIGHT = 2  # shards per actor sent ahead: one running, one waiting in its queue
# Local starts only: Ray's default object store (30% of memory, on /dev/shm) does
# not fit a container's small /dev/shm. Only shards and their rows travel; this is plenty.
LOCAL_OBJECT_STORE_BYTES = 256 * 2**20
HANDSHAKE_SECONDS = 5.0  # for a cluster address to answer as a gRPC server does


class RayEngineError(DigitsError):
    """Ray could not be started or joined, or the job could not run."""


class RayInterrupted(DigitsError):
    """Ctrl-C or SIGTERM while Ray was starting: what was started has been stopped."""

    exit_code = EXIT_INTERRUPTED


@dataclass(frozen=True)
class RayOptions:
    address: str | None = None  # None: RAY_ADDRESS, else start a local Ray
    concurrency: int | None = None  # model actors, one CPU each; None (and at most): one per CPU of the cluster
    num_cpus: int | None = None  # local starts only: CPUs to give Ray (None: all)


@dataclass
class RaySummary(Summary):
    """The local engine's summary, plus what only the Ray engine knows.

    `seconds` counts from the moment every actor held its model session, so
    `digits_per_second` is the job's rate; `ready_seconds` is what came before:
    joining or starting Ray, and starting the actors."""

    ready_seconds: float = 0.0
    actors: int = 0
    cpus: int = 0
    nodes: int = 0  # nodes the actors run on
    connect_seconds: float = 0.0  # joining or starting Ray (batch.api sets it from connect())
    joined: bool = False  # an existing cluster was joined, rather than a local Ray started


def is_uri(text: str) -> bool:
    """s3://, gs://, hdfs://, file://...: listed and read with pyarrow's filesystems."""
    return "://" in text


# ---- listing (driver): a stream of shards ------------------------------------
# A shard is a list of entries, in input order:
#   ("image", path or URI) | ("array", path, first row, row count) | ("error", source, message)

def iter_shards(inputs: list[str], recursive: bool = True, pattern: str | None = None, null: bool = False,
                out: Expanded | None = None, skip: Skip | None = None) -> Iterator[list[tuple]]:
    """The job's inputs as shards, listed as the stream is consumed.

    Local paths go through the local engine's own walk (`iter_runs`: the same files,
    order, error items, skipped count and empty folders, into `out`); URIs are walked
    with pyarrow, one folder level at a time. Each array is checked here (its header,
    and a float array's values, as the local engine does before writing any of its
    rows) and cut into windows of SHARD_ROWS rows. Standard input's list is read at once
    (as the local engine does), so its usage errors come before any row. `skip`: the
    run's own output (inputs.output_to_skip), which the walk passes over.
    """
    out = out if out is not None else Expanded()
    listed = None
    if "-" in inputs:
        if sys.stdin is None:
            raise UsageError("- reads paths from standard input, which is closed")
        listed = read_path_list(sys.stdin.buffer.read(), null)
    shard: list[tuple] = []
    images = 0
    for entry in _entries(inputs, listed, recursive, pattern, out, skip):
        if entry[0] == "array" and shard:
            yield shard  # an array window is a shard of its own
            shard, images = [], 0
        shard.append(entry)
        images += entry[0] != "array"
        if entry[0] == "array" or images >= SHARD_IMAGES:
            yield shard
            shard, images = [], 0
    if shard:
        yield shard


def _entries(inputs, listed, recursive, pattern, out: Expanded, skip: Skip | None) -> Iterator[tuple]:
    for arg in inputs:
        names = listed if arg == "-" else [arg]
        local: list[str] = []
        for name in names:
            if is_uri(name):
                yield from _local_entries(local, recursive, pattern, out, skip)
                local = []
                yield from _uri_entries(name, recursive, pattern, out)
            else:
                local.append(name)
        yield from _local_entries(local, recursive, pattern, out, skip)


def _local_entries(paths: list[str], recursive, pattern, out: Expanded, skip: Skip | None) -> Iterator[tuple]:
    if not paths:
        return
    for entry in iter_runs(paths, recursive=recursive, pattern=pattern, out=out, skip=skip):
        if isinstance(entry, list):  # a run of image paths
            for path in entry:
                yield ("image", path)
        elif isinstance(entry, ErrorItem):
            yield ("error", entry.source, entry.error)
        elif isinstance(entry, ArrayItem):
            yield from _array_entries(entry.source)
        else:  # an ImageItem: a named image file
            yield ("image", entry.source)


def _array_entries(path: str) -> Iterator[tuple]:
    try:
        array = DigitArray(path)
        if array.dtype != np.uint8:
            for _ in array.chunks(SCAN_ROWS):  # the float check comes before the first chunk
                break
    except ArrayError as e:
        yield ("error", path, str(e))
        return
    for first in range(0, len(array), SHARD_ROWS):
        yield ("array", path, first, min(SHARD_ROWS, len(array) - first))


def _uri_entries(uri: str, recursive: bool, pattern: str | None, out: Expanded) -> Iterator[tuple]:
    """A URI's entries: a file, or a prefix walked depth first in sorted order, one level
    listed at a time (as the local walk does), so that a listing is never held whole."""
    import pyarrow.fs as pafs

    scheme = uri.split("://", 1)[0]
    try:
        fs, root = pafs.FileSystem.from_uri(uri)
        info = fs.get_file_info(root)
    except (OSError, ValueError) as e:
        yield ("error", uri, f"cannot list: {_first_line(e)}")
        return
    if info.type == pafs.FileType.NotFound:
        yield ("error", uri, "no such file or folder")
        return
    if info.type == pafs.FileType.File:
        yield _uri_file(f"{scheme}://{info.path}")
        return
    stack = [root]
    found = False
    while stack:
        folder = stack.pop()
        try:
            listing = sorted(fs.get_file_info(pafs.FileSelector(folder)), key=lambda i: i.base_name)
        except (OSError, ValueError) as e:
            yield ("error", f"{scheme}://{folder}", f"cannot list: {_first_line(e)}")
            continue
        subfolders = []
        for i in listing:
            if i.type == pafs.FileType.Directory:
                if recursive:
                    subfolders.append(i.path)
                continue
            if i.type != pafs.FileType.File or (pattern and not fnmatch.fnmatch(i.base_name, pattern)):
                continue
            suffix = os.path.splitext(i.base_name)[1].lower()
            if suffix in IMAGE_EXTENSIONS or suffix == ".npy":
                found = True
                yield _uri_file(f"{scheme}://{i.path}")
            else:
                out.skipped += 1
        # Depth first, sorted: files of a folder before its subfolders' (pyarrow
        # lists a level at a time; the local walk interleaves by name).
        stack.extend(reversed(subfolders))
    if not found:
        out.empty.append(uri)


def _uri_file(source: str) -> tuple:
    if source.lower().endswith(".npy"):
        # DigitArray reads a file by path; arrays are read from paths every node sees.
        return ("error", source, ".npy arrays are read from local or shared paths, not URIs")
    return ("image", source)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return (text.splitlines()[0] if text else type(e).__name__)[:200]


# ---- one shard (a worker): the local engine's read, decode, classify, format ----

@dataclass
class ShardRows:
    """What a worker sends back for a shard: its rows as bytes (UTF-8, file names that
    are not UTF-8 as their own bytes), or nothing when the worker wrote them itself."""

    data: bytes
    classified: int
    failed: int
    per_label: np.ndarray
    review: int = 0  # classified rows under --review-below


def _read_uri(uri: str) -> bytes | str:
    """`batch.block.read_file` for a URI: the same cap and the same error wording."""
    import pyarrow.fs as pafs

    try:
        fs, path = pafs.FileSystem.from_uri(uri)
        with fs.open_input_file(path) as f:
            if f.size() > MAX_IMAGE_FILE_BYTES:
                return f"file larger than {MAX_IMAGE_FILE_BYTES // 2**20} MiB"
            return f.read()
    except (OSError, ValueError) as e:
        return f"cannot read: {_first_line(e)}"


def _array_window(path: str, first: int, count: int, batch_size: int) -> Iterator[tuple[int, np.ndarray]]:
    """(first row, uint8 [n, 28, 28]) for rows first..first+count of an .npy, `batch_size` at a time.

    The local engine's reader, pointed at a window: same header checks and the
    same float-to-uint8 conversion (the driver already checked the whole array)."""
    array = DigitArray(path)
    if first + count > len(array):
        raise ArrayError(f"changed while being read: header now says {len(array):,} rows")
    array.offset += first * PIXELS * array.dtype.itemsize
    array.length = count
    for start, chunk in array.chunks(batch_size):
        yield first + start, chunk


class _ParquetRows:
    """RowWriter's write_rows / write_array_rows / write_failed, gathered into one parquet file."""

    def __init__(self, top_k: int):
        self.top_k = top_k
        self.sources: list[str] = []
        self.probabilities: list[np.ndarray] = []
        self.errors: list[str | None] = []

    def write_rows(self, sources, probabilities, errors=None) -> None:
        self.sources += sources
        self.probabilities.append(np.asarray(probabilities, np.float32))
        self.errors += errors if errors is not None else [None] * len(sources)

    def write_array_rows(self, path: str, start: int, probabilities) -> None:
        self.write_rows([f"{path}#{i}" for i in range(start, start + len(probabilities))], probabilities)

    def write_failed(self, source: str, error: str) -> None:
        self.write_rows([source], np.zeros((1, NUM_CLASSES), np.float32), [error])

    def data(self) -> bytes:
        import pyarrow as pa
        import pyarrow.parquet as pq

        probabilities = (np.concatenate(self.probabilities) if self.probabilities
                         else np.zeros((0, NUM_CLASSES), np.float32))
        failed = np.array([e is not None for e in self.errors], dtype=bool)
        labels = probabilities.argmax(axis=1)
        confidence = probabilities[np.arange(len(labels)), labels].astype(np.float64)
        # Parquet strings are UTF-8: a file name that is not (kept by os.fsdecode as
        # surrogates) is written with its odd bytes as \x.. escapes rather than failing.
        columns = {"source": pa.array([_utf8(s) for s in self.sources], pa.string()),
                   "label": pa.array(labels.astype(np.int64), mask=failed),
                   "confidence": pa.array(confidence, mask=failed)}
        if self.top_k:
            order = np.argsort(-probabilities, axis=1, kind="stable")[:, : self.top_k]
            top = np.take_along_axis(probabilities, order, axis=1).astype(np.float64)
            for k in range(self.top_k):
                columns[f"label_{k + 1}"] = pa.array(order[:, k].astype(np.int64), mask=failed)
                columns[f"prob_{k + 1}"] = pa.array(top[:, k], mask=failed)
        columns["error"] = pa.array(self.errors, pa.string())
        sink = io.BytesIO()
        pq.write_table(pa.table(columns), sink)
        return sink.getvalue()


def _utf8(text: str) -> str:
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _classify_shard(shard: list[tuple], classifier: Classifier, fmt: str, top_k: int, invert: str,
                    batch_size: int, header: bool = False, review_below: float | None = None,
                    cwd: str | None = None) -> ShardRows:
    """One shard's rows, as the local engine writes them: images in blocks of IMAGE_BLOCK
    through the local engine's own block function (batch/block.py: read, decode,
    classify, format), arrays `batch_size` rows at a time, the rows formatted by
    RowFormat (csv, jsonl; with `header`, a csv header first) or gathered into a
    parquet file. An input that cannot be read is an error row, never a failed shard.
    `cwd`: the driver's working folder, which relative paths are read from (an actor's
    own is the cluster's); the rows name them as the user did."""
    def where(source: str) -> str:
        return source if cwd is None or is_uri(source) else os.path.join(cwd, source)

    def read(source: str) -> bytes | str:
        return _read_any(where(source))

    parquet = fmt == "parquet"
    row_format = RowFormat("csv" if parquet else fmt, top_k, review_below)
    text = io.StringIO()
    rows = _ParquetRows(top_k) if parquet else RowWriter(text, row_format, name="a shard", header=header)
    counts = ShardRows(b"", 0, 0, np.zeros(NUM_CLASSES, np.int64))

    def count(block: BlockRows) -> None:
        counts.classified += block.classified
        counts.failed += block.failed
        counts.per_label += block.per_label
        counts.review += block.review

    images: list[str] = []

    def flush_images() -> None:
        for i in range(0, len(images), IMAGE_BLOCK):
            paths = images[i : i + IMAGE_BLOCK]
            if parquet:
                digits, errors = decode_files(paths, invert, read=read)
                probabilities = classifier.predict(digits)
                rows.write_rows(paths, probabilities, errors)
                count(_counted(probabilities, errors, row_format))
            else:
                block = classify_block(paths, invert, classifier, row_format, read=read)
                rows.write(block.text)
                count(block)
        images.clear()

    for entry in shard:
        if entry[0] == "image":
            images.append(entry[1])
            continue
        flush_images()
        if entry[0] == "array":
            _, path, first, row_count = entry
            try:
                for start, digits in _array_window(where(path), first, row_count, batch_size):
                    probabilities = classifier.predict(digits)
                    rows.write_array_rows(path, start, probabilities)
                    count(_counted(probabilities, None, row_format))
            except ArrayError as e:  # changed or cut short since it was listed: the rows before stay
                rows.write_failed(path, str(e))
                counts.failed += 1
        else:
            rows.write_failed(entry[1], entry[2])
            counts.failed += 1
    flush_images()
    counts.data = rows.data() if parquet else text.getvalue().encode("utf-8", "surrogateescape")
    return counts


def _read_any(source: str) -> bytes | str:
    return _read_uri(source) if is_uri(source) else read_file(source)


def _counted(probabilities: np.ndarray, errors: list | None, row_format: RowFormat) -> BlockRows:
    """The counts of rows written without their text (arrays, parquet)."""
    ok = np.ones(len(probabilities), bool) if errors is None else np.array([e is None for e in errors], bool)
    review = int(row_format.under_review(probabilities)[ok].sum()) if row_format.review_below is not None else 0
    return BlockRows("", np.bincount(probabilities.argmax(axis=1)[ok], minlength=NUM_CLASSES),
                     int((~ok).sum()), review)


class ShardWorker:
    """A Ray actor: one onnxruntime session (one thread: the actor holds one CPU, so the
    rate per actor is the rate per core), classifying whole shards. The model's bytes
    come through the object store, so nodes need no copy of it."""

    def __init__(self, model: list, name: str, fmt: str, top_k: int, invert: str, batch_size: int,
                 out_dir: str | None, review_below: float | None = None, cwd: str | None = None):
        import tempfile

        # `model` is [ObjectRef of the file's bytes]: wrapped in a list, the ref is not
        # a constructor argument itself, which Ray would pin for actor restarts.
        folder = tempfile.mkdtemp(prefix="digits-model-")
        path = Path(folder) / name
        path.write_bytes(ray.get(model[0]))
        self.classifier = OnnxClassifier(path, threads=1, spin=False)
        self.fmt, self.top_k, self.invert, self.batch_size, self.out_dir = fmt, top_k, invert, batch_size, out_dir
        self.review_below, self.cwd = review_below, cwd

    def where(self) -> str:
        """The node this actor runs on (its id): the actors are ready once every one answers."""
        return ray.get_runtime_context().get_node_id()

    def run(self, index: int, shard: list[tuple]) -> ShardRows:
        rows = _classify_shard(shard, self.classifier, self.fmt, self.top_k, self.invert, self.batch_size,
                               header=self.out_dir is not None and self.fmt == "csv", review_below=self.review_below,
                               cwd=self.cwd)
        if self.out_dir is not None:
            _write_shard_file(self.out_dir, index, self.fmt, rows.data)
            rows.data = b""
        return rows


def shard_name(index: int, fmt: str) -> str:
    return f"part-{index:06d}.{fmt}"


def _write_shard_file(out_dir: str, index: int, fmt: str, data: bytes) -> None:
    """The shard's file, whole or not at all: written under a temporary name and renamed
    (a local or shared folder), or as one object (a URI: object stores commit on close)."""
    name = shard_name(index, fmt)
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


# ---- joining or starting Ray ---------------------------------------------------

def connect(options: RayOptions) -> float:
    """Join the cluster at options.address (or RAY_ADDRESS), else start a local Ray.
    Returns the seconds it took.

    A Ctrl-C or SIGTERM while Ray starts stops what was started and raises
    RayInterrupted; nothing of Ray is left running."""
    import batch as batch_package
    import core as core_package

    start = time.perf_counter()
    # Workers import the driver's own code, whatever is installed on the nodes.
    modules = [os.path.dirname(batch_package.__file__), os.path.dirname(core_package.__file__)]
    runtime_env = {"py_modules": modules, "excludes": ["__pycache__", "*.pyc"],
                   # onnxruntime, OpenCV and OpenBLAS in every worker: one thread each.
                   "env_vars": {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}}
    address = options.address or os.environ.get("RAY_ADDRESS") or None
    # Ray's C++ core logs errors straight to stderr. Our stderr is the summary and
    # `digits: error:` lines only: that core logs fatal errors only, and the line
    # saying so is printed while `ray.init` runs with stderr muted.
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
    kwargs = {"runtime_env": runtime_env, "logging_level": logging.ERROR, "log_to_driver": False,
              "configure_logging": True}
    if address:
        kwargs["address"] = address
        _handshake(address)
    else:
        kwargs.update(num_cpus=options.num_cpus, include_dashboard=False,
                      object_store_memory=LOCAL_OBJECT_STORE_BYTES)
    try:
        with stderr_muted(), interrupts.raising():
            try:
                ray.init(**kwargs)
            except SystemExit as e:  # ray.init sets SIGTERM's handler to sys.exit(15)
                if e.code != signal.SIGTERM:
                    raise
                raise interrupts.Interrupted() from None
    except interrupts.Interrupted:
        with stderr_muted():
            ray.shutdown()  # stops the processes a local start began; a joined cluster runs on
        raise RayInterrupted("interrupted while Ray was starting; nothing of this run is left running") from None
    except (ConnectionError, RuntimeError, ValueError) as e:
        with stderr_muted():
            ray.shutdown()
        where = f"the Ray cluster at {address}" if address else "a local Ray"
        raise RayEngineError(f"cannot start or join {where}: {_first_line(e)}") from e
    logging.getLogger("ray").setLevel(logging.ERROR)
    return time.perf_counter() - start


def _handshake(address: str, timeout: float = HANDSHAKE_SECONDS) -> None:
    """A plain host:port must answer as Ray's GCS does (a gRPC server, HTTP/2) before
    ray.init is given it: Ray retries a silent or foreign server for minutes, in C++
    that Ctrl-C and SIGTERM do not reach. We send the HTTP/2 preface and an empty
    SETTINGS frame; an HTTP/2 server answers with its own SETTINGS frame at once."""
    host, _, port = address.rpartition(":")
    if "://" in address or not host or not port.isdigit():
        return  # "auto", ray://...: Ray resolves those itself
    host = host.strip("[]")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
            answer = b""
            while len(answer) < 9:
                more = s.recv(9 - len(answer))
                if not more:
                    break
                answer += more
    except TimeoutError:
        raise RayEngineError(f"{address} is not a Ray cluster: it did not answer as Ray's GCS server does "
                             f"within {timeout:g} s") from None
    except OSError as e:
        raise RayEngineError(f"cannot reach the Ray cluster at {address}: {e.strerror or e}") from e
    if len(answer) < 9 or answer[3] != 0x04:  # frame type 4: SETTINGS
        raise RayEngineError(f"{address} is not a Ray cluster: it does not answer as Ray's GCS server does")


def default_concurrency() -> int:
    """One model actor per CPU of the cluster: each does a shard's whole work."""
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


# ---- the job -------------------------------------------------------------------

def classify(
    inputs: list[str],
    model: Path,
    writer: RowWriter | None = None,
    *,
    out_dir: str | None = None,
    out_format: str = "csv",
    top_k: int = 0,
    invert: str = "auto",
    recursive: bool = True,
    pattern: str | None = None,
    batch_size: int = 1024,
    null: bool = False,
    review_below: float | None = None,
    skip: Skip | None = None,
    options: RayOptions = RayOptions(),
    advance: Callable[[int], None] = lambda n: None,
    stop: Callable[[], bool] = lambda: False,
) -> RaySummary:
    """Classify every input on the Ray that `connect` joined or started.

    Rows go to `writer` in input order, or as shard files `part-NNNNNN.<format>` into
    `out_dir` (a local or shared folder, which must be empty or new, or a URI prefix),
    in csv, jsonl or parquet. `advance(n)`: n more rows are done; `stop()`: asked
    between shards, ends the job early with every written row whole.
    Returns a RaySummary: the local engine's counts, plus Ray's ready time.
    """
    OnnxClassifier(model)  # an unusable model is a fatal error here, not a failed job
    summary = RaySummary(cpus=int(ray.cluster_resources().get("CPU", 0)))
    start = time.perf_counter()
    if out_dir is not None:
        if not is_uri(out_dir):  # the actors' working folder is the cluster's, not ours
            out_dir = os.path.abspath(out_dir)
        _prepare_out_dir(out_dir)
    expanded = Expanded()
    shards = iter_shards(inputs, recursive=recursive, pattern=pattern, null=null, out=expanded, skip=skip)
    first = next(shards, None)
    actors, model_data, nodes = [], None, []
    if first is not None:
        fmt = out_format if out_dir else writer.format.fmt
        # More actors than CPUs would wait for a CPU forever (each holds one).
        concurrency = min(options.concurrency or default_concurrency(), max(1, summary.cpus))
        actors, model_data, nodes = _start_actors(model, fmt, top_k, invert, batch_size, out_dir, concurrency,
                                                  review_below)
    summary.actors, summary.nodes = len(actors), len(set(nodes))
    summary.ready_seconds = time.perf_counter() - start
    start = time.perf_counter()
    if first is not None:
        try:
            _run_shards(actors, _chain(first, shards), writer, out_dir, summary, advance, stop)
        except ray.exceptions.RayError as e:
            # Bad files are error rows; what reaches here is the job itself failing.
            raise RayEngineError(f"the Ray job failed: {_cause(e)}") from None
    del model_data  # held until here: a restarted actor reads the model again
    summary.skipped, summary.empty_folders = expanded.skipped, expanded.empty
    summary.seconds = time.perf_counter() - start
    return summary


def _chain(first, rest):
    yield first
    yield from rest


def _prepare_out_dir(out_dir: str) -> None:
    """A new or empty folder (or URI prefix): shards of an earlier job would be read back
    with this one's as one dataset, and a second job into it would double every row."""
    try:
        if is_uri(out_dir):
            import pyarrow.fs as pafs

            fs, folder = pafs.FileSystem.from_uri(out_dir)
            info = fs.get_file_info(folder)
            if info.type == pafs.FileType.File:
                raise RayEngineError(f"{out_dir}: cannot write the output (it is a file, not a folder)")
            if info.type == pafs.FileType.Directory and fs.get_file_info(pafs.FileSelector(folder)):
                raise RayEngineError(f"{out_dir}: --output-dir must be new or empty; it holds files already")
            return
        os.makedirs(out_dir, exist_ok=True)
        with os.scandir(out_dir) as listing:
            if next(listing, None) is not None:
                raise RayEngineError(f"{out_dir}: --output-dir must be new or empty; it holds files already")
    except OSError as e:
        raise RayEngineError(f"{out_dir}: cannot write the output ({e.strerror or _first_line(e)})") from e


def _start_actors(model: Path, fmt: str, top_k: int, invert: str, batch_size: int, out_dir: str | None,
                  count: int, review_below: float | None = None) -> tuple[list, list, list]:
    """The actors, each holding its session; the model's object (the caller holds it
    for the whole job: an actor restarted after a crash reads it again); their nodes."""
    data = [ray.put(model.read_bytes())]
    worker = ray.remote(ShardWorker).options(
        num_cpus=1, max_restarts=-1, max_task_retries=-1,
        # Spread over the nodes: a cluster's CPUs, not the first node's, run the model.
        scheduling_strategy="SPREAD")
    try:
        cwd = os.getcwd()
    except OSError:  # the driver's folder is gone: relative paths name nothing anywhere
        cwd = None
    actors = [worker.remote(data, model.name, fmt, top_k, invert, batch_size, out_dir, review_below, cwd)
              for _ in range(count)]
    nodes = ray.get([actor.where.remote() for actor in actors])  # each holds its session now
    return actors, data, nodes


def _run_shards(actors: list, shards: Iterator[list[tuple]], writer: RowWriter | None, out_dir: str | None,
                summary: RaySummary, advance, stop) -> None:
    """Shards go to the actors in turn, IN_FLIGHT per actor ahead; their rows are taken
    (and written) oldest first, so that rows come out in input order and the driver
    holds only the shards in flight."""
    pending: deque = deque()

    def take() -> None:
        index, shard_first, ref = pending.popleft()
        try:
            rows: ShardRows = ray.get(ref)
        except ray.exceptions.RayTaskError as e:
            if isinstance(e.cause, OSError) and out_dir is not None:
                raise RayEngineError(f"{out_dir}: cannot write the output ({_first_line(e.cause)})") from None
            raise RayEngineError(f"the Ray job failed on the shard from {shard_first}: {_cause(e)}") from None
        if writer is not None:
            writer.write(rows.data.decode("utf-8", "surrogateescape"))
        summary.classified += rows.classified
        summary.failed += rows.failed
        summary.per_label += rows.per_label
        summary.review += rows.review
        advance(rows.classified + rows.failed)

    for index, shard in enumerate(shards):
        if stop():
            break
        first = shard[0][1]
        pending.append((index, first, actors[index % len(actors)].run.remote(index, shard)))
        if len(pending) >= IN_FLIGHT * len(actors):
            take()
    while pending and not stop():
        take()
    summary.interrupted = stop()


def _cause(e: BaseException) -> str:
    """What went wrong, in one line: a task's own exception, else the last line of Ray's text."""
    cause = getattr(e, "cause", None)
    if isinstance(cause, BaseException) and not isinstance(cause, ray.exceptions.RayError):
        return f"{type(cause).__name__}: {_first_line(cause)}"
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    return (lines[-1] if lines else type(e).__name__)[:300]
