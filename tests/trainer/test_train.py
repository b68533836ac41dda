"""Training end to end: the artefacts a user gets, and repeatability."""

import hashlib
import json

import numpy as np
import pytest

from digits.trainer.fit import train
from digits.trainer.model import Recipe
from tests.conftest import TEST_SEED, run_digits, run_fresh

METRICS_KEYS = {
    "test_accuracy", "test_loss", "per_class_accuracy", "confusion_matrix", "data_source",
    "train_size", "validation_size", "test_size", "epochs", "train_seconds", "versions",
    "model", "augment", "epochs_run", "early_stop", "best_epoch", "seconds_per_epoch", "model_sha256",
    "calibration", "accepted_at_confidence",
}
ARTEFACTS = ("model.keras", "history.json", "history.png", "metrics.json", "confusion.png", "calibration.png")


@pytest.mark.slow
@pytest.mark.tf
def test_train_writes_every_artefact(tmp_path, small_npz):
    out = tmp_path / "run"
    result = run_digits("train", "--data", small_npz, "--out", out, "--epochs", "3", "--batch-size", "64",
                        "--seed", TEST_SEED)
    assert result.returncode == 0, result.stderr
    assert "test accuracy" in result.stdout
    assert "Epoch 3/3" in result.stderr  # progress on stderr
    assert "Total params: 242,762" in result.stderr  # the seed's 784-256-128-64-10 MLP
    for name in ARTEFACTS:
        assert (out / name).stat().st_size > 0, name

    metrics = json.loads((out / "metrics.json").read_text())
    assert METRICS_KEYS <= metrics.keys()
    assert metrics["train_size"] == 480 and metrics["validation_size"] == 120 and metrics["test_size"] == 200
    assert metrics["epochs"] == 3
    # 3 epochs on 480 digits beat chance (0.1) by far: 0.645-0.695 measured on seeds 0-2.
    assert 0.4 < metrics["test_accuracy"] <= 1.0
    matrix = np.array(metrics["confusion_matrix"])
    assert matrix.shape == (10, 10) and matrix.sum() == 200
    assert np.isclose(np.trace(matrix) / 200, metrics["test_accuracy"])
    assert set(metrics["versions"]) == {"tensorflow", "keras", "numpy"}
    assert metrics["model"] == "mlp" and metrics["epochs_run"] == 3 and metrics["best_epoch"] is None
    assert metrics["model_sha256"] == hashlib.sha256((out / "model.keras").read_bytes()).hexdigest()
    calibration = metrics["calibration"]
    assert calibration["temperature"] > 0 and calibration["fitted_on"] == "validation split (120 digits)"
    assert calibration["validation_loss_after"] <= calibration["validation_loss_before"]
    assert [row["p"] for row in metrics["accepted_at_confidence"]] == [0.5, 0.8, 0.9, 0.95, 0.99]
    assert all(0 <= row["coverage"] <= 1 and row["errors"] <= row["accepted"]
               for row in metrics["accepted_at_confidence"])
    scored = metrics["digit_score"]  # trained with outliers by default; threshold fitted on the 120 validation digits
    assert metrics["outliers"] == 0.5 and "outlier exposure" in scored["method"]
    assert 0 < scored["threshold"] < 1 and 0 <= scored["test_rejected"] <= 0.2
    assert "temperature" in result.stdout and "test ECE" in result.stdout

    history = json.loads((out / "history.json").read_text())
    assert set(history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert all(len(v) == 3 for v in history.values())

    # evaluate reads the saved model back and agrees with training's own report.
    report = run_digits("evaluate", out / "model.keras", "--data", small_npz, "--json")
    assert report.returncode == 0, report.stderr
    scored = json.loads(report.stdout)
    assert scored["test_accuracy"] == pytest.approx(metrics["test_accuracy"])
    assert scored["confusion_matrix"] == metrics["confusion_matrix"]
    text = run_digits("evaluate", out / "model.keras", "--data", small_npz)
    assert "test accuracy" in text.stdout and "true\\pred" in text.stdout


@pytest.mark.slow
@pytest.mark.tf
def test_same_seed_same_weights(small):
    recipe = Recipe(epochs=2, batch_size=64, seed=7)
    first = train(small, recipe, verbose=0, summary=lambda _: None)
    second = train(small, recipe, verbose=0, summary=lambda _: None)
    other = train(small, Recipe(epochs=2, batch_size=64, seed=8), verbose=0, summary=lambda _: None)
    for a, b in zip(first.model.get_weights(), second.model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert first.history == second.history
    assert not np.array_equal(first.model.get_weights()[0], other.model.get_weights()[0])


@pytest.mark.slow
@pytest.mark.tf
def test_early_stop_restores_the_best_epochs_weights(small):
    import keras

    from digits.trainer.data.digitset import stratified_split
    from digits.trainer.model import predict_keras

    recipe = Recipe(epochs=30, batch_size=64, seed=TEST_SEED, early_stop=2)
    trained = train(small, recipe, verbose=0, summary=lambda _: None)
    val_loss = trained.history["val_loss"]
    best = int(np.argmin(val_loss))
    assert trained.best_epoch == best + 1
    # It stopped PATIENCE epochs after the best one (or ran out of epochs first).
    assert trained.epochs_run == min(best + 1 + 2, 30) and trained.epochs_run < 30
    # The weights are the best epoch's: their validation loss is the best one, not the last.
    _, val_idx = stratified_split(small.y_train, recipe.validation_split, recipe.seed)
    probs = predict_keras(trained.model, small.x_train[val_idx])
    truth = keras.utils.to_categorical(small.y_train[val_idx], 10)
    loss = float(keras.losses.categorical_crossentropy(truth, probs).numpy().mean())
    assert loss == pytest.approx(val_loss[best], rel=1e-4)
    assert loss < val_loss[-1]


@pytest.mark.slow
@pytest.mark.tf
def test_cnn_with_augmentation_trains_and_holds_no_augmentation(tmp_path, small_npz):
    import onnx

    runs = {}
    for name, extra in (("plain", ["--no-augment"]), ("augmented", [])):  # augmented by default
        out = tmp_path / name
        result = run_digits("train", "--data", small_npz, "--out", out, "--model", "cnn", "--epochs", "2",
                            "--seed", TEST_SEED, *extra)
        assert result.returncode == 0, result.stderr
        assert "Total params: 241,546" in result.stderr  # trainer.model.build_cnn's docstring
        exported = run_digits("export", out / "model.keras", "--out", out / "model.onnx", "--data", small_npz)
        assert exported.returncode == 0, exported.stderr
        runs[name] = out
    metrics = json.loads((runs["augmented"] / "metrics.json").read_text())
    assert metrics["model"] == "cnn" and metrics["augment"] is True and metrics["dropout"] == 0.25
    # Trained on moved digits, it saved and exported exactly the network the plain run did.
    import keras

    layers = {n: [type(layer).__name__ for layer in keras.saving.load_model(runs[n] / "model.keras").layers]
              for n in runs}
    assert layers["augmented"] == layers["plain"] == ["Conv2D", "MaxPooling2D", "Conv2D", "MaxPooling2D", "Conv2D",
                                                      "Flatten", "Dropout", "Dense", "Dropout", "Dense"]
    ops = {n: sorted(node.op_type for node in onnx.load(runs[n] / "model.onnx").graph.node) for n in runs}
    assert ops["augmented"] == ops["plain"] and "Conv" in ops["plain"]
    assert not any("Random" in op or "Transform" in op for op in ops["augmented"])


def test_early_stop_needs_a_validation_split():
    result = run_digits("train", "--early-stop", "3", "--validation-split", "0")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "digits: error: --early-stop watches the validation loss: give a --validation-split above 0")


@pytest.mark.slow
@pytest.mark.tf
def test_augmented_training_repeats_with_its_seed(small):
    recipe = Recipe(epochs=1, batch_size=64, seed=TEST_SEED, model="cnn", augment=True)
    first = train(small, recipe, verbose=0, summary=lambda _: None)
    second = train(small, recipe, verbose=0, summary=lambda _: None)
    for a, b in zip(first.model.get_weights(), second.model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_help_imports_nothing_heavy():
    stdout, heavy = run_fresh(["--help"])
    assert heavy == set()
    assert "classify" in stdout and "export" in stdout


def test_bad_option_is_usage_error(tmp_path):
    result = run_digits("train", "--epochs", "0")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


def test_scoring_a_full_mnist_model_on_the_samples_test_digits_warns(exported_onnx, sample, tmp_path):
    """The sample's 1,000 test digits are MNIST training digits: a model trained on full MNIST
    has seen them. Its recorded data_source (ONNX metadata, or metrics.json beside a .keras) tells."""
    import onnx

    from digits.trainer.evaluate import seen_test_digits_warning

    assert seen_test_digits_warning(exported_onnx, sample.source) is None  # trained on the sample itself
    model = onnx.load(exported_onnx)
    for prop in model.metadata_props:
        if prop.key == "data_source":
            prop.value = "IDX files in data/mnist"
    full = tmp_path / "full.onnx"
    onnx.save(model, full)
    warning = seen_test_digits_warning(full, sample.source)
    assert warning.startswith(f"warning: {full} was trained on IDX files in data/mnist;") and "overstates" in warning
    assert "\n" not in warning
    assert seen_test_digits_warning(full, "IDX files in data/mnist") is None  # the genuine test set: fine
    keras_model = tmp_path / "run" / "model.keras"
    keras_model.parent.mkdir()
    keras_model.write_bytes(b"")
    (keras_model.parent / "metrics.json").write_text(json.dumps({"data_source": "Keras MNIST (mnist.npz)"}))
    assert "Keras MNIST" in seen_test_digits_warning(keras_model, sample.source)
