"""`digits train` and `digits evaluate`: parse, call the trainer, report."""

import sys
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Literal, Optional

import typer

from digits.core.atomic import json_text
from digits.core.bundled import model_path
from digits.core.errors import UsageError, require_extra
from digits.core.options import finite_number
from digits.core.terminal import LINE_LIMIT, printable, printable_lines
from digits.trainer.model import CNN_DEFAULTS, MAX_SEED, RECIPE, default_recipe

MAX_COUNT = 1_000_000  # epochs, batch size, patience: beyond this a typo, not a plan

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


# Long by design: Typer reads each option, its help and its check from this signature.
def train(
    data: DataOption = None,
    out: Annotated[Optional[Path], typer.Option(
        readable=False, help="Folder for the model and reports (default: runs/<timestamp>/)")] = None,
    model: Annotated[Literal["mlp", "cnn"], typer.Option(
        help="mlp: the seed's 784-256-128-64-10 MLP; cnn: a small convnet (augmented, decaying learning rate).",
    )] = "mlp",
    epochs: Annotated[Optional[int], typer.Option(
        min=1, max=MAX_COUNT, show_default=False,
        help=f"Passes over the training digits. [default: {RECIPE.epochs} for mlp, {CNN_DEFAULTS['epochs']} for cnn]",
    )] = None,
    batch_size: Annotated[int, typer.Option(
        min=1, max=MAX_COUNT, help="Digits per gradient step.")] = RECIPE.batch_size,
    validation_split: Annotated[float, typer.Option(
        parser=finite_number("--validation-split", 0.0, 0.9),
        help="Fraction of training digits held out for validation (stratified, shuffled); the temperature is fitted "
        "on them.",
    )] = RECIPE.validation_split,
    dropout: Annotated[Optional[float], typer.Option(
        parser=finite_number("--dropout", 0.0, 0.9), show_default=False,
        help=f"Dropout rate. [default: {RECIPE.dropout} after each hidden layer for mlp, {CNN_DEFAULTS['dropout']} "
        "before each dense layer for cnn]",
    )] = None,
    augment: Annotated[Optional[bool], typer.Option(
        "--augment/--no-augment", show_default=False,
        help="Train on randomly shifted, rotated and zoomed digits (the saved model holds none of it). "
        "[default: off for mlp, on for cnn]",
    )] = None,
    early_stop: Annotated[int, typer.Option(
        min=0, max=MAX_COUNT, metavar="PATIENCE",
        help="Stop when validation loss has not improved for PATIENCE epochs, and keep the best epoch's weights. 0: "
        "off.",
    )] = RECIPE.early_stop,
    seed: Annotated[int, typer.Option(
        min=0, max=MAX_SEED,
        help="Seeds the split, the weights and dropout: same seed + same data = same model.",
    )] = RECIPE.seed,
    outliers: Annotated[float, typer.Option(
        parser=finite_number("--outliers", 0.0, 4.0),
        help="Generated non-digits per training digit, taught as 'no digit' (outlier exposure): what "
        "digit_score learns from. 0: off.",
    )] = RECIPE.outliers,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No model summary or per-epoch progress.")] = False,
) -> None:
    """Train the seed's MLP (784-256-128-64-10, dropout, Adam), or a small CNN, and write its model and reports.

    Writes model.keras, history.json, history.png, metrics.json, confusion.png and
    calibration.png to --out. A temperature fitted on the validation digits calibrates
    the probabilities (digits export puts it in the graph); metrics.json gives the
    calibration error before and after, and the error among digits accepted at several
    confidence thresholds. Generated non-digits (--outliers) teach the model to say "no
    digit"; the digit_score threshold that keeps 99% of the validation digits is in metrics.json.
    """
    if early_stop and validation_split == 0:
        raise UsageError("--early-stop watches the validation loss: give a --validation-split above 0")
    require_extra("train", "digits train", ("tensorflow", "keras", "matplotlib"))
    from digits.trainer.training import ARTEFACTS, train_and_report

    given = {"epochs": epochs, "dropout": dropout, "augment": augment}  # None: the model's own default
    recipe = replace(default_recipe(model), batch_size=batch_size, validation_split=validation_split, seed=seed,
                     early_stop=early_stop, outliers=outliers, **{k: v for k, v in given.items() if v is not None})
    progress = 0 if quiet else (1 if sys.stderr.isatty() else 2)
    say = (lambda line: None) if quiet else (lambda line: print(printable_lines(line), file=sys.stderr))
    out_dir, metrics = train_and_report(data, out, recipe, verbose=progress, say=say)
    for warning in metrics["warnings"]:  # even with --quiet: the model is not what it seems
        print(warning, file=sys.stderr)
    stopped = (f" (early stop: best epoch {metrics['best_epoch']} of {metrics['epochs_run']})"
               if recipe.early_stop else "")
    print(f"test accuracy {metrics['test_accuracy']:.4f} (loss {metrics['test_loss']:.4f}) "
          f"on {metrics['test_size']:,} digits; trained in {metrics['train_seconds']:.1f} s{stopped}")
    calibration = metrics["calibration"]
    print(f"temperature {calibration['temperature']:.3f} (fitted on {calibration['fitted_on']}): "
          f"test ECE {calibration['test_ece_before']:.4f} -> {calibration['test_ece_after']:.4f}")
    print(f"wrote {printable(out_dir, LINE_LIMIT)}/: " + " ".join(ARTEFACTS))


def evaluate(
    model: Annotated[Path, typer.Argument(
        readable=False, parser=model_path,
        help="A .keras model, a bundled model's name (cnn, mlp), or an .onnx or .tflite model (no TensorFlow needed; "
        ".tflite needs the [litert] extra).",
    )],
    data: DataOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Score a model on the test digits: accuracy, loss and the confusion matrix."""
    from digits.trainer.data import load_mnist
    from digits.trainer.evaluate import predict_file, seen_test_digits_warning
    from digits.trainer.metrics import score
    from digits.trainer.report import format_confusion

    dataset = load_mnist(data)
    warning = seen_test_digits_warning(model, dataset.source)
    if warning:
        print(warning, file=sys.stderr)
    report = {"model": str(model), "data_source": dataset.source,
              **score(predict_file(model, dataset.x_test), dataset.y_test)}
    if as_json:
        print(json_text(report).rstrip("\n"))
        return
    print(f"model: {printable(model, LINE_LIMIT)}\ndata: {printable(dataset.source, LINE_LIMIT)}")
    print(f"test accuracy {report['test_accuracy']:.4f} (loss {report['test_loss']:.4f}) "
          f"on {report['test_size']:,} digits")
    print("confusion matrix (rows: true label, columns: predicted):")
    print(format_confusion(report["confusion_matrix"]))
