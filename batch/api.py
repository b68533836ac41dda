"""Classify as a library call: `classify(model, inputs, options) -> Summary`.

What a run owns besides the engine's own work, for any caller: the output (checked against the
inputs, locked, or resumed), stopping on Ctrl-C/SIGTERM, the progress bar, the choice of engine.
"""

import contextlib
import gc
import os
import resource
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import BinaryIO, Literal

from digits.batch.cores import usable_cores
from digits.batch.formats import RowFormat
from digits.batch.inputs import IMAGE_EXTENSIONS, Expanded, is_uri, iter_runs, output_to_skip, read_path_list
from digits.batch.model import load_classifier
from digits.batch.resume import holds_rows, resumable, resume_output
from digits.batch.summary import Summary
from digits.batch.writer import RowWriter
from digits.core import interrupts
from digits.core.errors import UsageError
from digits.core.files import OutputError, open_output, refuse_overwriting, refuse_same_targets, writing


@dataclass(frozen=True)
class ClassifyOptions:
    """Everything a run can be asked for; the defaults are `digits classify`'s."""

    output: Path | None = None  # rows go here, locked while written; None: standard output
    format: Literal["csv", "jsonl", "parquet"] | None = None  # None: from the output's name, else csv
    top_k: int = 0  # also give the K most likely labels and their probabilities
    review_below: float | None = None  # mark rows whose confidence is under this
    not_digits: Literal["mark", "reject", "keep"] = "mark"  # what rows that are not digits get (batch/formats.py)
    invert: Literal["auto", "always", "never"] = "auto"
    clean: bool = True  # take form artefacts out of images (batch/forms.py); False: --no-clean
    recursive: bool = True
    glob: str | None = None  # only files in folders whose name matches
    batch_size: int = 1024  # array digits per model call
    null: bool = False  # `-`: the list on stdin is NUL-separated
    resume: bool = False  # keep the rows already in `output`; classify only what has none
    workers: int | None = None  # worker processes for images; None: one per usable core
    progress: bool = False  # draw a progress bar on stderr
    engine: Literal["local", "ray"] = "local"
    address: str | None = None  # ray: the cluster to join (default RAY_ADDRESS, else a local Ray)
    output_dir: str | None = None  # ray: shards into this folder or URI, not in input order
    concurrency: int | None = None  # ray: model actors

    @property
    def decoding(self) -> str:
        """How images are decoded, as the engines pass it on to batch.decode.decode_digits."""
        from digits.batch.decode import NO_CLEAN

        return self.invert if self.clean else self.invert + NO_CLEAN

    def check(self) -> None:
        """UsageError for options that do not go together."""
        if self.not_digits not in ("mark", "reject", "keep"):
            raise UsageError(f"--not-digits {self.not_digits}: give mark, reject or keep")
        if self.review_below is not None and not 0 < self.review_below <= 1:
            raise UsageError(f"--review-below {self.review_below:g}: give a confidence between 0 and 1")
        if self.engine == "ray":
            if self.resume or self.workers:
                raise UsageError(f"{'--resume' if self.resume else '--workers'} is for the local engine "
                                 "(--engine ray runs --concurrency model actors)")
            if self.output and self.output_dir:
                raise UsageError("give --output or --output-dir, not both")
            if self.format == "parquet" and not self.output_dir:
                raise UsageError("--format parquet writes shards: it needs --output-dir")
            return
        if self.output_dir or self.address or self.concurrency or self.format == "parquet":
            raise UsageError("--output-dir, --address, --concurrency and --format parquet need --engine ray")
        if self.resume and not self.output:
            raise UsageError("--resume needs --output FILE: the rows to resume are read from it")

    def row_format(self, classifier=None):
        """The rows' RowFormat; with a digit_score column when `classifier` gives one."""
        fmt = self.format or ("jsonl" if str(self.output).lower().endswith((".jsonl", ".ndjson")) else "csv")
        scored = classifier is not None and classifier.score_output is not None
        return RowFormat(fmt, self.top_k, self.review_below, scored, self.not_digits)


def classify(model: Path, inputs: list[str], options: ClassifyOptions = ClassifyOptions(), *,
             stop: Callable[[], bool] | None = None, stdin: BinaryIO | None = None,
             also_writes: dict[str, Path] | None = None) -> Summary:
    """Classify `inputs` (image files, folders, .npy arrays, `-` for a list on `stdin`) with the model
    at `model`, writing one row per digit; returns what the run did.

    `stop`: asked between blocks, ends the run early with every written row whole; None: Ctrl-C and
    SIGTERM ask it (core.interrupts; from the main thread). `also_writes`: files the caller writes after
    the run ({"--summary-json": path}), checked with the run's outputs against every input first.
    DigitsError for anything the caller can fix (a bad model, an output that cannot be written or
    resumed, options that do not go together); core.interrupts.Interrupted when asked to stop before
    the first block (loading the model, reading the `-` list, starting Ray)."""
    options.check()
    if options.output is not None and not isinstance(options.output, Path):  # a str is taken too
        options = replace(options, output=Path(options.output))
    with contextlib.nullcontext() if stop is not None else interrupts.installed():  # the run asks between blocks
        inputs = _with_stdin_list(inputs, options.null, stdin)
        _check_writes(Path(model), inputs, {"--output": options.output, "--output-dir": options.output_dir,
                                            **(also_writes or {})})
        return _run(Path(model), inputs, options, stop or (lambda: interrupts.asked() is not None))


