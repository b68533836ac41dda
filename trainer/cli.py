"""`digits train` and `digits evaluate`: parse, call the trainer, report."""

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated, Optional

import typer

from core.errors import DigitsError
from core.files import FOLDER, MISSING, REGULAR, atomic_folder_files, kind_of
from trainer.model import RECIPE, Recipe

DataOption = Annotated[
    Optional[Path],
    typer.Option(
        "--data",
        # Not Typer's readable check (a usage error, exit 2): the loaders say what is wrong, exit 1.
        readable=False,
        help="MNIST as an .npz (Keras layout), a folder of the four IDX files (.gz or not), "
        "or an image folder (train/0..9 + test/0..9, or 0..9). Default: Keras's MNIST, "
        "else the bundled 5,000-digit sample.",
    ),
]


ARTEFACTS = ("model.keras", "history.json", "history.png", "metrics.json", "confusion.png")


def _prepare_out_dir(out: Path | None):
    """The output folder, created, with nothing in the way of the artefacts, and
    locked against a second run: checked before training, so a bad --out costs no
    training time."""
    from core.files import check_target, lock_folder

    out = out or Path("runs", datetime.now().strftime("%Y%m%d-%H%M%S"))
    kind = kind_of(out)
    if kind not in (FOLDER, MISSING):
        raise DigitsError(f"{out}: is {'a file' if kind == REGULAR else kind}; --out is a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DigitsError(f"{out}: cannot create the output folder ({e.strerror or e})") from e
    for name in ARTEFACTS:
        check_target(out / name)
    return out, lock_folder(out)  # held while `train` runs


def train(
    data: DataOption = None,
    out: Annotated[Optional[Path], typer.Option(readable=False, help="Folder for the model and reports (default: runs/<timestamp>/)")] = None,
    epochs: Annotated[int, typer.Option(min=1, help="Passes over the training digits.")] = RECIPE.epochs,
    batch_size: Annotated[int, typer.Option(min=1, help="Digits per gradient step.")] = RECIPE.batch_size,
    validation_split: Annotated[float, typer.Option(min=0.0, max=0.9, help="Fraction of training digits held out for validation (stratified, shuffled).")] = RECIPE.validation_split,
    dropout: Annotated[float, typer.Option(min=0.0, max=0.9, help="Dropout rate after each hidden layer.")] = RECIPE.dropout,
    seed: Annotated[int, typer.Option(help="Seeds the split, the weights and dropout: same seed + same data = same model.")] = RECIPE.seed,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No model summary or per-epoch progress.")] = False,
) -> None:
    """Train the seed's MLP (784-256-128-64-10, dropout, Adam) and write its model and reports.

    Writes model.keras, history.json, history.png, metrics.json and confusion.png to --out.
    """
    from trainer.backend import require_train_extra

    require_train_extra("digits train", ("tensorflow", "keras", "matplotlib"))
    from trainer.data import load_mnist
    from trainer.fit import train as fit
    from trainer.metrics import score
    from trainer.model import predict_keras
    from trainer.report import plot_confusion, plot_history, write_json

    dataset = load_mnist(data)
    out_dir, _lock = _prepare_out_dir(out)
    recipe = Recipe(epochs, batch_size, validation_split, dropout, seed)
    progress = 0 if quiet else (1 if sys.stderr.isatty() else 2)
    say = (lambda line: None) if quiet else (lambda line: print(line, file=sys.stderr))
    say(f"data: {dataset.source}: {len(dataset.x_train):,} train, {len(dataset.x_test):,} test")
    trained = fit(dataset, recipe, verbose=progress, summary=say)

    import keras
    import numpy as np
    import tensorflow as tf

    metrics = score(predict_keras(trained.model, dataset.x_test), dataset.y_test)
    metrics.update(
        data_source=dataset.source,
        train_size=trained.train_size,
        validation_size=trained.validation_size,
        epochs=recipe.epochs,
        batch_size=recipe.batch_size,
        dropout=recipe.dropout,
        seed=recipe.seed,
        train_seconds=round(trained.train_seconds, 3),
        versions={"tensorflow": tf.__version__, "keras": keras.__version__, "numpy": np.__version__},
    )
    # All five or none: each is written under a temporary name, and all are moved
    # into place (atomically, one by one) only once every one was written whole.
    with atomic_folder_files({name: out_dir / name for name in ARTEFACTS}) as temp:
        trained.model.save(temp["model.keras"])
        write_json(temp["history.json"], trained.history)
        write_json(temp["metrics.json"], metrics)
        plot_history(trained.history, temp["history.png"])
        plot_confusion(metrics["confusion_matrix"], temp["confusion.png"])
    print(f"test accuracy {metrics['test_accuracy']:.4f} (loss {metrics['test_loss']:.4f}) "
          f"on {metrics['test_size']:,} digits; trained in {trained.train_seconds:.1f} s")
    print(f"wrote {out_dir}/: model.keras history.json history.png metrics.json confusion.png")


def evaluate(
    model: Annotated[Path, typer.Argument(readable=False, help="A .keras model, or an .onnx or .tflite model (no TensorFlow needed; .tflite needs the [litert] extra).")],
    data: DataOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Score a model on the test digits: accuracy, loss and the confusion matrix."""
    from trainer.data import load_mnist
    from trainer.evaluate import predict_file
    from trainer.metrics import score
    from trainer.report import format_confusion

    dataset = load_mnist(data)
    report = {"model": str(model), "data_source": dataset.source}
    report.update(score(predict_file(model, dataset.x_test), dataset.y_test))
    if as_json:
        print(json.dumps(report, indent=2))
        return
    print(f"model: {model}\ndata: {dataset.source}")
    print(f"test accuracy {report['test_accuracy']:.4f} (loss {report['test_loss']:.4f}) on {report['test_size']:,} digits")
    print("confusion matrix (rows: true label, columns: predicted):")
    print(format_confusion(report["confusion_matrix"]))
