"""Do the .tflite files give the ONNX model's proof? Checked with LiteRT's interpreter.

- model.tflite against Keras on the ONNX parity's digits and edge inputs (blank,
  saturated, noise, a batch of 1, a batch of 4,096), judged as the ONNX model is
  (exporter/parity.py: np.allclose at atol/rtol, every label equal but for ties);
  a digit's answer at batch 1 and at 4,096 is thereby Keras's both times.
- model.int8.tflite by the ONNX int8's gates (exporter/quantize.py) against
  model.tflite: labels agree on >= 99%, accuracy drops <= 0.5 points, size <= 35%;
  and each parity digit alone gives what it gives in a batch of 2,256.
"""

from pathlib import Path

import numpy as np

from exporter.parity import ParityReport, judge, parity_inputs
from exporter.quantize import alone_and_in_a_crowd, int8_failures, int8_gates

RUNTIME = "litert"


def check_tflite(keras_model, tflite_path: Path, real: np.ndarray, atol: float, rtol: float) -> dict:
    """The float .tflite against Keras: ParityReport's JSON with 'passed' (and 'failure')."""
    from batch.litert_model import LiteRtClassifier
    from trainer.model import predict_keras

    classifier = LiteRtClassifier(tflite_path)
    report = ParityReport(atol=atol, rtol=rtol)
    for case, digits in parity_inputs(real):
        keras_probs = predict_keras(keras_model, digits, batch_size=len(digits))
        probs = classifier.predict(digits)
        report.cases.append(judge(case, RUNTIME, keras_probs, probs, probs.argmax(1), atol, rtol))
    check = report.to_json()
    if not report.passed:
        check["failure"] = report.first_failure()
    return check


def check_tflite_int8(float_path: Path, int8_path: Path, digits: np.ndarray, truth: np.ndarray,
                      real: np.ndarray, atol: float, rtol: float) -> dict:
    """The int8 .tflite against the float one, and alone against in a crowd, as check_int8 does for ONNX."""
    from batch.litert_model import LiteRtClassifier

    float_labels = LiteRtClassifier(float_path).labels(digits)
    int8 = LiteRtClassifier(int8_path)
    alone, crowd = alone_and_in_a_crowd(int8, real)
    check = int8_gates(float_labels, int8.labels(digits), truth, alone, crowd, float_path, int8_path)
    check["size_ratio"] = check["int8_bytes"] / check["float_bytes"]
    failures = int8_failures(check, alone, crowd, atol, rtol, "model.tflite", size="size_ratio")
    check["passed"] = not failures
    if failures:
        check["failure"] = "; ".join(failures)
    return check
