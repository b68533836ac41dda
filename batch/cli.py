"""`digits classify`: parses the options, makes one library call (batch.api.classify), prints its summary."""

import contextlib
import os
import sys
from pathlib import Path
from typing import Annotated, Literal, Optional

import typer

from digits.batch.cores import MAX_WORKERS
from digits.core.atomic import atomic_path, check_atomic_target, json_text
from digits.core.bundled import model_path
from digits.core.errors import EXIT_INTERRUPTED, EXIT_SOME_FAILED
from digits.core.files import file_name
from digits.core.terminal import LINE_LIMIT, printable


# Long by design: Typer reads each option, its help and its check from this signature.
def classify(
    model: Annotated[Path, typer.Argument(
        readable=False, parser=model_path,
        help="A bundled model's name (cnn, mlp: digits models), or an .onnx model: from `digits export`, or a float "
        "classifier taking [batch,784] or [batch,28,28(,1)] pixels/255; or a .tflite file from `digits export "
        "--tflite` (needs the [litert] extra).",
    )],
    inputs: Annotated[list[str], typer.Argument(
        metavar="INPUT...",
        help="Image files, folders, .npy arrays ((N,28,28) or (N,784), uint8 or float 0..1), or - to read paths from "
        "stdin.",
    )],
    output: Annotated[Optional[Path], typer.Option(
        "--output", "-o", parser=file_name, metavar="FILE",
        help="Write rows here as they are classified (default: stdout)",
    )] = None,
    fmt: Annotated[Optional[Literal["csv", "jsonl", "parquet"]], typer.Option(
        "--format",
        help="Row format (default: from the --output name (.jsonl -> jsonl), else csv)",
    )] = None,
    top_k: Annotated[Optional[int], typer.Option(
        "--top-k", min=1, max=10,
        help="Also give the K most likely labels and their probabilities.",
    )] = None,
    invert: Annotated[Literal["auto", "always", "never"], typer.Option(
        help="Invert images to white-on-black: auto judges from the border (from the whole image, when it is cleaned).",
    )] = "auto",
    clean: Annotated[bool, typer.Option(
        "--clean/--no-clean",
        help="Take form artefacts out of images before fitting the digit: printed lines (boxes, grid cells, base "
        "lines, comb ticks), specks, cut neighbours at the edge. --no-clean for images that are already clean crops.",
    )] = True,
    recursive: Annotated[bool, typer.Option("--recursive/--no-recursive", help="Walk folders recursively.")] = True,
    glob: Annotated[Optional[str], typer.Option(help="Only files in folders whose name matches, e.g. '*.png'.")] = None,
    batch_size: Annotated[int, typer.Option(min=1, max=65536, help="Digits per onnxruntime call.")] = 1024,
    null: Annotated[bool, typer.Option(
        "--null", "-0",
        help="With -, the list on stdin is NUL-separated (find -print0), as xargs -0 reads it.",
    )] = False,
    progress: Annotated[bool, typer.Option(
        "--progress",
        help="Show a progress bar even when stderr is not a terminal.",
    )] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar and no summary.")] = False,
    resume: Annotated[bool, typer.Option(
        "--resume",
        help="Continue an interrupted run: keep the rows already in --output, classify only the inputs without one, "
        "append.",
    )] = False,
    engine: Annotated[Literal["local", "ray"], typer.Option(
        help="local: this process and its decode workers; ray: a Ray cluster (needs the [ray] extra).",
    )] = "local",
    address: Annotated[Optional[str], typer.Option(
        help="--engine ray: the cluster to join (default: RAY_ADDRESS, else start a local Ray).",
    )] = None,
    output_dir: Annotated[Optional[str], typer.Option(
        "--output-dir",
        help="--engine ray: write rows as shards into this folder or URI (csv, jsonl or parquet), not in input order.",
    )] = None,
    concurrency: Annotated[Optional[int], typer.Option(
        min=1,
        help="--engine ray: model actors, one CPU each (default and most: one per CPU of the cluster).",
    )] = None,
    workers: Annotated[Optional[int], typer.Option(
        min=1, max=MAX_WORKERS,
        help="Local engine: worker processes for images, at most (default: one per usable core: CPU affinity and "
        "cgroup quota).",
    )] = None,
    review_below: Annotated[Optional[float], typer.Option(
        "--review-below",
        help="Mark rows whose confidence is under P (0..1) in a review column, and count them in the summary.",
    )] = None,
    not_digits: Annotated[Literal["mark", "reject", "keep"], typer.Option(
        "--not-digits",
        help="Rows that are not digits (blank, or the model's digit_score under its threshold): mark them in a "
        "not_digit column, reject them (empty label, 'not a digit' in error; not a failure), or keep them as they are.",
    )] = "mark",
    summary_json: Annotated[Optional[Path], typer.Option(
        "--summary-json", parser=file_name, metavar="FILE",
        help="Also write the summary to this file as JSON (items, classified, not_digits, blank, failed, skipped, "
        "kept, seconds, digits/s, per label).",
    )] = None,
) -> None:
    """Classify digit images and .npy arrays with onnxruntime: one row per digit, in input order.

    Exit codes: 0 all classified (images that are not digits included); 3 some items failed (their
    rows carry an error; the rest are written); 1 fatal (model unusable, output not writable); 2 usage; 130 interrupted.
    """
    # numpy's and OpenCV's OpenBLAS each start a thread per core at import, which spin
    # between calls; classify makes no BLAS calls worth a thread, and its cores go to
    # the workers and onnxruntime (docs/decisions.md). Set before numpy is first imported.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from digits.batch.api import ClassifyOptions
    from digits.batch.api import classify as run

    options = ClassifyOptions(
        output=output, format=fmt, top_k=top_k or 0, review_below=review_below, not_digits=not_digits, invert=invert,
        recursive=recursive, glob=glob, batch_size=batch_size, null=null, resume=resume, workers=workers, clean=clean,
        engine=engine, address=address, output_dir=output_dir, concurrency=concurrency,
        progress=(progress or sys.stderr.isatty()) and not quiet)
    if summary_json:  # checked before the run, not after it; against the inputs in run()
        check_atomic_target(summary_json)
    summary = run(model, inputs, options, also_writes={"--summary-json": summary_json})
    if summary_json:
        with atomic_path(summary_json) as temp:
            temp.write_text(json_text(summary.to_dict()))
    if not quiet:
        _tell(format_summary(summary))
    if summary.interrupted:
        raise typer.Exit(EXIT_INTERRUPTED)
    if summary.failed or summary.kept_failed:  # as the uninterrupted run would have ended
        raise typer.Exit(EXIT_SOME_FAILED)


