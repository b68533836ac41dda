"""`digits train` and `digits evaluate`: parse, call the trainer, report."""

import hashlib
import json
import sys
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Optional

import typer

from core.errors import DigitsError, UsageError
from core.files import FOLDER, MISSING, REGULAR, atomic_folder_files, kind_of
from trainer.model import CNN_DEFAULTS, RECIPE, Recipe

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


ARTEFACTS = ("model.keras", "history.json", "history.png", "metrics.json", "confusion.png", "calibration.png")


class ModelChoice(StrEnum):
    mlp = "mlp"
    cnn = "cnn"


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
    model: Annotated[ModelChoice, typer.Option(help="mlp: the seed's 784-256-128-64-10 MLP; cnn: keras.io's small convnet.")] = ModelChoice.mlp,
    epochs: Annotated[Optional[int], typer.Option(min=1, show_default=False, help=f"Passes over the training digits. [default: {RECIPE.epochs} for mlp, {CNN_DEFAULTS['epochs']} for cnn]")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Digits per gradient step.")] = RECIPE.batch_size,
    validation_split: Annotated[float, typer.Option(min=0.0, max=0.9, help="Fraction of training digits held out for validation (stratified, shuffled); the temperature is fitted on them.")] = RECIPE.validation_split,
    dropout: Annotated[Optional[float], typer.Option(min=0.0, max=0.9, show_default=False, help=f"Dropout rate. [default: {RECIPE.dropout} after each hidden layer for mlp, {CNN_DEFAULTS['dropout']} before the last layer for cnn]")] = None,
    augment: Annotated[bool, typer.Option("--augment", help="Train on randomly shifted, rotated and zoomed digits (the saved model holds none of it).")] = False,
    early_stop: Annotated[int, typer.Option(min=0, metavar="PATIENCE", help="Stop when validation loss has not improved for PATIENCE epochs, and keep the best epoch's weights. 0: off.")] = RECIPE.early_stop,
    seed: Annotated[int, typer.Option(help="Seeds the split, the weights and dropout: same seed + same data = same model.")] = RECIPE.seed,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No model summary or per-epoch progress.")] = False,
) -> None:
    """Train the seed's MLP (784-256-128-64-10, dropout, Adam), or a small CNN, and write its model and reports.

    Writes model.keras, history.json, history.png, metrics.json, confusion.png and
    calibration.png to --out. A temperature fitted on the validation digits calibrates
    the probabilities (digits export puts it in the graph); metrics.json gives the
    calibration error before and after, and the error among digits accepted at several
    confidence thresholds.
    """
    from trainer.backend import require_train_extra

    if early_stop and validation_split == 0:
        raise UsageError("--early-stop watches the validation loss: give a --validation-split above 0")
    require_train_extra("digits train", ("tensorflow", "keras", "matplotlib"))
    from trainer.data import load_mnist
    from trainer.fit import train as fit
    from trainer.metrics import score
    from trainer.model import predict_keras
    from trainer.report import plot_calibration, plot_confusion, plot_history, write_json

    dataset = load_mnist(data)
    out_dir, _lock = _prepare_out_dir(out)
    defaults = CNN_DEFAULTS if model == ModelChoice.cnn else {"epochs": RECIPE.epochs, "dropout": RECIPE.dropout}
    recipe = Recipe(
        epochs=epochs or defaults["epochs"],
        batch_size=batch_size,
        validation_split=validation_split,
        dropout=defaults["dropout"] if dropout is None else dropout,
        seed=seed,
        model=model.value,
        augment=augment,
        early_stop=early_stop,
    )
    progress = 0 if quiet else (1 if sys.stderr.isatty() else 2)
    say = (lambda line: None) if quiet else (lambda line: print(line, file=sys.stderr))
    say(f"data: {dataset.source}: {len(dataset.x_train):,} train, {len(dataset.x_test):,} test")
    trained = fit(dataset, recipe, verbose=progress, summary=say)

    import keras
    import numpy as np
    import tensorflow as tf

    test_probs = predict_keras(trained.model, dataset.x_test)
    metrics = score(test_probs, dataset.y_test)
    metrics.update(
        data_source=dataset.source,
        model=recipe.model,
        augment=recipe.augment,
        train_size=trained.train_size,
        validation_size=trained.validation_size,
        epochs=recipe.epochs,
        epochs_run=trained.epochs_run,
        early_stop=recipe.early_stop,
        best_epoch=trained.best_epoch,
        batch_size=recipe.batch_size,
        dropout=recipe.dropout,
        seed=recipe.seed,
        train_seconds=round(trained.train_seconds, 3),
        seconds_per_epoch=round(trained.train_seconds / max(trained.epochs_run, 1), 3),
        versions={"tensorflow": tf.__version__, "keras": keras.__version__, "numpy": np.__version__},
    )
    metrics.update(_calibration(trained, test_probs, dataset.y_test))
    # All or none: each is written under a temporary name, and all are moved
    # into place (atomically, one by one) only once every one was written whole.
    with atomic_folder_files({name: out_dir / name for name in ARTEFACTS}) as temp:
        trained.model.save(temp["model.keras"])
        # Names the model these metrics describe: export applies their temperature only to it.
        metrics["model_sha256"] = hashlib.sha256(temp["model.keras"].read_bytes()).hexdigest()
        write_json(temp["history.json"], trained.history)
        write_json(temp["metrics.json"], metrics)
        plot_history(trained.history, temp["history.png"])
        plot_confusion(metrics["confusion_matrix"], temp["confusion.png"])
        plot_calibration(metrics["calibration"], temp["calibration.png"])
    stopped = f" (early stop: best epoch {trained.best_epoch} of {trained.epochs_run})" if recipe.early_stop else ""
    print(f"test accuracy {metrics['test_accuracy']:.4f} (loss {metrics['test_loss']:.4f}) "
          f"on {metrics['test_size']:,} digits; trained in {trained.train_seconds:.1f} s{stopped}")
    calibration = metrics["calibration"]
    print(f"temperature {calibration['temperature']:.3f} (fitted on {calibration['fitted_on']}): "
          f"test ECE {calibration['test_ece_before']:.4f} -> {calibration['test_ece_after']:.4f}")
    print(f"wrote {out_dir}/: " + " ".join(ARTEFACTS))


