"""The main job end to end, as `make demo` runs it (small data, few epochs)."""

import csv

import pytest

from tests.conftest import FIXTURE_EPOCHS, TEST_SEED, run_digits

pytestmark = pytest.mark.tf


@pytest.mark.slow
def test_demo_runs_every_step_and_reports(tmp_path, sample_npz, sample):
    """The whole sample, trained as long as the session's model: its int8 gate keeps its margin."""
    out = tmp_path / "demo"
    result = run_digits("demo", "--out", out, "--data", sample_npz, "--epochs", FIXTURE_EPOCHS, "--seed", TEST_SEED)
    assert result.returncode == 0, result.stderr[-3000:]
    table = result.stdout
    for line in ("accuracy: Keras", "accuracy: ONNX, PNG folder", "accuracy: ONNX, .npy", "accuracy: ONNX int8",
                 "parity Keras vs ONNX", "model sizes", "classify throughput", "passed"):
        assert line in table, line
    for name in ("train/history.png", "train/confusion.png", "model.onnx", "model.int8.onnx", "model.parity.json",
                 "test-digits.npy", "predictions-png.csv", "predictions-npy.csv"):
        assert (out / name).exists(), name
        assert str(out / name) in table
    assert len(list((out / "test-digits").glob("*.png"))) == len(sample.x_test)
    # Every file it wrote is listed, with its size, and none is empty.
    for path in out.rglob("*"):
        if path.is_file() and path.parent.name != "test-digits":
            assert path.stat().st_size > 0 and f"{path}  (" in table, path
    assert f"{out / 'test-digits'}  ({len(sample.x_test):,} PNGs)" in table
    key_width = len("accuracy: ONNX, PNG folder")  # the longest key: every line has a value after it
    assert all(line[key_width:].strip() for line in table.splitlines()), table
    # The PNG folder and the array are the same digits: the same labels, row for row.
    with open(out / "predictions-png.csv") as a, open(out / "predictions-npy.csv") as b:
        assert [r["label"] for r in csv.DictReader(a)] == [r["label"] for r in csv.DictReader(b)]


def test_demo_failure_exits_non_zero(tmp_path):
    result = run_digits("demo", "--out", tmp_path / "demo", "--data", tmp_path / "missing.npz", "--epochs", "1")
    assert result.returncode == 1
    assert "digits: error: demo step failed: digits train exited 1" in result.stderr
