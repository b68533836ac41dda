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

from core.contract import LABEL, PROBABILITIES
from exporter.parity import Check, ParityReport, check_against_keras
from exporter.quantize import int8_check


def check_tflite(answers: list, tflite_path: Path, atol: float, rtol: float) -> ParityReport:
    """The float .tflite against Keras's `answers` (parity.keras_answers), as the ONNX model is judged."""
    from batch.litert_model import LiteRtClassifier

    classifier = LiteRtClassifier(tflite_path)

    def run(digits: np.ndarray) -> dict:
        probs = classifier.predict(digits)
        return {PROBABILITIES: probs, LABEL: probs.argmax(1)}

    return check_against_keras(answers, run, "litert", atol, rtol, name="tflite")


def check_tflite_int8(float_path: Path, int8_path: Path, digits: np.ndarray, truth: np.ndarray,
                      real: np.ndarray, atol: float, rtol: float) -> Check:
    """The int8 .tflite against the float one, and alone against in a crowd, as check_int8 does for ONNX."""
    from batch.litert_model import LiteRtClassifier

    return int8_check("int8_tflite", LiteRtClassifier(float_path), LiteRtClassifier(int8_path),
                      (float_path, int8_path), digits, truth, real, atol, rtol, "model.tflite")
