"""Exports that a deployer relies on: the contract, the proof, and refusals."""

import hashlib
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from digits.exporter.export import export
from digits.trainer.model import load_keras_model, predict_keras
from tests.conftest import assert_one_line_error, run_digits, run_main

pytestmark = [pytest.mark.slow, pytest.mark.tf]

METADATA_KEYS = {
    "class_labels", "input_contract", "test_accuracy", "data_source", "source_sha256",
    "keras_version", "tensorflow_version", "tf2onnx_version", "onnx_version", "exported_at",
}


@pytest.fixture(scope="module")
def exported(trained_mlp, sample_npz, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "model.onnx"
    result = run_digits("export", trained_mlp, "--out", out, "--data", sample_npz, "--int8", "--ort")
    assert result.returncode == 0, result.stderr
    return out, result


def test_graph_contract(exported, trained_mlp):
    out, _ = exported
    model = onnx.load(out)
    onnx.checker.check_model(model, full_check=True)
    (image,) = model.graph.input
    assert image.name == "image"
    assert image.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    dims = image.type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and [d.dim_value for d in dims[1:]] == [28, 28]
    assert [o.name for o in model.graph.output] == ["probabilities", "label", "digit_score"]
    assert model.graph.output[1].type.tensor_type.elem_type == onnx.TensorProto.INT64
    assert model.graph.output[2].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert {o.version for o in model.opset_import if o.domain in ("", "ai.onnx")} == {18}
    metadata = {p.key: p.value for p in model.metadata_props}
    assert METADATA_KEYS <= metadata.keys()
    assert json.loads(metadata["class_labels"]) == [str(d) for d in range(10)]
    metrics = json.loads(trained_mlp.with_name("metrics.json").read_text())
    assert metadata["data_source"] == metrics["data_source"]  # read from metrics.json beside the .keras
    assert model.producer_name == "tf2onnx" and model.producer_version == "1.17.0"  # not "1.17.0 None"
    assert float(metadata["test_accuracy"]) == metrics["test_accuracy"]
    assert metadata["source_sha256"] == hashlib.sha256(trained_mlp.read_bytes()).hexdigest()
    # The threshold `digits train` fitted on the validation digits travels with the model.
    assert float(metadata["digit_score_threshold"]) == metrics["digit_score"]["threshold"]
    assert metadata["digit_score_method"] == metrics["digit_score"]["method"]


def test_onnx_gives_keras_answers_on_any_batch(exported, trained_mlp, small):
    out, _ = exported
    session = ort.InferenceSession(str(out))
    keras_model = load_keras_model(trained_mlp)
    for n in (1, 7, 200):
        probs, labels, scores = session.run(None, {"image": small.x_test[:n]})
        assert probs.shape == (n, 10) and labels.shape == (n,) and scores.shape == (n,)
        np.testing.assert_allclose(probs, predict_keras(keras_model, small.x_test[:n]), atol=1e-5, rtol=1e-5)
        np.testing.assert_array_equal(labels, probs.argmax(axis=1))
        # digit_score: the largest probability of the model as trained (before temperature), rescaled.
        as_trained = predict_keras(keras_model, small.x_test[:n]).max(axis=1)
        np.testing.assert_allclose(scores, (as_trained - 0.1) / 0.9, atol=1e-5)


def test_parity_report_and_variants(exported, small):
    out, result = exported
    report = json.loads(out.with_name("model.parity.json").read_text())
    assert report["passed"] is True
    assert report["atol"] == 1e-5 and report["rtol"] == 1e-5
    assert report["samples"] >= 2000 + 4096
    # Labels agree, but for ties within tolerance that another CPU may break otherwise.
    assert report["label_agreement"] >= 0.999
    assert report["outputs"]["digit_score"]["max_abs_diff"] < 1e-5
    for output in ("probabilities", "label", "digit_score"):
        assert {"max_abs_diff", "max_rel_diff", "mean_abs_diff"} <= report["outputs"][output].keys()
    assert report["outputs"]["probabilities"]["max_abs_diff"] < 1e-5
    cases = {(c["case"], c["runtime"]) for c in report["cases"]}
    assert {("all zeros", "onnxruntime"), ("all 255", "onnxruntime"), ("uniform noise", "onnxruntime"),
            ("batch of 1", "onnxruntime"), ("batch of 4,096", "onnxruntime"),
            ("real digits", "onnx reference")} <= cases
    assert "real digits" in result.stderr and "[✓] label: agreement" in result.stderr

    int8 = report["int8"]
    assert int8["passed"] and int8["label_agreement"] >= 0.99 and int8["size_ratio"] <= 0.35
    assert int8["accuracy_drop_points"] <= 0.5
    labels = ort.InferenceSession(str(out.with_name("model.int8.onnx"))).run(["label"], {"image": small.x_test})[0]
    assert (labels == small.y_test).mean() > 0.5
    assert report["ort"]["passed"]
    ort_labels = ort.InferenceSession(str(out.with_name("model.ort"))).run(["label"], {"image": small.x_test})[0]
    float_labels = ort.InferenceSession(str(out)).run(["label"], {"image": small.x_test})[0]
    np.testing.assert_array_equal(ort_labels, float_labels)


def test_evaluate_onnx_matches_keras(exported, trained_mlp, small_npz):
    out, _ = exported
    onnx_report = json.loads(run_digits("evaluate", out, "--data", small_npz, "--json").stdout)
    keras_report = json.loads(run_digits("evaluate", trained_mlp, "--data", small_npz, "--json").stdout)
    assert onnx_report["confusion_matrix"] == keras_report["confusion_matrix"]
    assert onnx_report["test_loss"] == pytest.approx(keras_report["test_loss"], abs=1e-4)


def test_committed_test_model_has_the_contract_of_a_fresh_export(exported, exported_onnx):
    """The core tier's model (tests/data/mlp.onnx) must stay what `digits export` makes."""
    from digits.exporter.describe import describe

    fresh, committed = describe(exported[0]), describe(exported_onnx)
    assert committed["inputs"] == fresh["inputs"] and committed["outputs"] == fresh["outputs"]
    assert committed["opset"] == fresh["opset"]
    # temperature: the committed model was made by `digits train`, which fits one; the fixture fits none.
    assert committed["metadata"].keys() - {"temperature"} == fresh["metadata"].keys()


def test_bench_with_keras_adds_its_column(exported, trained_mlp):
    from digits.exporter.throughput import format_table, measure, models_to_bench

    out, _ = exported
    onnx_models, keras_path = models_to_bench([out, trained_mlp])
    assert list(onnx_models) == ["model.onnx", "model.int8.onnx"] and keras_path == trained_mlp
    results = measure(onnx_models, keras_path, batch_sizes=(1, 64))
    assert set(results) == {"model.onnx", "model.int8.onnx", "keras predict"}
    assert "model.onnx / keras" in format_table(results)


def test_small_cnn_exports(tmp_path, small_npz, small):
    import keras

    cnn = keras.Sequential([
        keras.Input((28, 28, 1)),
        keras.layers.Conv2D(8, 3, activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Flatten(),
        keras.layers.Dense(10, activation="softmax"),
    ])
    # Trained a little: an untrained network's near-uniform outputs would make labels coin flips.
    cnn.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    cnn.fit(small.x_train[..., None] / 255.0, small.y_train, epochs=3, batch_size=64, verbose=0)
    cnn.save(tmp_path / "cnn.keras")
    result = export(tmp_path / "cnn.keras", tmp_path / "cnn.onnx", data=small_npz, log=lambda _: None)
    assert result.parity["passed"]
    probs = ort.InferenceSession(str(tmp_path / "cnn.onnx")).run(["probabilities"], {"image": small.x_test[:50]})[0]
    np.testing.assert_allclose(probs, predict_keras(cnn, small.x_test[:50]), atol=1e-5, rtol=1e-5)


def test_tampered_export_fails_with_exit_4_and_leaves_no_model(trained_mlp, small_npz, tmp_path, monkeypatch, capsys):
    from digits.exporter import export as export_module

    real_convert = export_module.keras_to_onnx

    def tampered(model, input_shape, opset):
        onnx_model = real_convert(model, input_shape, opset)
        weights = max(onnx_model.graph.initializer, key=lambda t: len(t.raw_data) or len(t.float_data))
        array = onnx.numpy_helper.to_array(weights).copy()
        array *= 1.01  # a 1% change of the largest weight matrix, after conversion
        weights.CopyFrom(onnx.numpy_helper.from_array(array, weights.name))
        return onnx_model

    monkeypatch.setattr(export_module, "keras_to_onnx", tampered)
    out = tmp_path / "model.onnx"
    code, _, err = run_main(["export", trained_mlp, "--out", out, "--data", small_npz, "--int8"], capsys)
    assert code == 4, err
    errors = [line for line in err.splitlines() if line.startswith("digits: error:")]
    assert len(errors) == 1 and "parity check failed" in errors[0] and "probabilities differ by up to" in errors[0]
    assert not out.exists() and not out.with_name("model.int8.onnx").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.parity.json"]
    report = json.loads(out.with_name("model.parity.json").read_text())
    assert report["passed"] is False and report["outputs"]["probabilities"]["max_abs_diff"] > 1e-5


def test_bad_models_are_refused(tmp_path, small_npz):
    import keras

    not_keras = tmp_path / "notes.keras"
    not_keras.write_text("hello")
    a, b = keras.Input((784,)), keras.Input((784,))
    two_inputs = keras.Model([a, b], keras.layers.Dense(10, activation="softmax")(keras.layers.Add()([a, b])))
    two_inputs.save(tmp_path / "two.keras")
    wrong = keras.Sequential([keras.Input((32,)), keras.layers.Dense(10, activation="softmax")])
    wrong.save(tmp_path / "wrong.keras")
    lam = keras.Sequential([keras.Input((784,)), keras.layers.Lambda(lambda x: x * 2), keras.layers.Dense(10)])
    lam.save(tmp_path / "lambda.keras")

    cases = [
        (tmp_path / "missing.keras", "no such model file"),
        (not_keras, "not a loadable Keras model"),
        (tmp_path / "two.keras", "has 2 inputs"),
        (tmp_path / "wrong.keras", "input has shape (32,)"),
        (tmp_path / "lambda.keras", "not a loadable Keras model"),  # safe mode: no Lambda code runs
    ]
    for model, message in cases:
        out = tmp_path / "out" / "model.onnx"
        result = run_digits("export", model, "--out", out, "--data", small_npz)
        assert_one_line_error(result, 1, str(model), message)
        assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())




def test_unbuilt_and_truncated_keras_models_are_one_line(tmp_path, small_npz, sample):
    """Issue 21, classes 20 and 26: every command that loads a .keras file says what is wrong with it."""
    import keras

    from digits.core.errors import ModelError
    from digits.trainer.evaluate import predict_file
    from digits.trainer.model import check_classifier, load_keras_model

    unbuilt = tmp_path / "unbuilt.keras"
    keras.Sequential([keras.layers.Dense(10, activation="softmax")]).save(unbuilt)
    built = tmp_path / "built.keras"
    keras.Sequential([keras.Input((784,)), keras.layers.Dense(10, activation="softmax")]).save(built)
    truncated = tmp_path / "truncated.keras"
    truncated.write_bytes(built.read_bytes()[: built.stat().st_size // 2])
    with pytest.raises(ModelError, match="saved before it was built"):
        check_classifier(load_keras_model(unbuilt), str(unbuilt))
    with pytest.raises(ModelError, match="truncated or corrupt"):
        load_keras_model(truncated)
    for model, message in [(unbuilt, "saved before it was built"), (truncated, "truncated or corrupt")]:
        with pytest.raises(ModelError, match=message):
            predict_file(model, sample.x_test[:10])
    result = run_digits("export", unbuilt, "--out", tmp_path / "out.onnx", "--data", small_npz)
    assert_one_line_error(result, 1, str(unbuilt), "saved before it was built")
    result = run_digits("export", truncated, "--out", tmp_path / "out.onnx", "--data", small_npz)
    assert_one_line_error(result, 1, str(truncated), "truncated or corrupt")
    assert "File not found" not in result.stderr
