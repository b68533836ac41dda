"""`digits classify`: the runner's command line.

It parses the options and runs the chosen engine (`batch.run.classify` or
`batch.ray_engine.classify`). What it owns besides: the decode workers' lifetime,
opening (or resuming) the output, Ctrl-C handling, the progress bar and the summary.
"""

import os
import signal
import sys
import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Optional, TextIO

import typer

from digits.errors import EXIT_INTERRUPTED, EXIT_SOME_FAILED, UsageError


class InvertMode(StrEnum):
    auto = "auto"
    always = "always"
    never = "never"


class OutputFormat(StrEnum):
    csv = "csv"
    jsonl = "jsonl"
    parquet = "parquet"  # --engine ray --output-dir only


class Engine(StrEnum):
    local = "local"
    ray = "ray"


class _StopFlag:
    """Ctrl-C (or SIGTERM) asks the run to stop after the block in hand; a second Ctrl-C stops at once."""

    def __init__(self):
        self.requested = False
        self._previous: dict = {}

    def __call__(self) -> bool:
        return self.requested

    def _handle(self, signum, frame):
        self.requested = True
        # A second Ctrl-C goes to the handler the program had (digits.cli: exit 130).
        signal.signal(signal.SIGINT, self._previous[signal.SIGINT])

    def install(self):
        self._previous = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}

    def restore(self):
        for s, handler in self._previous.items():
            signal.signal(s, handler)


def classify(
    model: Annotated[Path, typer.Argument(readable=False, help="An .onnx model: from `digits export`, or a float classifier taking [batch,784] or [batch,28,28(,1)] pixels/255.")],
    inputs: Annotated[list[str], typer.Argument(metavar="INPUT...", help="Image files, folders, .npy arrays ((N,28,28) or (N,784), uint8 or float 0..1), or - to read paths from stdin.")],
    output: Annotated[Optional[Path], typer.Option("--output", "-o", readable=False, help="Write rows here as they are classified (default: stdout)")] = None,
    fmt: Annotated[Optional[OutputFormat], typer.Option("--format", help="Row format (default: from the --output name (.jsonl -> jsonl), else csv)")] = None,
    top_k: Annotated[Optional[int], typer.Option("--top-k", min=1, max=10, help="Also give the K most likely labels and their probabilities.")] = None,
    invert: Annotated[InvertMode, typer.Option(help="Invert images to white-on-black: auto judges from the border.")] = InvertMode.auto,
    recursive: Annotated[bool, typer.Option("--recursive/--no-recursive", help="Walk folders recursively.")] = True,
    glob: Annotated[Optional[str], typer.Option(help="Only files in folders whose name matches, e.g. '*.png'.")] = None,
    batch_size: Annotated[int, typer.Option(min=1, max=65536, help="Digits per onnxruntime call.")] = 1024,
    null: Annotated[bool, typer.Option("--null", "-0", help="With -, the list on stdin is NUL-separated (find -print0), as xargs -0 reads it.")] = False,
    progress: Annotated[bool, typer.Option("--progress", help="Show a progress bar even when stderr is not a terminal.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar and no summary.")] = False,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run: keep the rows already in --output, classify only the inputs without one, append.")] = False,
    engine: Annotated[Engine, typer.Option(help="local: this process and its decode workers; ray: a Ray cluster (needs the [ray] extra).")] = Engine.local,
    address: Annotated[Optional[str], typer.Option(help="--engine ray: the cluster to join (default: RAY_ADDRESS, else start a local Ray).")] = None,
    output_dir: Annotated[Optional[str], typer.Option("--output-dir", help="--engine ray: write rows as shards into this folder or URI (csv, jsonl or parquet), not in input order.")] = None,
    concurrency: Annotated[Optional[int], typer.Option(min=1, help="--engine ray: model actors, one CPU each (default and most: one per CPU of the cluster).")] = None,
) -> None:
    """Classify digit images and .npy arrays with onnxruntime: one row per digit, in input order.

    Exit codes: 0 all classified; 3 some items failed (their rows carry an error; the rest
    are written); 1 fatal (model unusable, output not writable); 2 usage; 130 interrupted.
    """
    # numpy's and OpenCV's OpenBLAS each start a thread per core at import, which spin
    # between calls; classify makes no BLAS calls worth a thread, and its cores go to
    # the decoders and onnxruntime (measured: 0.52 -> 0.45 s of CPU for 10,000 PNGs).
    # Set before numpy is first imported, which is below.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    if engine == Engine.ray:
        if resume:
            raise typer.BadParameter("--resume is for the local engine", param_hint="--resume")
        _classify_on_ray(model, inputs, output, fmt, top_k, invert, recursive, glob, batch_size, null, progress,
                         quiet, address, output_dir, concurrency)
        return
    if output_dir or address or concurrency or fmt == OutputFormat.parquet:
        raise typer.BadParameter("--output-dir, --address, --concurrency and --format parquet need --engine ray")
    if resume and not output:
        raise typer.BadParameter("needs --output FILE: the rows to resume are read from it", param_hint="--resume")
    # Items stream from the walk as the run goes: a folder of a million files is never
    # held as a million items. So whether images come is judged from the arguments.
    arrays_only = all(arg.lower().endswith(".npy") and Path(arg).is_file() for arg in inputs)
    pool = None
    if not arrays_only:
        # The decoders are forked first, while this process is small and runs no
        # onnxruntime threads; they are ready by the time the model is loaded.
        from batch.decoders import DecodePool

        _freeze_heap()  # before the fork: the workers then share these pages untouched
        pool = DecodePool(max(2, _cores()), invert.value)
    try:
        _classify(model, inputs, output, fmt, top_k, invert, recursive, glob, batch_size, null, progress, quiet,
                  resume, pool)
    finally:
        if pool is not None:
            pool.close()


