"""Fixtures for the edge runtimes: real digits, the three model files, the runtimes' installs.

The models are built from `exported_onnx` (the float model) with the exporter's own
int8 and .ort steps, so these tests run what `digits export --int8 --ort` ships.
"""

import csv
import io
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ROOT, run_digits

EDGE_DIGITS = 2000
NODE_EXAMPLE = ROOT / "examples" / "node"
WEB = ROOT / "web"
CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="session")
def edge_digits(sample, tmp_path_factory) -> tuple[Path, np.ndarray, np.ndarray]:
    """2,000 real digits (the sample's 1,000 test digits first) as an .npy: (path, digits, labels)."""
    digits = np.concatenate([sample.x_test, sample.x_train])[:EDGE_DIGITS]
    labels = np.concatenate([sample.y_test, sample.y_train])[:EDGE_DIGITS]
    path = tmp_path_factory.mktemp("edge-digits") / "digits.npy"
    np.save(path, digits)
    return path, digits, labels


@pytest.fixture(scope="session")
def edge_models(exported_onnx, sample, tmp_path_factory) -> dict[str, Path]:
    """{"onnx", "int8", "ort"}: the exported float model and its two variants, made as the export makes them."""
    from exporter.ort_format import convert_to_ort
    from exporter.quantize import calibration_digits, quantize_int8

    folder = tmp_path_factory.mktemp("edge-models")
    models = {"onnx": folder / "model.onnx", "int8": folder / "model.int8.onnx", "ort": folder / "model.ort"}
    shutil.copyfile(exported_onnx, models["onnx"])
    quantize_int8(models["onnx"], models["int8"], calibration_digits(sample.x_train))
    convert_to_ort(models["onnx"], models["ort"])
    return models


def parse_rows(text: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """`digits classify --top-k 10` CSV -> (sources, labels int [N], probabilities float64 [N, 10] by class)."""
    rows = list(csv.DictReader(io.StringIO(text)))
    labels = np.array([int(r["label"]) for r in rows])
    probs = np.zeros((len(rows), 10))
    for i, r in enumerate(rows):
        for k in range(1, 11):
            probs[i, int(r[f"label_{k}"])] = float(r[f"prob_{k}"])
    return [r["source"] for r in rows], labels, probs


def python_rows(model: Path, *inputs) -> str:
    """What `digits classify MODEL INPUTS --top-k 10` prints."""
    result = run_digits("classify", model, *inputs, "--top-k", "10", "--quiet")
    assert result.returncode == 0, result.stderr
    return result.stdout


def require(path: Path, how: str) -> None:
    """The edge tests run the real runtimes; a missing install fails (never skips) and says how to get it."""
    if not path.exists():
        pytest.fail(f"{path} is missing: {how}", pytrace=False)
