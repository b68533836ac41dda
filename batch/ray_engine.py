"""The classify job on Ray Data: the same rows as `batch.run`, from a cluster's cores.

The pipeline is the local engine's, spread out:
- listing on the driver (`batch.inputs.expand_inputs` for paths, pyarrow for URIs),
  with each array's header checked there and its rows split into chunks;
- reading and decoding in `map_batches` tasks, with the local engine's own
  `read_digit` / `decode_digit` and `DigitArray`: a file that cannot be read
  becomes an error row inside the task, so a bad file never fails the job;
- onnxruntime in `map_batches` on an actor pool, one `OnnxClassifier` session per
  actor (`concurrency` actors, one CPU each);
- rows: in input order to one stream through the local engine's `RowWriter`, or
  sharded by Ray's own writers (`--output-dir`).

Reading and decoding share one task: shipping every file's raw bytes through the
object store between two stages would cost more than the decode itself (a 28x28
PNG decodes in ~10 us), and Ray fuses adjacent task stages anyway.

Ray is imported by this module only; `batch.cli` imports it only for `--engine ray`.
"""

import contextlib
import fnmatch
import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from batch.arrays import SCAN_ROWS, ArrayError, DigitArray
from batch.block import read_digit
from batch.inputs import IMAGE_EXTENSIONS, ArrayItem, ErrorItem, ImageItem, expand_inputs, read_path_list
from batch.model import NUM_CLASSES, OnnxClassifier
from batch.summary import Summary
from batch.writer import RowWriter
from core.contract import MAX_IMAGE_FILE_BYTES as MAX_FILE_BYTES
from core.errors import DigitsError, UsageError

try:
    import ray
    import ray.data
except ImportError as e:  # the `ray` extra is not installed
    raise DigitsError("--engine ray needs Ray: pip install 'digits[ray]' "
                      f"(with -c constraints.txt for the tested versions); {e}") from e

CHUNK_ROWS = 4096  # array rows per listed item: one read per chunk on a worker
IMAGES_PER_TASK = 256  # images per decode call, as the local engine's blocks
ROWS_PER_WRITE = 4096  # rows the driver takes and writes at a time
# Local starts only: Ray's default object store (30% of memory, on /dev/shm) does
# not fit a container's small /dev/shm. The pipeline streams; this is plenty.
LOCAL_OBJECT_STORE_BYTES = 512 * 2**20
ACTOR_MEMORY_BYTES = 256 * 2**20  # one session and a few batches in flight


class RayEngineError(DigitsError):
    """Ray could not be started or joined, or the job could not run."""


@dataclass(frozen=True)
class RayOptions:
    address: str | None = None  # None: RAY_ADDRESS, else start a local Ray
    concurrency: int | None = None  # classifier actors; None: half the cluster's CPUs
    num_cpus: int | None = None  # local starts only: CPUs to give Ray (None: all)


def is_uri(text: str) -> bool:
    """s3://, gs://, hdfs://, file://...: listed and read with pyarrow's filesystems."""
    return "://" in text


# ---- listing (driver) -------------------------------------------------------

def list_items(inputs: list[str], recursive: bool = True, pattern: str | None = None,
               null: bool = False) -> tuple[list[dict], int]:
    """The job's work items, in input order, and the count of skipped files.

    Local paths go through the local engine's `expand_inputs` (so the same files,
    order and error items come out); URIs are listed with pyarrow. Each array is
    checked here (its header, and a float array's values, as the local engine does
    before writing any of its rows) and split into chunks of CHUNK_ROWS rows.
    """
    local: list[str] = []
    rows: list[dict] = []
    skipped = 0

    def flush_local():
        nonlocal skipped
        if local:
            expanded = expand_inputs(local, recursive=recursive, pattern=pattern)
            skipped += expanded.skipped
            for item in expanded.items:
                rows.extend(_item_rows(item))
            local.clear()

    for arg in inputs:
        if arg == "-":
            if sys.stdin is None:
                raise UsageError("- reads paths from standard input, which is closed")
            # The local engine's reading of the list: names exactly as written, -0 for NULs.
            for name in read_path_list(sys.stdin.buffer.read(), null):
                if is_uri(name):
                    flush_local()
                    skipped += _list_uri(name, recursive, pattern, rows)
                else:
                    local.append(name)
            continue
        if is_uri(arg):
            flush_local()
            skipped += _list_uri(arg, recursive, pattern, rows)
        else:
            local.append(arg)
    flush_local()
    return rows, skipped