def _run(model: Path, inputs: list[str], options: ClassifyOptions, stop: Callable[[], bool]) -> Summary:
    """The run on either engine: what both need is set up here, the rows come from batch.run or batch.ray_engine."""
    on_ray = options.engine == "ray"
    if on_ray:
        with interrupts.raising():  # Ray's import takes seconds
            from digits.batch import ray_connect, ray_engine  # one line naming the extra when Ray is not installed
    # Loaded and probed once, so a model that cannot serve is refused before any row (for Ray, before Ray starts;
    # the actors get its file). One onnxruntime thread: the local engine runs a call per core, Ray an actor per CPU.
    classifier = load_classifier(model, threads=1, spin=False, probe=False)
    interrupts.polled(classifier.probe, cancel=classifier.stop)  # the probe runs the model, where no handler runs
    if not on_ray:
        # What is loaded by now (numpy, onnxruntime, OpenCV) lives until the process ends: the cyclic
        # collector need not scan it again, and forked workers share those pages untouched.
        gc.freeze()
    output, row_format = options.output, options.row_format(classifier)
    stream, done = _open_rows(options, row_format)
    walk = partial(iter_runs, inputs, recursive=options.recursive, pattern=options.glob,
                   skip=output_to_skip(output))  # the walk passes over the output, wherever it lies
    expanded = Expanded()
    items = walk(out=expanded, uris=on_ray)
    bar = None
    try:
        connected = ray_connect.connect(options.address) if on_ray else 0.0
        # The bar counts rows as they are written; there is no count for URIs up front.
        if options.progress and stream and not (on_ray and any(map(is_uri, inputs))):
            from digits.batch.progress import ProgressBar

            bar = ProgressBar(walk())
        writer = RowWriter(stream, row_format, name=str(output) if output else None,
                           header=not (done and done.header)) if stream else None
        advance = bar.advance if bar else (lambda n: None)
        if on_ray:
            summary = ray_engine.classify(
                items, classifier, writer, row_format=row_format, out_dir=options.output_dir,
                invert=options.decoding, batch_size=options.batch_size, concurrency=options.concurrency,
                advance=advance, stop=stop)
        else:
            from digits.batch.run import classify as run  # it loads OpenCV: only once the options are checked

            cores = usable_cores()
            summary = run(items, classifier, writer, invert=options.decoding, batch_size=options.batch_size,
                          workers=options.workers or cores, model_calls=cores, advance=advance, stop=stop, done=done)
    finally:
        if bar:
            bar.close()
        if output and stream:
            with writing(output):  # a failed close is a failed write
                stream.close()
        if on_ray:
            ray_connect.ray.shutdown()
    summary.skipped, summary.empty_folders, summary.model = expanded.skipped, expanded.empty, classifier.describe()
    if on_ray:
        summary.connect_seconds, summary.joined = connected, bool(options.address or os.environ.get("RAY_ADDRESS"))
        summary.cluster_seconds = connected + summary.ready_seconds
    else:
        summary.cpu_main, summary.cpu_workers = (sum(resource.getrusage(who)[:2])
                                                 for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return summary


def _open_rows(options: ClassifyOptions, row_format) -> tuple:
    """The stream rows go to: --output, locked so that a second run on the same file is refused; else
    standard output; None for --output-dir's shards. With --resume, also what the file holds already."""
    output = options.output
    if options.output_dir:
        return None, None
    if not output:
        if sys.stdout is None:
            raise UsageError("standard output is closed; give --output")
        return sys.stdout, None
    if not options.resume:
        return open_output(output), None
    resumable(output)  # a FIFO would block the open below, then the reading
    stream = open_output(output, append=True)  # locked before the rows are read: no second run appends
    done = resume_output(output, row_format)  # may cut off a torn last line
    stream.seek(0, 2)
    return stream, done


def _with_stdin_list(inputs: list[str], null: bool, stdin: BinaryIO | None) -> list[str]:
    """`inputs` with each `-` replaced by the paths listed on standard input, read once, here: the outputs
    are checked against them as against named paths, before any row. A listed `-` is the file ./-."""
    if "-" not in inputs:
        return inputs
    if stdin is None and sys.stdin is None:
        raise UsageError("- reads paths from standard input, which is closed")
    with interrupts.raising():  # a read that may wait on its writer, and cannot ask whether to stop
        names = read_path_list((stdin or sys.stdin.buffer).read(), null)
    listed = [os.path.join(".", name) if name == "-" else name for name in names]
    return [path for arg in inputs for path in (listed if arg == "-" else [arg])]


def _check_writes(model: Path, inputs: list[str], writes: dict[str, Path | str | None]) -> None:
    """OutputError, before anything is written, when a file the run writes ({option: path}) is one it
    reads (the model, the inputs, what a walked folder holds), or two outputs name the same file."""
    writes = {what: path for what, path in writes.items() if path is not None}
    folder = writes.pop("--output-dir", None)
    refuse_same_targets(writes)
    for what, path in writes.items():
        refuse_overwriting(path, [model, *_named_like(inputs, Path(path), rows=what == "--output")], what)
        if folder and os.path.realpath(path).startswith(os.path.join(os.path.realpath(folder), "")):
            raise OutputError(f"{os.fsdecode(path)}: {what} lies inside --output-dir, whose files are the rows")


def _named_like(inputs: list[str], output: Path, rows: bool = True) -> list[str]:
    """What the output could overwrite: the named inputs and, when it is named like an image or .npy inside a named
    folder, the output itself if it holds something other than rows (an image or array the walk would read, or pass over
    and lose). `rows`: it is --output, which may replace an earlier run's rows."""
    named = [arg for arg in inputs if arg != "-"]
    suffix = output.suffix.lower()
    if (suffix in IMAGE_EXTENSIONS or suffix == ".npy") and not (rows and holds_rows(output)):
        target = os.path.realpath(output)
        for arg in named:
            folder = os.path.join(os.path.realpath(arg), "")
            if os.path.isdir(arg) and target.startswith(folder):
                return [*named, str(output)]
    return named
