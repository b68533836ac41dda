"""The CNN (`digits train --model cnn`) through the exporter: parity, int8 with its
convolutions, .ort, the temperature in the graph, and `digits classify` on the result.

A small CNN, trained 3 epochs on the sample's 4,000 training digits, as CI can afford.
"""

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from digits.trainer.calibrate import apply_temperature
from digits.trainer.model import load_keras_model, predict_keras
from tests.conftest import TEST_SEED, run_digits

pytestmark = [pytest.mark.slow, pytest.mark.tf]


@pytest.fixture(scope="module")
def cnn_export(sample_npz, tmp_path_factory):
    folder = tmp_path_factory.mktemp("cnn")
    trained = run_digits("train", "--data", sample_npz, "--out", folder, "--model", "cnn", "--epochs", "3",
                         "--seed", TEST_SEED, "--quiet")
    assert trained.returncode == 0, trained.stderr
    out = folder / "model.onnx"
    result = run_digits("export", folder / "model.keras", "--out", out, "--data", sample_npz, "--int8", "--ort")
    assert result.returncode == 0, result.stderr
    return folder, out, result


def test_cnn_parity_at_the_default_tolerance(cnn_export):
    folder, out, result = cnn_export
    report = json.loads(out.with_name("model.parity.json").read_text())
    assert report["passed"] and report["atol"] == report["rtol"] == 1e-5
    assert report["label_agreement"] >= 0.999
    assert report["outputs"]["probabilities"]["max_abs_diff"] < 1e-5
    assert "temperature" in result.stderr and "calibrated probabilities" in result.stderr


def test_cnn_graph_applies_the_trained_temperature(cnn_export, sample):
    folder, out, _ = cnn_export
    metrics = json.loads((folder / "metrics.json").read_text())
    temperature = metrics["calibration"]["temperature"]
    metadata = {p.key: p.value for p in onnx.load(out).metadata_props}
    assert float(metadata["temperature"]) == temperature != 1.0
    keras_probs = predict_keras(load_keras_model(folder / "model.keras"), sample.x_test)
    probs, labels, scores = ort.InferenceSession(str(out)).run(None, {"image": sample.x_test})
    np.testing.assert_allclose(probs, apply_temperature(keras_probs, temperature), atol=1e-5, rtol=1e-5)
    np.testing.assert_array_equal(labels, keras_probs.argmax(1))  # the labels are the model's own
    # digit_score is taken before the temperature: the largest probability as trained, rescaled.
    np.testing.assert_allclose(scores, (keras_probs.max(1) - 0.1) / 0.9, atol=1e-5)
    # The exported model's calibration error is the one the trainer reported for it.
    from digits.trainer.calibrate import reliability

    assert reliability(probs, sample.y_test)["ece"] == pytest.approx(metrics["calibration"]["test_ece_after"], abs=1e-4)


def test_cnn_int8_quantizes_the_convolutions_and_passes_its_check(cnn_export):
    _, out, _ = cnn_export
    report = json.loads(out.with_name("model.parity.json").read_text())
    int8 = report["int8"]
    assert int8["passed"] and int8["weight_ratio"] <= 0.35 and int8["accuracy_drop_points"] <= 0.5
    assert int8["batch_label_agreement"] == int8["reference_label_agreement"] == 1.0
    model = onnx.load(out.with_name("model.int8.onnx"))
    quantized = {t.name for t in model.graph.initializer if t.data_type == onnx.TensorProto.INT8 and len(t.dims) == 4}
    dequantized = {n.output[0]: n.input[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    assert [dequantized.get(n.input[1]) in quantized for n in model.graph.node if n.op_type == "Conv"] == [True] * 3
    assert report["ort"]["passed"]


def test_digits_classify_runs_the_cnn(cnn_export, sample, tmp_path):
    _, out, _ = cnn_export
    npy = tmp_path / "digits.npy"
    np.save(npy, sample.x_test[:300])
    labels = ort.InferenceSession(str(out)).run(["label"], {"image": sample.x_test[:300]})[0]
    for model in (out, out.with_name("model.int8.onnx"), out.with_name("model.ort")):
        result = run_digits("classify", model, npy, "--quiet")
        assert result.returncode == 0, result.stderr
        rows = result.stdout.splitlines()[1:]
        got = np.array([int(row.split(",")[1]) for row in rows])
        assert len(got) == 300 and (got == labels).mean() >= (1.0 if model == out else 0.99)