def _calibration(trained, test_probs, test_labels) -> dict:
    """metrics.json's `calibration` (the temperature fitted on the validation digits) and
    `accepted_at_confidence` (the calibrated model on the test digits)."""
    from trainer.calibrate import apply_temperature, calibration_report, coverage_table
    from trainer.model import predict_keras

    val_probs = predict_keras(trained.model, trained.validation_digits) if trained.validation_size else test_probs[:0]
    temperature, report = calibration_report(val_probs, trained.validation_labels, test_probs, test_labels)
    return {
        "calibration": report,
        "accepted_at_confidence": coverage_table(apply_temperature(test_probs, temperature), test_labels),
    }


def evaluate(
    model: Annotated[Path, typer.Argument(readable=False, help="A .keras model, or an .onnx or .tflite model (no TensorFlow needed; .tflite needs the [litert] extra).")],
    data: DataOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Score a model on the test digits: accuracy, loss and the confusion matrix."""
    from trainer.data import load_mnist
    from trainer.evaluate import predict_file, seen_test_digits_warning
    from trainer.metrics import score
    from trainer.report import format_confusion

    dataset = load_mnist(data)
    warning = seen_test_digits_warning(model, dataset.source)
    if warning:
        print(warning, file=sys.stderr)
    report = {"model": str(model), "data_source": dataset.source}
    report.update(score(predict_file(model, dataset.x_test), dataset.y_test))
    if as_json:
        print(json.dumps(report, indent=2))
        return
    print(f"model: {model}\ndata: {dataset.source}")
    print(f"test accuracy {report['test_accuracy']:.4f} (loss {report['test_loss']:.4f}) on {report['test_size']:,} digits")
    print("confusion matrix (rows: true label, columns: predicted):")
    print(format_confusion(report["confusion_matrix"]))