def _tell(text: str) -> None:
    """The summary on stderr, if stderr takes it: a full disk or a closed pipe there
    changes nothing about the rows, which the exit code reports."""
    try:
        print(text, file=sys.stderr, flush=True)
    except (OSError, ValueError, AttributeError):  # ENOSPC, EPIPE; closed or None
        with contextlib.suppress(OSError):  # what the failed write left buffered would fail again at exit
            sys.stderr = open(os.devnull, "w")


def format_summary(s) -> str:
    """The summary as the lines printed on stderr: Ray's ready time, notes, the counts."""
    labels = "  ".join(f"{label}: {count:,}" for label, count in enumerate(s.per_label))
    head = "interrupted after" if s.interrupted else "done:"
    lines = []
    if s.cluster_seconds is not None:  # --engine ray: what came before the job's own seconds
        lines.append(f"ray: ready in {s.cluster_seconds:.2f} s ({s.connect_seconds:.2f} s to "
                     f"{'join' if s.joined else 'start'} Ray, {s.ready_seconds:.2f} s for {s.actors} model actors on "
                     f"{s.cpus} CPUs of {s.nodes} node{'s' if s.nodes != 1 else ''})")
    lines += [f"note: {printable(folder, LINE_LIMIT)}: no image or .npy files to classify"
              for folder in s.empty_folders]
    lines += [f"{head} {s.items:,} items, {s.classified:,} classified, {s.failed:,} failed, "
             f"{s.skipped:,} skipped in {s.seconds:.2f} s ({s.digits_per_second:,.0f} digits/s)",
             f"per label: {labels}"]
    if s.not_digits or s.blank:
        lines.append(f"not digits: {s.not_digits:,} under the model's digit_score threshold, {s.blank:,} blank")
    if s.review:
        lines.append(f"to review: {s.review:,} rows under the --review-below confidence")
    if s.kept:
        lines.append(f"kept {s.kept:,} rows already in the output ({s.kept_failed:,} failed)")
    return "\n".join(lines)
