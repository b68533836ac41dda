"""`digits demo`: the whole promise in one run, each step a `digits` process as a user would
type it. Numbers come from the steps' typed outputs (metrics.json, the parity report,
classify's --summary-json), never from their messages.
"""

import csv
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import typer

from digits.core.atomic import atomic_path
from digits.core.contract import PROBABILITIES
from digits.core.errors import DigitsError, require_extra
from digits.core.files import writing
from digits.trainer.model import MAX_SEED, RECIPE


def _digits(*args) -> None:
    """Run one `digits` command; its progress shows on our stderr, its stdout is not shown."""
    print(f"\n$ digits {' '.join(map(str, args))}", file=sys.stderr, flush=True)
    result = subprocess.run([sys.executable, "-m", "digits", *map(str, args)], capture_output=True, text=True)
    # The step's own error line becomes the demo's one error line, not a second one.
    lines = result.stderr.splitlines(keepends=True)
    errors = [line.removeprefix("digits: error: ").strip() for line in lines if line.startswith("digits: error: ")]
    sys.stderr.write("".join(line for line in lines if not line.startswith("digits: error: ")))
    if result.returncode != 0:
        why = f": {errors[-1]}" if errors else ""
        raise DigitsError(f"demo step failed: digits {args[0]} exited {result.returncode}{why}")


def _classify_accuracy(predictions: Path, truth: np.ndarray) -> float:
    with open(predictions, newline="") as f:
        labels = [int(row["label"]) for row in csv.DictReader(f)]
    if len(labels) != len(truth):
        raise DigitsError(f"{predictions}: {len(labels)} rows for {len(truth)} digits")
    return float((np.array(labels) == truth).mean())


def write_test_digits(digits: np.ndarray, labels: np.ndarray, folder: Path, array: Path) -> None:
    """The test digits as numbered PNGs (sorted order = test order) and as one .npy."""
    import cv2

    with writing(folder):
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob("*_label*.png"):  # from an earlier demo into the same folder
            stale.unlink()
    for i, (digit, label) in enumerate(zip(digits, labels)):
        path = folder / f"{i:05d}_label{label}.png"
        with writing(path):  # cv2.imwrite only returns False on a full disk; write the bytes ourselves
            path.write_bytes(cv2.imencode(".png", digit)[1].tobytes())
    with atomic_path(array) as temp:
        np.save(temp, digits)


def demo(
    out: Annotated[Path, typer.Option(
        readable=False, help="Folder for everything the demo makes.")] = Path("runs/demo"),
    data: Annotated[Optional[Path], typer.Option(readable=False, help="MNIST in any `digits train --data` form "
                                                 "(default: Keras's MNIST, else the bundled sample)")] = None,
    epochs: Annotated[int, typer.Option(
        min=1, max=1_000_000, help="Training epochs (default: the seed's recipe).")] = RECIPE.epochs,
    seed: Annotated[int, typer.Option(
        min=0, max=MAX_SEED, help="Seeds the training split, weights and dropout.")] = RECIPE.seed,
) -> None:
    """Run the whole job: train, export with parity and int8, classify a PNG folder and a .npy, report."""
    require_extra("train", "digits demo", ("tensorflow", "keras", "tf2onnx", "matplotlib"))
    print(run_demo(out, data, epochs, seed))


