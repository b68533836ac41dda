"""The int8 variant gives one answer per digit: on any batch, in any runtime that computes exactly."""

import json

import numpy as np
import pytest

from digits.batch.model import OnnxClassifier
from digits.exporter.parity import DEFAULT_ATOL
from digits.exporter.quantize import check_int8, reference_probabilities

pytestmark = pytest.mark.slow


def test_a_digit_gets_the_same_answer_alone_and_in_any_batch(any_edge_models, edge_digits):
    _, digits, _ = edge_digits
    classifier = OnnxClassifier(any_edge_models["int8"])
    whole = classifier.predict(digits)
    alone = np.concatenate([classifier.predict(digits[i : i + 1]) for i in range(len(digits))])
    rng = np.random.default_rng(1)
    noise = rng.integers(0, 256, size=(500, 28, 28), dtype=np.uint8)
    crowded = classifier.predict(np.concatenate([noise, digits, np.full((10, 28, 28), 255, np.uint8)]))[500:2500]
    shuffled = rng.permutation(len(digits))
    in_other_order = np.empty_like(whole)
    in_other_order[shuffled] = classifier.predict(digits[shuffled])
    for other in (alone, crowded, in_other_order):
        np.testing.assert_array_equal(other.argmax(1), whole.argmax(1))
        np.testing.assert_allclose(other, whole, atol=1e-6, rtol=0)


def test_onnxruntime_and_the_reference_evaluator_agree_on_the_int8_model(any_edge_models, edge_digits):
    _, digits, _ = edge_digits
    runtime = OnnxClassifier(any_edge_models["int8"]).predict(digits)
    reference = reference_probabilities(any_edge_models["int8"], digits)
    np.testing.assert_array_equal(runtime.argmax(1), reference.argmax(1))
    # The reference multiplies in float32: a sum at a rounding boundary may land one step off.
    close = np.isclose(runtime, reference, atol=DEFAULT_ATOL, rtol=0).all(axis=1)
    assert close.mean() >= 0.995 and np.abs(runtime - reference).max() <= 0.05


def test_the_int8_check_passes_the_shipped_variant(any_edge_models, sample, edge_digits):
    _, digits, _ = edge_digits
    check = check_int8(any_edge_models["onnx"], any_edge_models["int8"], sample.x_test, sample.y_test, real=digits)
    assert check.passed, check.failure
    assert check.numbers["weight_ratio"] <= 0.35 and check.numbers["accuracy_drop_points"] <= 0.5
    assert check.numbers["batch_label_agreement"] == check.numbers["reference_label_agreement"] == 1.0
    assert check.numbers["consistency_samples"] == 2000


def test_the_int8_check_refuses_dynamic_quantization(edge_models, sample, edge_digits, tmp_path):
    """Dynamic quantization, the old variant, takes activation scales from the batch: refused."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    _, digits, _ = edge_digits
    dynamic = tmp_path / "model.int8.onnx"
    quantize_dynamic(edge_models["onnx"], dynamic, weight_type=QuantType.QInt8, per_channel=True)
    check = check_int8(edge_models["onnx"], dynamic, sample.x_test, sample.y_test, real=digits)
    assert check.passed is False
    assert "a digit alone and in a batch of 2,256 differ" in check.failure, check.failure
    assert check.numbers["batch_max_abs_diff"] > 1e-3


@pytest.mark.tf
def test_export_fails_closed_when_the_int8_variant_depends_on_the_batch(trained_mlp, small_npz, tmp_path,
                                                                       monkeypatch, capsys):
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from digits.exporter import quantize as quantize_module
    from tests.conftest import run_main

    def dynamic(float_path, int8_path, calibration):
        quantize_dynamic(float_path, int8_path, weight_type=QuantType.QInt8, per_channel=True)

    monkeypatch.setattr(quantize_module, "quantize_int8", dynamic)
    out = tmp_path / "model.onnx"
    code, _, err = run_main(["export", trained_mlp, "--out", out, "--data", small_npz, "--int8", "--ort"], capsys)
    assert code == 4, err
    errors = [line for line in err.splitlines() if line.startswith("digits: error:")]
    assert len(errors) == 1 and "int8: " in errors[0] and "alone and in a batch" in errors[0], err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.parity.json"]
    report = json.loads(out.with_name("model.parity.json").read_text())
    assert report["passed"] is False and report["int8"]["passed"] is False


def test_the_cnn_int8_model_quantizes_its_convolutions(cnn_edge_models):
    import onnx
    from onnx import numpy_helper

    model = onnx.load(cnn_edge_models["int8"])
    initializers = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    dequantized = {n.output[0]: n.input[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    assert len(convs) == 2
    for conv in convs:
        weights = initializers[dequantized[conv.input[1]]]  # the kernel arrives dequantized from int8
        assert weights.dtype == np.int8 and weights.ndim == 4
        assert conv.input[0] in dequantized  # and so does its input activation (u8)