def _classify(model, inputs, output, fmt, top_k, invert, recursive, glob, batch_size, null, progress, quiet,
               resume, pool) -> None:
    from batch.inputs import Expanded, iter_runs
    from batch.model import OnnxClassifier
    from batch.run import classify as run
    from batch.writer import RowWriter, resume_output

    # onnxruntime runs each call on the calling thread alone: image blocks are
    # classified between the decoders' turns (a second onnxruntime thread waited
    # for a core at every layer of the model when the decoders had them: a
    # 10,000-PNG run ~15% slower, measured), and arrays are classified one call
    # per core side by side (batch/run.py: _predicted).
    classifier = OnnxClassifier(model, threads=1, spin=False)
    _freeze_heap()
    expanded = Expanded()
    items = iter_runs(inputs, recursive=recursive, pattern=glob, null=null, out=expanded)
    row_format = _row_format(fmt, output)
    # Locked before the rows are read: a second run cannot append to the same file.
    stream = _open_rows(output, [model, *_named_like(inputs, output)] if output else [], append=resume)
    if resume:
        done = resume_output(output, row_format, top_k or 0)  # may cut off a torn last line
        stream.seek(0, 2)
    else:
        done = None

    stop = _StopFlag()
    stop.install()
    bar = None
    if _show_progress(progress, quiet):
        # The total costs a second walk (names only, nothing held); stdin can be read only once.
        bar = _ProgressBar(None if "-" in inputs else iter_runs(inputs, recursive=recursive, pattern=glob))
    try:
        writer = RowWriter(stream, row_format, top_k or 0, name=str(output) if output else None,
                           header=not (done and done.header))
        summary = run(items, classifier, writer, invert=invert.value, batch_size=batch_size,
                      advance=bar.advance if bar else (lambda n: None), stop=stop, done=done, pool=pool,
                      model_calls=_cores())
    finally:
        stop.restore()
        if bar:
            bar.close()
        _close_rows(stream, output)
    summary.skipped = expanded.skipped
    _finish(summary, quiet, expanded.empty)