def _row(kind: str, source: str, error: str = "", first: int = 0, count: int = 1) -> dict:
    return {"kind": kind, "source": source, "error": error, "first": first, "count": count}


def _item_rows(item) -> list[dict]:
    if isinstance(item, ErrorItem):
        return [_row("error", item.source, item.error)]
    if isinstance(item, ImageItem):
        return [_row("image", item.source)]
    assert isinstance(item, ArrayItem)
    try:
        array = DigitArray(item.source)
        if array.dtype != np.uint8:
            for _ in array.chunks(SCAN_ROWS):  # the float check comes before the first chunk
                break
    except ArrayError as e:
        return [_row("error", item.source, str(e))]
    return [_row("array", item.source, first=first, count=min(CHUNK_ROWS, len(array) - first))
            for first in range(0, len(array), CHUNK_ROWS)]


def _list_uri(uri: str, recursive: bool, pattern: str | None, rows: list[dict]) -> int:
    """Adds a URI's image items (a file, or a prefix walked in sorted order); returns skipped files."""
    import pyarrow.fs as pafs

    try:
        fs, path = pafs.FileSystem.from_uri(uri)
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.NotFound:
            rows.append(_row("error", uri, "no such file or folder"))
            return 0
        if info.type == pafs.FileType.File:
            infos = [info]
        else:
            infos = sorted(fs.get_file_info(pafs.FileSelector(path, recursive=recursive)), key=lambda i: i.path)
            infos = [i for i in infos if i.type == pafs.FileType.File]
    except (OSError, ValueError) as e:
        rows.append(_row("error", uri, f"cannot list: {str(e).splitlines()[0][:200]}"))
        return 0
    scheme = uri.split("://", 1)[0]
    skipped = 0
    for i in infos:
        if info.type != pafs.FileType.File and pattern and not fnmatch.fnmatch(i.base_name, pattern):
            continue
        source = f"{scheme}://{i.path}"
        if i.path.lower().endswith(".npy"):
            # DigitArray reads a file by path; arrays are read from paths every node sees.
            rows.append(_row("error", source, ".npy arrays are read from local or shared paths, not URIs"))
        elif os.path.splitext(i.path)[1].lower() in IMAGE_EXTENSIONS or info.type == pafs.FileType.File:
            rows.append(_row("image", source))
        else:
            skipped += 1
    return skipped


# ---- reading and decoding (tasks) -------------------------------------------

def _read_uri_digit(uri: str, invert: str) -> np.ndarray | str:
    """`read_digit` for a URI: the same caps and the same error wording."""
    import pyarrow.fs as pafs

    from batch.decode import ImageError, decode_digit

    try:
        fs, path = pafs.FileSystem.from_uri(uri)
        with fs.open_input_file(path) as f:
            if f.size() > MAX_FILE_BYTES:
                return f"file larger than {MAX_FILE_BYTES // 2**20} MiB"
            data = f.read()
        return decode_digit(data, invert)
    except ImageError as e:
        return str(e)
    except (OSError, ValueError) as e:
        return f"cannot read: {str(e).splitlines()[0][:200]}"


def _array_rows(path: str, first: int, count: int) -> np.ndarray:
    """Rows first..first+count of an .npy as uint8 [count, 28, 28].

    The local engine's reader, pointed at a window: same header checks and the
    same float-to-uint8 conversion (the driver already checked the whole array).
    """
    array = DigitArray(path)
    array.offset += first * 28 * 28 * array.dtype.itemsize
    array.length = count
    return next(array.chunks(count))[1]


