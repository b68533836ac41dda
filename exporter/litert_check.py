"""Do the .tflite files give the ONNX model's proof? Checked with LiteRT's interpreter.

- model.tflite against Keras on the ONNX parity's digits and edge inputs (blank,
  saturated, noise, a batch of 1, a batch of 4,096), judged as the ONNX model is
  (exporter/parity.py: np.allclose at atol/rtol, every label equal but for ties);
  a digit's answer at batch 1 and at 4,096 is thereby Keras's both times.
- model.int8.tflite by the ONNX int8's gates (exporter/quantize.py) against
  model.tflite: labels agree on >= 99%, accuracy drops <= 0.5 points, size <= 35%;
  and each parity digit alone gives what it gives in a batch of 2,256.
"""

import os
from pathlib import Path

import numpy as np

from core.contract import IMAGE_SIZE
from exporter.parity import ParityReport, judge, parity_inputs
from exporter.quantize import CROWD_SEED, MAX_ACCURACY_DROP_POINTS, MAX_SIZE_RATIO, MIN_LABEL_AGREEMENT

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
    int8_labels = int8.labels(digits)
    noise = np.random.default_rng(CROWD_SEED).integers(0, 256, size=(256, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    crowd = int8.predict(np.concatenate([real, noise]))[: len(real)]
    alone = np.concatenate([int8.predict(real[i : i + 1]) for i in range(len(real))])
    float_accuracy = float((float_labels == truth).mean())
    int8_accuracy = float((int8_labels == truth).mean())
    check = {
        "samples": int(len(digits)),
        "label_agreement": float((float_labels == int8_labels).mean()),
        "float_accuracy": float_accuracy,
        "int8_accuracy": int8_accuracy,
        "accuracy_drop_points": round((float_accuracy - int8_accuracy) * 100, 4),
        "float_bytes": os.path.getsize(float_path),
        "int8_bytes": os.path.getsize(int8_path),
        "consistency_samples": int(len(real)),
        "batch_label_agreement": float((alone.argmax(1) == crowd.argmax(1)).mean()),
        "batch_max_abs_diff": float(np.abs(alone - crowd).max(initial=0.0)),
    }
    check["size_ratio"] = check["int8_bytes"] / check["float_bytes"]
    failures = []
    if check["label_agreement"] < MIN_LABEL_AGREEMENT:
        failures.append(f"labels agree with model.tflite on {check['label_agreement']:.2%} < {MIN_LABEL_AGREEMENT:.0%}")
    if check["accuracy_drop_points"] > MAX_ACCURACY_DROP_POINTS:
        failures.append(f"accuracy drops {check['accuracy_drop_points']:.2f} points > {MAX_ACCURACY_DROP_POINTS}")
    if check["size_ratio"] > MAX_SIZE_RATIO:
        failures.append(f"file is {check['size_ratio']:.0%} of model.tflite's > {MAX_SIZE_RATIO:.0%}")
    if check["batch_label_agreement"] < 1.0 or not np.allclose(alone, crowd, atol=atol, rtol=rtol):
        failures.append(
            f"a digit alone and in a batch of {len(crowd) + 256:,} differ (labels agree "
            f"{check['batch_label_agreement']:.2%}, probabilities by up to {check['batch_max_abs_diff']:.2e})"
        )
    check["passed"] = not failures
    if failures:
        check["failure"] = "; ".join(failures)
    return check