def _cores() -> int:
    """The cores this process may run on (a container's or taskset's share, not the machine's)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _freeze_heap() -> None:
    """Everything loaded by now (numpy, onnxruntime, OpenCV, Typer) lives until the
    process ends; gc.freeze() keeps the cyclic collector from scanning it again, in
    the run and in the collections Python makes on its way out (measured: the
    interpreter's exit after these imports took 33 ms, 16 ms frozen)."""
    import gc

    gc.freeze()


def _finish(summary, quiet: bool, empty_folders: list[str] = ()) -> None:
    """The summary line and the exit code, the same for every engine."""
    if not quiet:
        for folder in empty_folders:
            print(f"note: {folder}: no image or .npy files to classify", file=sys.stderr)
        print(_format_summary(summary), file=sys.stderr)
    if summary.interrupted:
        raise typer.Exit(EXIT_INTERRUPTED)
    if summary.failed or getattr(summary, "kept_failed", 0):  # as the uninterrupted run would have ended
        raise typer.Exit(EXIT_SOME_FAILED)


def _row_format(fmt: OutputFormat | None, output: Path | None) -> str:
    from batch.writer import format_for  # numpy: not for --help

    return fmt.value if fmt else format_for(str(output) if output else None)


def _show_progress(progress: bool, quiet: bool) -> bool:
    return (progress or sys.stderr.isatty()) and not quiet


def _close_rows(stream: TextIO | None, output: Path | None) -> None:
    if output and stream:
        from digits.files import writing

        with writing(output):  # a failed close is a failed write
            stream.close()


def _open_rows(output: Path | None, inputs: list, append: bool = False) -> TextIO:
    """The stream rows go to: --output, checked not to be one of `inputs` and locked so that a
    second run on the same file is refused (`append`: kept as it is, for --resume); else
    standard output."""
    if output:
        from digits.files import check_output_target, open_output, refuse_overwriting

        check_output_target(output)
        refuse_overwriting(output, inputs)
        return open_output(output, append=append)
    if sys.stdout is None:
        raise UsageError("standard output is closed; give --output")
    return sys.stdout


def _classify_on_ray(model, inputs, output, fmt, top_k, invert, recursive, glob, batch_size, null, progress,
                     quiet, address, output_dir, concurrency) -> None:
    if output and output_dir:
        raise typer.BadParameter("give --output or --output-dir, not both")
    if fmt == OutputFormat.parquet and not output_dir:
        raise typer.BadParameter("--format parquet writes shards: it needs --output-dir")
    from batch import ray_engine  # one line naming the extra when Ray is not installed
    from batch.writer import RowWriter

    options = ray_engine.RayOptions(address=address, concurrency=concurrency)
    ray_engine.OnnxClassifier(model)  # a bad model fails before Ray starts
    # Every named input is compared with --output (a listing would need Ray's workers).
    stream = None if output_dir else _open_rows(output, [model, *inputs])
    stop = _StopFlag()
    bar = None
    try:
        connected = ray_engine.connect(options)
        stop.install()  # after Ray's start-up, which sets its own signal handlers
        # The bar counts rows as the driver receives them; there is no count for URIs up front.
        if _show_progress(progress, quiet) and not output_dir and not any(
                ray_engine.is_uri(i) for i in inputs) and "-" not in inputs:
            from batch.inputs import iter_runs

            bar = _ProgressBar(iter_runs(inputs, recursive=recursive, pattern=glob))
        writer = RowWriter(stream, _row_format(fmt, output), top_k or 0,
                           name=str(output) if output else None) if stream else None
        summary = ray_engine.classify(
            inputs, model, writer, out_dir=output_dir, out_format=fmt.value if fmt else "csv",
            top_k=top_k or 0, invert=invert.value, recursive=recursive, pattern=glob,
            batch_size=batch_size, null=null, options=options,
            advance=bar.advance if bar else (lambda n: None), stop=stop)
    finally:
        stop.restore()  # nothing to restore when Ray's start-up failed before install()
        if bar:
            bar.close()
        _close_rows(stream, output)
        ray_engine.ray.shutdown()
    if not quiet:
        print(f"ray: ready in {connected + summary.ready_seconds:.2f} s ({connected:.2f} s to "
              f"{'join' if address or os.environ.get('RAY_ADDRESS') else 'start'} Ray, "
              f"{summary.ready_seconds:.2f} s for {summary.actors} model actors on {summary.cpus} CPUs of "
              f"{summary.nodes} node{'s' if summary.nodes != 1 else ''})",
              file=sys.stderr)
    _finish(summary, quiet, summary.empty)


def _named_like(inputs: list[str], output: Path) -> list[str]:
    """What the output could overwrite: the named inputs and, when the output is named
    like an image or .npy and lies inside a named folder, the output itself (the walk
    would read it; the run streams its items, so they are not all at hand here)."""
    from batch.inputs import IMAGE_EXTENSIONS

    named = [arg for arg in inputs if arg != "-"]
    suffix = output.suffix.lower()
    if suffix in IMAGE_EXTENSIONS or suffix == ".npy":
        target = os.path.realpath(output)
        for arg in named:
            folder = os.path.join(os.path.realpath(arg), "")
            if os.path.isdir(arg) and target.startswith(folder):
                return [*named, str(output)]
    return named


class _ProgressBar:
    def __init__(self, entries):
        """`entries`: a second iter_runs over the inputs, for the total; None: no total."""
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        from batch.arrays import ArrayError, DigitArray
        from batch.inputs import ArrayItem

        total = None if entries is None else 0  # no total: a bar that counts up
        for entry in entries or ():  # arrays count by rows; only their headers are read here
            if isinstance(entry, list):  # a run of images
                total += len(entry)
            elif isinstance(entry, ArrayItem):
                try:
                    total += len(DigitArray(entry.source))
                except ArrayError:
                    total += 1
            else:
                total += 1
        # No refresh thread: decode workers are forked, and a fork should not
        # copy a thread that may hold a lock. The bar redraws on each advance.
        self.progress = Progress(TextColumn("classifying"), BarColumn(), MofNCompleteColumn(),
                                 TimeRemainingColumn(), transient=True, auto_refresh=False,
                                 # On stderr, never into rows on stdout; drawn with cursor
                                 # controls even into a log file when --progress asks for it.
                                 console=Console(stderr=True, force_terminal=True))
        self.task = self.progress.add_task("classify", total=total)
        self.progress.start()
        self._drawn = 0.0

    def advance(self, n: int) -> None:
        self.progress.advance(self.task, n)
        now = time.monotonic()
        if now - self._drawn >= 0.1:  # ten redraws a second are plenty
            self.progress.refresh()
            self._drawn = now

    def close(self) -> None:
        self.progress.stop()


def _format_summary(s) -> str:
    labels = "  ".join(f"{label}: {count:,}" for label, count in enumerate(s.per_label))
    head = "interrupted after" if s.interrupted else "done:"
    return (f"{head} {s.items:,} items, {s.classified:,} classified, {s.failed:,} failed, "
            f"{s.skipped:,} skipped in {s.seconds:.2f} s ({s.digits_per_second:,.0f} digits/s)\n"
            f"per label: {labels}"
            + (f"\nkept {s.kept:,} rows already in the output ({s.kept_failed:,} failed)" if s.kept else ""))