def decode_batch(batch: dict, invert: str) -> dict:
    """Work items -> one row per digit: source, digit uint8 [28, 28], error ('' if none)."""
    sources: list[str] = []
    errors: list[str] = []
    blocks: list[np.ndarray] = []
    pending: list[np.ndarray] = []  # single digits waiting to join `blocks`

    def one(source: str, digit: np.ndarray | None, error: str = "") -> None:
        sources.append(source)
        errors.append(error)
        pending.append(digit if digit is not None else np.zeros((28, 28), np.uint8))

    for kind, source, error, first, count in zip(batch["kind"], batch["source"], batch["error"],
                                                 batch["first"], batch["count"]):
        source, first, count = str(source), int(first), int(count)
        if kind == "image":
            result = _read_uri_digit(source, invert) if is_uri(source) else read_digit(source, invert)
            if isinstance(result, str):
                one(source, None, result)
            else:
                one(source, result)
        elif kind == "array":
            try:
                digits = _array_rows(source, first, count)
            except ArrayError as e:  # changed since it was listed
                one(source, None, str(e))
                continue
            if pending:
                blocks.append(np.stack(pending))
                pending.clear()
            blocks.append(digits)
            sources.extend(f"{source}#{i}" for i in range(first, first + count))
            errors.extend([""] * count)
        else:
            one(source, None, str(error))
    if pending:
        blocks.append(np.stack(pending))
    digits = np.concatenate(blocks) if blocks else np.zeros((0, 28, 28), np.uint8)
    return {"source": np.array(sources, dtype=object), "digit": digits, "error": np.array(errors, dtype=object)}


# ---- the model (actors) -----------------------------------------------------

class Classify:
    """One onnxruntime session per actor; the model travels through the object store,
    so nodes need no copy of it."""

    def __init__(self, model: list, name: str):
        import tempfile

        # `model` is [ObjectRef of the file's bytes]: wrapped in a list, the ref is not
        # a constructor argument itself, which Ray would pin for actor restarts.
        folder = tempfile.mkdtemp(prefix="digits-model-")
        path = Path(folder) / name
        path.write_bytes(ray.get(model[0]))
        # One thread: the actor holds one CPU, and the rate per actor is the rate per core.
        self.classifier = OnnxClassifier(path, threads=1, spin=False)

    def __call__(self, batch: dict) -> dict:
        digits = batch["digit"]
        probabilities = (self.classifier.predict(digits) if len(digits)
                         else np.zeros((0, NUM_CLASSES), np.float32))
        return {"source": batch["source"], "error": batch["error"], "probabilities": probabilities}


# ---- rows --------------------------------------------------------------------

def _sharded_table(batch: dict, top_k: int):
    """The row columns as a typed pyarrow table: failed rows have null label and confidence."""
    import pyarrow as pa

    probabilities = batch["probabilities"]
    errors = [str(e) for e in batch["error"]]
    failed = np.array([bool(e) for e in errors], dtype=bool)
    labels = probabilities.argmax(axis=1) if len(probabilities) else np.zeros(0, np.int64)
    confidence = probabilities[np.arange(len(labels)), labels].astype(np.float64)
    columns = {"source": pa.array([str(s) for s in batch["source"]], pa.string()),
               "label": pa.array(labels.astype(np.int64), mask=failed),
               "confidence": pa.array(confidence, mask=failed)}
    if top_k:
        order = np.argsort(-probabilities, axis=1, kind="stable")[:, :top_k]
        top = np.take_along_axis(probabilities, order, axis=1).astype(np.float64)
        for k in range(top_k):
            columns[f"label_{k + 1}"] = pa.array(order[:, k].astype(np.int64), mask=failed)
            columns[f"prob_{k + 1}"] = pa.array(top[:, k], mask=failed)
    columns["error"] = pa.array([e or None for e in errors], pa.string())
    return pa.table(columns)


