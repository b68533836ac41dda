"""Do the .tflite files give the ONNX model's proof? Checked with LiteRT's interpreter.

- model.tflite against Keras on the ONNX parity's digits and edge inputs (blank,
  saturated, noise, a batch of 1, a batch of 4,096), judged as the ONNX model is
  (exporter/parity.py: np.allclose at atol/rtol, every label equal but for ties);
  a digit's answer at batch 1 and at 4,096 is thereby Keras's both times.
- model.int8.tflite by the ONNX int8's gates (exporter/quantize.py) against
  model.tflite: labels agree on >= 99%, accuracy drops <= 0.5 points, size <= 35%;
  and each parity digit alone gives what it gives in a batch of 2,256; its digit_score
  within INT8_SCORE_ATOL of model.tflite's on the test digits.
"""

from pathlib import Path

import numpy as np

from digits.core.contract import DIGIT_SCORE, LABEL, PROBABILITIES
from digits.exporter.parity import Check, ParityReport, check_against_keras
from digits.exporter.quantize import int8_check

# How far an int8 file's digit_score may stray from the float file's, and TFLite Micro's from LiteRT's
# (both quantized in steps of ~1/256, from a softmax quantized so). Measured: up to 0.016 on the MLP
# and the CNN of tests/exporter/test_trained_micro.py (seed 0), 0.029 on the bundled CNN, 0.075 on
# a small CNN trained 3 epochs without outlier exposure (an unseeded run of tests/exporter/test_litert.py):
# docs/decisions.md. A score near the threshold may thus flip its verdict in an int8 file.
INT8_SCORE_ATOL = 0.1

def check_tflite(answers: list, tflite_path: Path, atol: float, rtol: float) -> ParityReport:
    """The float .tflite against Keras's `answers` (parity.keras_answers), as the ONNX model is judged."""
    from digits.batch.litert_model import LiteRtClassifier

    classifier = LiteRtClassifier(tflite_path)

    def run(digits: np.ndarray) -> dict:
        probs, scores = classifier.scored(digits)
        return {PROBABILITIES: probs, LABEL: probs.argmax(1), **({} if scores is None else {DIGIT_SCORE: scores})}

    return check_against_keras(answers, run, "litert", atol, rtol, name="tflite")


def check_tflite_int8(float_path: Path, int8_path: Path, digits: np.ndarray, truth: np.ndarray,
                      real: np.ndarray, atol: float, rtol: float) -> Check:
    """The int8 .tflite against the float one, and alone against in a crowd, as check_int8 does for ONNX."""
    from digits.batch.litert_model import LiteRtClassifier

    float_model, int8_model = LiteRtClassifier(float_path), LiteRtClassifier(int8_path)
    check = int8_check("int8_tflite", float_model, int8_model, (float_path, int8_path), digits, truth, real,
                       atol, rtol, "model.tflite")
    check.numbers.update(score_agreement(int8_model.scored(digits)[1], float_model.scored(digits)[1]))
    check.failures += score_failures(check.numbers, "the int8 file's", "model.tflite's")
    return check


def score_agreement(scores, reference) -> dict:
    """{"digit_score_max_abs_diff": ...} between two files' digit_score [N], {} when either has none."""
    if scores is None or reference is None:
        return {}
    return {"digit_score_max_abs_diff": float(np.abs(scores - reference).max(initial=0.0))}


def score_failures(numbers: dict, what: str, against: str) -> list[str]:
    """The failure, if any, of a score_agreement held to INT8_SCORE_ATOL."""
    diff = numbers.get("digit_score_max_abs_diff", 0.0)
    if diff <= INT8_SCORE_ATOL:
        return []
    return [f"{what} digit_score differs from {against} by up to {diff:.3f} > {INT8_SCORE_ATOL}"]
