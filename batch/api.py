"""Classify as a library call: `classify(model, inputs, options) -> Summary`.

What a run owns besides the engine's own work, for the command line and any
other caller alike: the output (checked against the inputs, locked, or resumed),
stopping on Ctrl-C/SIGTERM, the progress bar, and the choice of engine.
"""

import gc
import os
import resource
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO, Literal, TextIO

from batch.summary import Summary
from core.errors import UsageError

Engine = Literal["local", "ray"]


@dataclass(frozen=True)
class ClassifyOptions:
    """Everything a run can be asked for; the defaults are `digits classify`'s."""

    output: Path | None = None  # rows go here, locked while written; None: standard output
    format: Literal["csv", "jsonl", "parquet"] | None = None  # None: from the output's name, else csv
    top_k: int = 0  # also give the K most likely labels and their probabilities
    review_below: float | None = None  # mark rows whose confidence is under this
    invert: Literal["auto", "always", "never"] = "auto"
    recursive: bool = True
    glob: str | None = None  # only files in folders whose name matches
    batch_size: int = 1024  # array digits per model call
    null: bool = False  # `-`: the list on stdin is NUL-separated
    resume: bool = False  # keep the rows already in `output`; classify only what has none
    workers: int | None = None  # worker processes for images; None: one per usable core
    progress: bool = False  # draw a progress bar on stderr
    engine: Engine = "local"
    address: str | None = None  # ray: the cluster to join (default RAY_ADDRESS, else a local Ray)
    output_dir: str | None = None  # ray: shards into this folder or URI, not in input order
    concurrency: int | None = None  # ray: model actors

    def check(self) -> None:
        """UsageError for options that do not go together."""
        if self.review_below is not None and not 0 < self.review_below <= 1:
            raise UsageError(f"--review-below {self.review_below:g}: give a confidence between 0 and 1")
        if self.engine == "ray":
            if self.resume:
                raise UsageError("--resume is for the local engine")
            if self.output and self.output_dir:
                raise UsageError("give --output or --output-dir, not both")
            if self.format == "parquet" and not self.output_dir:
                raise UsageError("--format parquet writes shards: it needs --output-dir")
            return
        if self.output_dir or self.address or self.concurrency or self.format == "parquet":
            raise UsageError("--output-dir, --address, --concurrency and --format parquet need --engine ray")
        if self.resume and not self.output:
            raise UsageError("--resume needs --output FILE: the rows to resume are read from it")

    def row_format(self):
        from batch.writer import RowFormat, format_for

        fmt = self.format or format_for(str(self.output) if self.output else None)
        return RowFormat(fmt, self.top_k, self.review_below)


def classify(model: Path, inputs: list[str], options: ClassifyOptions = ClassifyOptions(), *,
             stop: Callable[[], bool] | None = None, stdin: BinaryIO | None = None,
             also_writes: dict[str, Path] | None = None) -> Summary:
    """Classify `inputs` (image files, folders, .npy arrays, `-` for a list on `stdin`)
    with the model at `model`, writing one row per digit; returns what the run did.

    `stop`: asked between blocks, ends the run early with every written row whole;
    None: Ctrl-C and SIGTERM ask it, for the run's length (from the main thread).
    `also_writes`: files the caller writes after the run ({"--summary-json": path}),
    checked with the run's own outputs against every input before anything is written.
    DigitsError (one of its kinds) for anything the caller can fix: a bad model, an
    output that cannot be written or resumed, options that do not go together.
    """
    options.check()
    if options.output is not None and not isinstance(options.output, Path):  # a str is taken too
        options = replace(options, output=Path(options.output))
    inputs = _with_stdin_list(inputs, options.null, stdin)
    _check_writes(Path(model), inputs, {"--output": options.output, "--output-dir": options.output_dir,
                                        **(also_writes or {})})
    if options.engine == "ray":
        return _on_ray(Path(model), inputs, options, stop, stdin)
    return _local(Path(model), inputs, options, stop, stdin)


