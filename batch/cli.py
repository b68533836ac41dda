"""`digits classify`: the runner's command line.

It parses the options, runs `batch.run.classify`, and owns what only a terminal
needs: Ctrl-C handling, the progress bar and the summary line.
"""

import signal
import sys
import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Optional

import typer

from digits.errors import EXIT_INTERRUPTED, EXIT_SOME_FAILED, UsageError


class InvertMode(StrEnum):
    auto = "auto"
    always = "always"
    never = "never"


class OutputFormat(StrEnum):
    csv = "csv"
    jsonl = "jsonl"


class _StopFlag:
    """Ctrl-C (or SIGTERM) asks the run to stop after the block in hand; a second Ctrl-C stops at once."""

    def __init__(self):
        self.requested = False

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
) -> None:
    """Classify digit images and .npy arrays with onnxruntime: one row per digit, in input order.

    Exit codes: 0 all classified; 3 some items failed (their rows carry an error; the rest
    are written); 1 fatal (model unusable, output not writable); 2 usage; 130 interrupted.
    """
    from batch.inputs import ImageItem, expand_inputs
    from batch.model import OnnxClassifier
    from batch.run import classify as run
    from batch.writer import RowWriter, format_for

    expanded = expand_inputs(inputs, recursive=recursive, pattern=glob, null=null)
    has_images = any(isinstance(item, ImageItem) for item in expanded.items)
    classifier = OnnxClassifier(model, spin=not has_images)
    row_format = fmt.value if fmt else format_for(str(output) if output else None)
    if output:
        from digits.files import check_output_target, open_output, refuse_overwriting

        check_output_target(output)
        refuse_overwriting(output, [model, *_named_like(expanded.items, output)])
        stream = open_output(output)  # locked: a second run on the same file is refused
    elif sys.stdout is None:
        raise UsageError("standard output is closed; give --output")
    else:
        stream = sys.stdout

    stop = _StopFlag()
    stop.install()
    bar = _ProgressBar(expanded.items) if (progress or sys.stderr.isatty()) and not quiet else None
    try:
        writer = RowWriter(stream, row_format, top_k or 0, name=str(output) if output else None)
        summary = run(expanded.items, classifier, writer, invert=invert.value, batch_size=batch_size,
                      advance=bar.advance if bar else (lambda n: None), stop=stop)
    finally:
        stop.restore()
        if bar:
            bar.close()
        if output:
            from digits.files import writing

            with writing(output):  # a failed close is a failed write
                stream.close()
    summary.skipped = expanded.skipped
    if not quiet:
        for folder in expanded.empty:
            print(f"note: {folder}: no image or .npy files to classify", file=sys.stderr)
        print(_format_summary(summary), file=sys.stderr)
    if summary.interrupted:
        raise typer.Exit(EXIT_INTERRUPTED)
    if summary.failed:
        raise typer.Exit(EXIT_SOME_FAILED)


def _named_like(items, output: Path) -> list[str]:
    """Inputs that could be the output file: those with its extension, or all of them
    when the output is a symlink or has none (a cheap filter that spares a stat per
    input on every run; refuse_overwriting then compares the files themselves)."""
    suffix = output.suffix.lower()
    if not suffix or output.is_symlink():
        return [item.source for item in items]
    return [item.source for item in items if item.source.lower().endswith(suffix)]


class _ProgressBar:
    def __init__(self, items):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        from batch.arrays import ArrayError, DigitArray
        from batch.inputs import ArrayItem

        total = 0
        for item in items:  # arrays count by rows; only their headers are read here
            if isinstance(item, ArrayItem):
                try:
                    total += len(DigitArray(item.source))
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
            f"per label: {labels}")
