"""Every export flag on the model `digits train` makes with its defaults, calibration included.

The session fixtures' metrics.json carry no temperature, so only a real `digits train`
run reaches the calibrated graph; TFLite Micro once crashed on it (an int8 LOG it has no
kernel for). Two epochs on the sample: the chain, not the accuracy, is under test.
"""

import hashlib
import json

import numpy as np
import onnxruntime as ort
import pytest

from tests.conftest import TEST_SEED, run_digits

pytestmark = [pytest.mark.slow, pytest.mark.tf]


def int8_tflite_probabilities(path, digits: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    (image,) = interpreter.get_input_details()
    interpreter.resize_tensor_input(image["index"], digits.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(image["index"], digits)
    interpreter.invoke()
    (probabilities,) = [o for o in interpreter.get_output_details() if o["name"] == "probabilities"]
    return interpreter.get_tensor(probabilities["index"])


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_micro_int8_tflite_on_a_calibrated_trained_model(kind, sample_npz, sample, tmp_path):
    trained = run_digits("train", "--data", sample_npz, "--out", tmp_path, "--model", kind, "--epochs", "2",
                         "--seed", TEST_SEED, "--quiet")
    assert trained.returncode == 0, trained.stderr
    temperature = json.loads((tmp_path / "metrics.json").read_text())["calibration"]["temperature"]
    assert temperature != 1.0  # the calibrated path is the one under test
    out = tmp_path / "model.onnx"
    result = run_digits("export", tmp_path / "model.keras", "--out", out, "--data", sample_npz,
                        "--int8", "--tflite", "--micro")
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "model.parity.json").read_text())
    assert report["passed"] and report["micro"]["passed"]
    assert "LOG" not in report["micro"]["ops"]

    digits = np.concatenate([sample.x_test, sample.x_train])
    float_onnx = ort.InferenceSession(str(out)).run(["probabilities"], {"image": digits})[0]
    int8_onnx = ort.InferenceSession(str(tmp_path / "model.int8.onnx")).run(["probabilities"], {"image": digits})[0]
    int8_tflite = int8_tflite_probabilities(tmp_path / "model.int8.tflite", digits)
    # The int8 .tflite is as close to the float model as the int8 ONNX is (measured on these
    # 5,000 digits: 0.034 vs 0.055 for the MLP, 0.041 vs 0.045 for the CNN; softmax(log(p)/T)
    # gave 0.056 and 0.077, and 0.19 on the model).
    assert np.abs(int8_tflite - float_onnx).max() <= 1.25 * np.abs(int8_onnx - float_onnx).max()

    # digit_score in every LiteRT file: the float file's as the ONNX model's, the int8 files' within
    # INT8_SCORE_ATOL (measured on these 5,000 digits, seed 0: up to 0.016 for the MLP, 0.014 for the CNN);
    # the micro header says which output it is and the threshold metrics.json holds.
    from digits.batch.litert_model import LiteRtClassifier
    from digits.exporter.quantize import INT8_SCORE_ATOL

    onnx_scores = ort.InferenceSession(str(out)).run(["digit_score"], {"image": digits})[0]
    for name, tolerance in (("model.tflite", 1e-5), ("model.int8.tflite", INT8_SCORE_ATOL),
                            ("model.micro.tflite", INT8_SCORE_ATOL)):
        classifier = LiteRtClassifier(tmp_path / name)
        scores = classifier.scored(digits)[1]
        assert np.abs(scores - onnx_scores).max() <= tolerance, name
        assert classifier.threshold == json.loads((tmp_path / "metrics.json").read_text())["digit_score"]["threshold"]
    assert report["micro"]["digit_score_max_abs_diff"] <= INT8_SCORE_ATOL
    header = (tmp_path / "model.micro.h").read_text()
    assert "kDigitsScoreOutput = 1;" in header and f"kDigitsScoreThreshold = {classifier.threshold!r}f;" in header

    # Each set's manifest, landed last, names every other file of the set by its sha256.
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert sorted(metrics["artefacts_sha256"]) == sorted(
        ["model.keras", "history.json", "history.png", "confusion.png", "calibration.png"])
    for name, digest in {**metrics["artefacts_sha256"], **report["files_sha256"]}.items():
        assert hashlib.sha256((tmp_path / name).read_bytes()).hexdigest() == digest, name
    assert len(report["files_sha256"]) == 7  # onnx, int8 onnx, tflite, int8 tflite, micro tflite, .cc, .h
    assert "names this very file" in run_digits("inspect", tmp_path / "model.int8.tflite").stdout
    (tmp_path / "model.onnx").write_bytes((tmp_path / "model.int8.onnx").read_bytes())  # a set cut short
    assert "names another file" in run_digits("inspect", tmp_path / "model.onnx").stdout