def _sharded_summary(out_dir: str, fmt: str, summary: Summary) -> None:
    """Counts for the summary, read back from the written shards (only the label column)."""
    import pyarrow.compute as pc
    import pyarrow.dataset as pads

    labels = pads.dataset(out_dir, format=fmt).to_table(columns=["label"]).column("label")
    summary.failed = labels.null_count
    summary.classified = len(labels) - labels.null_count
    counts = pc.value_counts(labels.drop_null()).to_pylist()
    for entry in counts:
        summary.per_label[int(entry["values"])] += int(entry["counts"])


# ---- the job -------------------------------------------------------------------

def connect(options: RayOptions) -> None:
    """Join the cluster at options.address (or RAY_ADDRESS), else start a local Ray."""
    import batch as batch_package
    import core as core_package

    # Workers import the driver's own code, whatever is installed on the nodes.
    modules = [os.path.dirname(batch_package.__file__), os.path.dirname(core_package.__file__)]
    runtime_env = {"py_modules": modules, "excludes": ["__pycache__", "*.pyc"],
                   # onnxruntime and OpenCV in every worker: one thread each, so stages share cores fairly.
                   "env_vars": {"OMP_NUM_THREADS": "1"}}
    address = options.address or os.environ.get("RAY_ADDRESS")
    # Ray's C++ core logs errors straight to stderr, among them a notice on every
    # run that Ray Data's actor arguments live in the object store. Our stderr is
    # the summary and `digits: error:` lines only: that core logs fatal errors only,
    # and the line saying so is printed while `ray.init` runs with stderr muted.
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
    kwargs = {"runtime_env": runtime_env, "logging_level": logging.ERROR, "log_to_driver": False,
              "configure_logging": True}
    if address:
        kwargs["address"] = address
    else:
        kwargs.update(num_cpus=options.num_cpus, include_dashboard=False,
                      object_store_memory=LOCAL_OBJECT_STORE_BYTES)
    if address:
        _reachable(address)
    try:
        with _muted_stderr():
            ray.init(**kwargs)
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = f"the Ray cluster at {address}" if address else "a local Ray"
        raise RayEngineError(f"cannot start or join {where}: {str(e).strip().splitlines()[0][:200]}") from e
    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(logging.ERROR)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    context.execution_options.preserve_order = True
    context.execution_options.verbose_progress = False


def _reachable(address: str, timeout: float = 5.0) -> None:
    """A plain host:port that nothing answers on fails here, at once: Ray would retry for minutes."""
    import socket

    host, _, port = address.rpartition(":")
    if "://" in address or not host or not port.isdigit():
        return  # "auto", ray://...: Ray resolves those itself
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as e:
        raise RayEngineError(f"cannot reach the Ray cluster at {address}: {e.strerror or e}") from e


