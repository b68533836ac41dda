"""Training as a library call: data in, a trained model and its reports on disk, the folder and
the metrics back (`digits train` builds the Recipe, calls train_and_report, prints from them)."""

import hashlib
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime
from pathlib import Path

import numpy as np

from digits.core.atomic import atomic_folder_files, check_target, json_text
from digits.core.contract import NUM_CLASSES
from digits.core.errors import DigitsError
from digits.core.files import FOLDER, MISSING, REGULAR, kind_of, lock_folder, refuse_overwriting
from digits.trainer.model import Recipe, predict_keras

# In the order they land; metrics.json last: it names the sha256 of each of the others, so a
# set cut short between renames (Ctrl-C) is told by its old metrics.json not matching them.
ARTEFACTS = ("model.keras", "history.json", "history.png", "confusion.png", "calibration.png", "metrics.json")


def train_and_report(data: Path | None, out: Path | None, recipe: Recipe, verbose: int = 0,
                     say: Callable[[str], None] = lambda line: None) -> tuple[Path, dict]:
    """Load the data, train `recipe`'s model, score and calibrate it, and write ARTEFACTS to `out`
    (default runs/<timestamp>/), all or none; returns that folder and what metrics.json holds.
    `verbose`: Keras's progress (0, 1 bar, 2 lines)."""
    from digits.trainer.calibrate import apply_temperature, calibration_report, coverage_table, digit_score_report
    from digits.trainer.data import load_mnist
    from digits.trainer.fit import train as fit
    from digits.trainer.metrics import score
    from digits.trainer.report import plot_calibration, plot_confusion, plot_history

    dataset = load_mnist(data)
    out_dir, _lock = _prepare_out_dir(out, data)
    say(f"data: {dataset.source}: {len(dataset.x_train):,} train, {len(dataset.x_test):,} test")
    trained = fit(dataset, recipe, verbose=verbose, summary=say)

    import keras
    import tensorflow as tf

    test_probs = predict_keras(trained.model, dataset.x_test)
    metrics = score(test_probs, dataset.y_test)
    metrics.update(
        data_source=dataset.source,
        **asdict(recipe),
        train_size=trained.train_size,
        validation_size=len(trained.validation_labels),
        epochs_run=trained.epochs_run,
        best_epoch=trained.best_epoch,
        train_seconds=round(trained.train_seconds, 3),
        seconds_per_epoch=round(trained.train_seconds / max(trained.epochs_run, 1), 3),
        versions={"tensorflow": tf.__version__, "keras": keras.__version__, "numpy": np.__version__},
    )
    # The temperature and the digit_score threshold are fitted on the validation digits.
    val_digits = trained.validation_digits
    val_probs = predict_keras(trained.model, val_digits) if len(val_digits) else test_probs[:0]
    temperature, metrics["calibration"] = calibration_report(val_probs, trained.validation_labels, test_probs,
                                                             dataset.y_test)
    metrics["accepted_at_confidence"] = coverage_table(apply_temperature(test_probs, temperature), dataset.y_test)
    metrics["digit_score"] = digit_score_report(val_probs, test_probs, recipe.outliers)
    metrics["warnings"] = missing_classes_warnings(dataset.y_train, dataset.y_test)
    with atomic_folder_files({name: out_dir / name for name in ARTEFACTS}) as temp:
        trained.model.save(temp["model.keras"])
        temp["history.json"].write_text(json_text(trained.history))
        plot_history(trained.history, temp["history.png"])
        plot_confusion(metrics["confusion_matrix"], temp["confusion.png"])
        plot_calibration(metrics["calibration"], temp["calibration.png"])
        # Names the model these metrics describe: export applies their temperature only to it.
        metrics["model_sha256"] = hashlib.sha256(temp["model.keras"].read_bytes()).hexdigest()
        metrics["artefacts_sha256"] = {name: hashlib.sha256(temp[name].read_bytes()).hexdigest()
                                       for name in ARTEFACTS if name != "metrics.json"}
        temp["metrics.json"].write_text(json_text(metrics))  # strict: an empty bin's NaN is null
    return out_dir, metrics


def missing_classes_warnings(train_labels, test_labels) -> list[str]:
    """A line for training or test digits that lack some classes: a model trained on one class
    scores 1.0000 on test digits of that class."""
    lines = []
    for what, labels, so in (("training", train_labels, "the model never learns them"),
                             ("test", test_labels, "the test accuracy says nothing about them")):
        missing = np.setdiff1d(np.arange(NUM_CLASSES), labels).tolist()  # labels are checked to be 0..9
        if missing:
            lines.append(f"warning: the {what} digits hold no {', '.join(map(str, missing))} "
                         f"({NUM_CLASSES - len(missing)} of {NUM_CLASSES} classes): {so}")
    return lines


def _prepare_out_dir(out: Path | None, data: Path | None = None):
    """The output folder, created, with nothing in the way of the artefacts (a folder, a device,
    the --data file), and locked against a second run: before training, so a bad --out costs none."""
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
        refuse_overwriting(out / name, [data] if data else [], what="training")
    return out, lock_folder(out)  # held while `train` runs
