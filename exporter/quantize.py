"""The int8 variant: onnxruntime's dynamic quantization, checked against the float model.

Measured on the seed's MLP (bundled sample, 1,000 test digits): dynamic
per-channel int8 agreed with the float model on 100% of labels at 26% of its
size; static QDQ with 1,000 calibration digits agreed on 99.9% at 27%. Dynamic
needs no calibration data, so it is the one used.
"""

import os
from pathlib import Path

import numpy as np

MIN_LABEL_AGREEMENT = 0.99
MAX_ACCURACY_DROP_POINTS = 0.5
MAX_SIZE_RATIO = 0.35


def quantize_int8(float_path: Path, int8_path: Path) -> None:
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    logging.getLogger().setLevel(logging.ERROR)  # the quantizer logs advice at WARNING
    quantize_dynamic(float_path, int8_path, weight_type=QuantType.QInt8, per_channel=True)


def check_int8(float_path: Path, int8_path: Path, digits: np.ndarray, truth: np.ndarray) -> dict:
    """Label agreement, accuracy drop and size of the int8 model against the float one."""
    from batch.model import OnnxClassifier

    float_labels = OnnxClassifier(float_path).labels(digits)
    int8_labels = OnnxClassifier(int8_path).labels(digits)
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
    }
    check["size_ratio"] = check["int8_bytes"] / check["float_bytes"]
    failures = []
    if check["label_agreement"] < MIN_LABEL_AGREEMENT:
        failures.append(f"labels agree with the float model on {check['label_agreement']:.2%} < {MIN_LABEL_AGREEMENT:.0%}")
    if check["accuracy_drop_points"] > MAX_ACCURACY_DROP_POINTS:
        failures.append(f"accuracy drops {check['accuracy_drop_points']:.2f} points > {MAX_ACCURACY_DROP_POINTS}")
    if check["size_ratio"] > MAX_SIZE_RATIO:
        failures.append(f"file is {check['size_ratio']:.0%} of the float model's > {MAX_SIZE_RATIO:.0%}")
    check["passed"] = not failures
    if failures:
        check["failure"] = "; ".join(failures)
    return check