@contextlib.contextmanager
def _muted_stderr():
    """File descriptor 2 to /dev/null for a while: C++ code writes there, not to sys.stderr."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def build_dataset(work: list[dict], model: Path, invert: str, batch_size: int, concurrency: int):
    """The Ray Data pipeline, lazy: work items -> (source, error, probabilities) rows."""
    data = [ray.put(model.read_bytes())]  # held by the driver for the whole job
    ds = ray.data.from_items(work, override_num_blocks=max(1, min(len(work), 200)))
    # Decoding: one CPU per task. Actors hold `concurrency` CPUs; on a small
    # machine this leaves cores to the readers instead of starving them.
    ds = ds.map_batches(decode_batch, fn_kwargs={"invert": invert}, batch_size=IMAGES_PER_TASK,
                        batch_format="numpy", num_cpus=1)
    # A lost actor is restarted and its batch retried (Ray Data's defaults for
    # actor pools: max_restarts=-1, max_task_retries=-1), so every row comes once.
    # The memory reservation also keeps Ray from fusing decoding into the actors
    # (fusion needs equal resource requests), where it would run on the model's
    # core instead of beside it.
    return ds.map_batches(Classify, fn_constructor_kwargs={"model": data, "name": model.name},
                          batch_size=batch_size, batch_format="numpy", num_cpus=1,
                          memory=ACTOR_MEMORY_BYTES, concurrency=concurrency, zero_copy_batch=True)


def default_concurrency() -> int:
    """Half the cluster's CPUs run the model; the other half read and decode."""
    return max(1, int(ray.cluster_resources().get("CPU", 2)) // 2)


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
    options: RayOptions = RayOptions(),
    advance: Callable[[int], None] = lambda n: None,
    stop: Callable[[], bool] = lambda: False,
) -> Summary:
    """Classify every input on Ray; rows go to `writer` in input order, or to shards in `out_dir`.

    Returns the local engine's `Summary` (items, classified, failed, skipped, per label).
    The caller connects first (`connect`), so that it decides when Ray stops.
    """
    OnnxClassifier(model)  # an unusable model is a fatal error here, not a failed job
    summary = Summary()
    start = time.perf_counter()
    work, summary.skipped = list_items(inputs, recursive=recursive, pattern=pattern, null=null)
    if not work:
        if writer is None and out_dir and not is_uri(out_dir):
            try:
                os.makedirs(out_dir, exist_ok=True)
            except OSError as e:
                raise RayEngineError(f"{out_dir}: cannot write the output ({e.strerror or e})") from e
        summary.seconds = time.perf_counter() - start
        return summary
    ds = build_dataset(work, model, invert, batch_size, options.concurrency or default_concurrency())

    try:
        if writer is None:
            _write_shards(ds, out_dir, out_format, top_k, summary)
        else:
            _write_in_order(ds, writer, summary, advance, stop)
    except ray.exceptions.RayError as e:
        # Bad files are error rows; what reaches here is the job itself failing.
        raise RayEngineError(f"the Ray job failed: {_last_line(e)}") from e
    summary.items = summary.classified + summary.failed
    summary.seconds = time.perf_counter() - start
    return summary


def _last_line(e: BaseException) -> str:
    """The line of an exception's text that says what went wrong (Ray's end with the cause)."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    return (lines[-1] if lines else type(e).__name__)[:300]


def _write_in_order(ds, writer: RowWriter, summary: Summary, advance, stop) -> None:
    # Ray Data coalesces outputs into blocks of up to 128 MB (160k rows here):
    # re-batched, rows stream out steadily and a Ctrl-C is seen within one batch.
    for batch in ds.iter_batches(batch_size=ROWS_PER_WRITE, batch_format="numpy"):
        if stop():
            summary.interrupted = True
            break
        sources = [str(s) for s in batch["source"]]
        errors = [str(e) or None for e in batch["error"]]
        probabilities = batch["probabilities"]
        ok = np.array([e is None for e in errors], dtype=bool)
        writer.write_rows(sources, probabilities, None if ok.all() else errors)
        labels = probabilities.argmax(axis=1)[ok] if len(probabilities) else np.zeros(0, np.int64)
        summary.per_label += np.bincount(labels, minlength=NUM_CLASSES)
        summary.classified += int(ok.sum())
        summary.failed += int((~ok).sum())
        advance(len(sources))
    summary.interrupted = summary.interrupted or stop()  # a Ctrl-C during the last batch


def _write_shards(ds, out_dir: str, out_format: str, top_k: int, summary: Summary) -> None:
    ds = ds.map_batches(_sharded_table, fn_kwargs={"top_k": top_k}, batch_format="numpy", num_cpus=1)
    try:
        if out_format == "parquet":
            ds.write_parquet(out_dir)
        elif out_format == "jsonl":
            ds.write_json(out_dir)  # JSON lines, one file per block
        else:
            ds.write_csv(out_dir)
    except OSError as e:  # the folder cannot be made (Ray makes it on the driver first)
        raise RayEngineError(f"{out_dir}: cannot write the output ({_last_line(e)})") from e
    _sharded_summary(out_dir, {"jsonl": "json"}.get(out_format, out_format), summary)