def _local(model: Path, inputs: list[str], options: ClassifyOptions, stop, stdin) -> Summary:
    from batch.cores import usable_cores
    from batch.inputs import Expanded, iter_runs, output_to_skip
    from batch.model import load_classifier
    from batch.run import classify as run
    from batch.writer import RowWriter, resumable, resume_output

    # onnxruntime runs each call on the calling thread alone: image blocks run in
    # the worker processes, one call each, and arrays one call per core side by side.
    classifier = load_classifier(model, threads=1, spin=False)
    _freeze_heap()
    cores = usable_cores()
    expanded = Expanded()
    output = options.output
    skip = output_to_skip(output)  # the walk passes over the output, wherever it lies
    items = iter_runs(inputs, recursive=options.recursive, pattern=options.glob, stdin=stdin, null=options.null,
                      out=expanded, skip=skip)
    row_format = options.row_format()
    if options.resume:
        resumable(output)  # a FIFO would block the open below, then the reading
    # Locked before the rows are read: a second run cannot append to the same file.
    stream = _open_rows(output, append=options.resume)
    done = None
    if options.resume:
        done = resume_output(output, row_format)  # may cut off a torn last line
        stream.seek(0, 2)
    flag = _stop_flag(stop)
    bar = None
    try:
        if options.progress:
            from batch.progress import ProgressBar

            bar = ProgressBar(iter_runs(inputs, recursive=options.recursive,
                                                                   pattern=options.glob, skip=skip))
        writer = RowWriter(stream, row_format, name=str(output) if output else None,
                           header=not (done and done.header))
        summary = run(items, classifier, writer, invert=options.invert, batch_size=options.batch_size,
                      workers=options.workers or cores, model_calls=cores,
                      advance=bar.advance if bar else (lambda n: None), stop=flag, done=done)
    finally:
        _end(flag, bar, stream, output)
    summary.skipped, summary.empty_folders = expanded.skipped, expanded.empty
    summary.cpu_main, summary.cpu_workers = _cpu_seconds(resource.RUSAGE_SELF), _cpu_seconds(resource.RUSAGE_CHILDREN)
    return summary