def run_demo(out: Path, data_path: Path | None = None, epochs: int = RECIPE.epochs, seed: int = RECIPE.seed) -> str:
    """Run every step; returns the summary table. DigitsError if any step fails."""
    start = time.perf_counter()
    with writing(out):
        out.mkdir(parents=True, exist_ok=True)
    train_dir, model_onnx = out / "train", out / "model.onnx"

    data_args = ["--data", data_path] if data_path else []
    _digits("train", "--out", train_dir, "--epochs", epochs, "--seed", seed, *data_args)
    metrics = json.loads((train_dir / "metrics.json").read_text())
    _digits("export", train_dir / "model.keras", "--out", model_onnx, "--int8", *data_args)
    parity = json.loads((out / "model.parity.json").read_text())

    # The same held-out digits the trainer scored (same source, same fixed split).
    from digits.trainer.data import load_mnist

    data = load_mnist(data_path, notice=lambda _: None)
    png_dir, npy = out / "test-digits", out / "test-digits.npy"
    write_test_digits(data.x_test, data.y_test, png_dir, npy)

    png_rows, npy_rows = out / "predictions-png.csv", out / "predictions-npy.csv"
    png_summary, npy_summary = out / "summary-png.json", out / "summary-npy.json"
    _digits("classify", model_onnx, png_dir, "--output", png_rows, "--summary-json", png_summary)
    _digits("classify", model_onnx, npy, "--output", npy_rows, "--summary-json", npy_summary)
    png_rate, npy_rate = (json.loads(p.read_text())["digits_per_second"] for p in (png_summary, npy_summary))

    probs = parity["outputs"][PROBABILITIES]
    lines = [
        ("data", metrics["data_source"]),
        ("sizes", f"{metrics['train_size']:,} train, {metrics['validation_size']:,} validation, "
                  f"{metrics['test_size']:,} test digits"),
        ("training", f"{metrics['epochs']} epochs in {metrics['train_seconds']:.1f} s"),
        ("accuracy: Keras", f"{metrics['test_accuracy']:.4f}"),
        ("accuracy: ONNX, PNG folder", f"{_classify_accuracy(png_rows, data.y_test):.4f}  (digits classify)"),
        ("accuracy: ONNX, .npy", f"{_classify_accuracy(npy_rows, data.y_test):.4f}  (digits classify)"),
        ("accuracy: ONNX int8", f"{parity['int8']['int8_accuracy']:.4f}"),  # export scores it on the test digits
        ("parity Keras vs ONNX", f"max abs diff {probs['max_abs_diff']:.2e} over {parity['samples']:,} inputs, "
                                 f"labels agree {parity['label_agreement']:.2%}: "
                                 f"{'passed' if parity['passed'] else 'FAILED'}"),
        ("parity float vs int8", f"labels agree {parity['int8']['label_agreement']:.2%}"),
        ("model sizes", f"model.keras {(train_dir / 'model.keras').stat().st_size / 1e6:.2f} MB, "
                        f"model.onnx {model_onnx.stat().st_size / 1e6:.2f} MB, "
                        f"model.int8.onnx {(out / 'model.int8.onnx').stat().st_size / 1e6:.2f} MB"),
        ("classify throughput", f"PNG folder {png_rate:,.0f} digits/s, "
                                f".npy {npy_rate:,.0f} digits/s (start-up excluded; "
                                f"{len(data.x_test):,} digits is a short run, `make bench` measures long ones)"),
    ]
    for i, (path, size) in enumerate(artefacts(out, png_dir)):
        lines.append(("artefacts" if i == 0 else "", f"{path}  ({size})"))
    lines.append(("total time", f"{time.perf_counter() - start:.0f} s"))
    width = max(len(k) for k, _ in lines)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in lines)


def artefacts(out: Path, png_dir: Path) -> list[tuple[Path, str]]:
    """Every file the demo left under `out`, sorted, with its size (the PNG folder as one
    entry with its count). DigitsError when one is empty: an artefact is never a stub."""
    found = []
    for path in sorted(out.rglob("*")):
        if path == png_dir:
            found.append((path, f"{sum(1 for _ in png_dir.glob('*.png')):,} PNGs"))
        elif path.is_file() and png_dir not in path.parents:
            if path.stat().st_size == 0:
                raise DigitsError(f"demo step left an empty file: {path}")
            found.append((path, f"{path.stat().st_size / 1e6:.2f} MB" if path.stat().st_size >= 10**5
                          else f"{path.stat().st_size:,} bytes"))
    return found
