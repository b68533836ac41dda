"""Training end to end: the artefacts a user gets, and repeatability."""

import json

import numpy as np
import pytest

from tests.conftest import TEST_SEED, run_digits, run_fresh
from trainer.fit import train
from trainer.model import Recipe

METRICS_KEYS = {
    "test_accuracy", "test_loss", "per_class_accuracy", "confusion_matrix", "data_source",
    "train_size", "validation_size", "test_size", "epochs", "train_seconds", "versions",
}


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
    for name in ("model.keras", "history.json", "history.png", "metrics.json", "confusion.png"):
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


def test_help_imports_nothing_heavy():
    stdout, heavy = run_fresh(["--help"])
    assert heavy == set()
    assert "classify" in stdout and "export" in stdout


def test_bad_option_is_usage_error(tmp_path):
    result = run_digits("train", "--epochs", "0")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