def _cpu_seconds(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def _on_ray(model: Path, inputs: list[str], options: ClassifyOptions, stop, stdin) -> Summary:
    from batch import ray_engine  # one line naming the extra when Ray is not installed
    from batch.writer import RowWriter

    ray_options = ray_engine.RayOptions(address=options.address, concurrency=options.concurrency)
    ray_engine.OnnxClassifier(model)  # a bad model fails before Ray starts
    from batch.inputs import output_to_skip

    output = options.output
    stream = None if options.output_dir else _open_rows(output)
    skip = output_to_skip(output) if stream else None  # the walk passes over the output, wherever it lies
    flag = None
    bar = None
    try:
        connected = ray_engine.connect(ray_options)
        flag = _stop_flag(stop)  # after Ray's start-up, which sets its own signal handlers
        # The bar counts rows as the driver receives them; there is no count for URIs up front.
        if options.progress and not options.output_dir and not any(ray_engine.is_uri(i) for i in inputs):
            from batch.inputs import iter_runs
            from batch.progress import ProgressBar

            bar = ProgressBar(iter_runs(inputs, recursive=options.recursive, pattern=options.glob, skip=skip))
        row_format = options.row_format() if stream else None
        writer = RowWriter(stream, row_format, name=str(output) if output else None) if stream else None
        summary = ray_engine.classify(
            inputs, model, writer, out_dir=options.output_dir, out_format=options.format or "csv",
            top_k=options.top_k, invert=options.invert, recursive=options.recursive, pattern=options.glob,
            batch_size=options.batch_size, null=options.null, review_below=options.review_below, skip=skip,
            options=ray_options, advance=bar.advance if bar else (lambda n: None), stop=flag)
    finally:
        _end(flag, bar, stream, output)
        ray_engine.ray.shutdown()
    summary.connect_seconds, summary.joined = connected, bool(options.address or os.environ.get("RAY_ADDRESS"))
    summary.cluster_seconds = connected + summary.ready_seconds
    return summary


def _end(flag, bar, stream: TextIO | None, output: Path | None) -> None:
    """What a run undoes however it ends: our signal handlers (when we installed them), the
    progress bar, the output (closed: a failed close is a failed write)."""
    if hasattr(flag, "restore"):  # a StopFlag we installed, not the caller's callable
        flag.restore()
    if bar:
        bar.close()
    _close_rows(stream, output)


def _stop_flag(stop):
    if stop is not None:
        return stop
    from batch.stop import StopFlag

    return StopFlag().install()


def _freeze_heap() -> None:
    """Everything loaded by now (numpy, onnxruntime, OpenCV) lives until the process
    ends; gc.freeze() keeps the cyclic collector from scanning it again, in the run
    and on the way out, and forked workers share those pages untouched."""
    gc.freeze()


def _open_rows(output: Path | None, append: bool = False) -> TextIO:
    """The stream rows go to: `output`, locked so that a second run on the same file is
    refused (`append`: kept as it is, for --resume); else standard output."""
    if output:
        from core.files import open_output

        return open_output(output, append=append)
    if sys.stdout is None:
        raise UsageError("standard output is closed; give --output")
    return sys.stdout


def _close_rows(stream: TextIO | None, output: Path | None) -> None:
    if output and stream:
        from core.files import writing

        with writing(output):  # a failed close is a failed write
            stream.close()


def _with_stdin_list(inputs: list[str], null: bool, stdin: BinaryIO | None) -> list[str]:
    """`inputs` with each `-` replaced by the paths listed on standard input, read here,
    once, for both engines: so the outputs are checked against them as against named
    paths, and a list's usage errors come before any row. A listed `-` is the file ./-."""
    if "-" not in inputs:
        return inputs
    from batch.inputs import read_path_list

    if stdin is None and sys.stdin is None:
        raise UsageError("- reads paths from standard input, which is closed")
    listed = [os.path.join(".", name) if name == "-" else name
              for name in read_path_list((stdin or sys.stdin.buffer).read(), null)]
    return [path for arg in inputs for path in (listed if arg == "-" else [arg])]


def _check_writes(model: Path, inputs: list[str], writes: dict[str, Path | str | None]) -> None:
    """OutputError, before anything is written, when a file the run writes ({option: path})
    is one it reads, compared by what each names (core.files.same_target): the model, the
    inputs, and what a walked folder holds; or when two outputs name the same file."""
    from core.files import OutputError, refuse_overwriting, refuse_same_targets

    writes = {what: path for what, path in writes.items() if path is not None}
    refuse_same_targets({what: path for what, path in writes.items() if what != "--output-dir"})
    folder = writes.get("--output-dir")
    for what, path in writes.items():
        if what == "--output-dir":
            continue
        refuse_overwriting(path, [model, *_named_like(inputs, Path(path), rows=what == "--output")], what)
        if folder and os.path.realpath(path).startswith(os.path.join(os.path.realpath(folder), "")):
            raise OutputError(f"{os.fsdecode(path)}: {what} lies inside --output-dir, whose files are the rows")


def _named_like(inputs: list[str], output: Path, rows: bool = True) -> list[str]:
    """What the output could overwrite: the named inputs and, when the output is named
    like an image or .npy and lies inside a named folder, the output itself if it is
    there already and holds something other than rows (an image or array the user
    keeps there, which the walk would read: or, for --output, which it passes over,
    so it would be lost unread). `rows`: the output is --output, which may replace
    an earlier run's rows."""
    from batch.inputs import IMAGE_EXTENSIONS
    from batch.writer import holds_rows

    named = [arg for arg in inputs if arg != "-"]
    suffix = output.suffix.lower()
    if (suffix in IMAGE_EXTENSIONS or suffix == ".npy") and not (rows and holds_rows(output)):
        target = os.path.realpath(output)
        for arg in named:
            folder = os.path.join(os.path.realpath(arg), "")
            if os.path.isdir(arg) and target.startswith(folder):
                return [*named, str(output)]
    return named
