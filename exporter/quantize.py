"""The int8 variant: static QDQ quantization calibrated on real digits, and its checks.

Static scales, fixed at export from calibration digits, give a digit the same output alone or in
any batch (dynamic quantization takes them from the batch in hand). The gates: docs/export.md; the
settings (QUANTIZATION) and the variants measured: docs/decisions.md, "The int8 variant".
"""

import os
from pathlib import Path

import numpy as np

from digits.core.contract import IMAGE_SIZE, INPUT_NAME, PROBABILITIES
from digits.exporter.parity import DEFAULT_ATOL, DEFAULT_RTOL, Check

MIN_LABEL_AGREEMENT = 0.99
MAX_ACCURACY_DROP_POINTS = 0.5
MAX_SIZE_RATIO = 0.35  # of the float model's weight bytes (its initializers)
CALIBRATION_DIGITS = 1000  # training digits whose activation ranges (MinMax) set the scales
CALIBRATION_BATCH = 250  # digits per calibration batch: MinMax ranges do not depend on it
MIN_OPSET = 19  # the reference evaluator's Q/DQ start at opset 19 (for int8, equal to opset 13's)
CROWD_SEED = 0
REFERENCE_MIN_CLOSE = 0.995  # share of digits within atol/rtol of the reference evaluator
REFERENCE_MAX_DIFF = 0.05  # one step off at a requantization moved a digit by 7.3e-3 (docs/decisions.md)
# The layers with weights: the MLP's MatMuls and a CNN's convolutions. Bias, ReLU, pooling and
# softmax stay float, as the measured variants chose for the MLP (docs/decisions.md).
QUANTIZED_OPS = ("MatMul", "Conv")
# How far an int8 file's digit_score may stray from the float file's, and TFLite Micro's from LiteRT's
# (both in steps of ~1/256); measured up to 0.075 (docs/decisions.md), so a score near the threshold
# may flip its verdict in an int8 file.
INT8_SCORE_ATOL = 0.1
QUANTIZATION = ("int8 static QDQ: MatMul and Conv, per-channel s8 weights (reduce_range), "
                "u8 activations calibrated on real digits")


def calibration_digits(train: np.ndarray, n: int = CALIBRATION_DIGITS) -> np.ndarray:
    """Up to n training digits, evenly spaced so that a class-sorted source gives every class."""
    picks = np.unique(np.linspace(0, len(train) - 1, min(n, len(train))).astype(int))
    return train[picks]


def calibration_reader(digits: np.ndarray, batch: int = CALIBRATION_BATCH):
    """onnxruntime's CalibrationDataReader over uint8 [N, 28, 28] digits, `batch` at a time, fed to
    the model's input; read once: make one per quantize_static call."""
    from onnxruntime.quantization import CalibrationDataReader

    digits = np.ascontiguousarray(digits, dtype=np.uint8)

    class DigitBatches(CalibrationDataReader):
        batches = iter([{INPUT_NAME: digits[i : i + batch]} for i in range(0, len(digits), batch)])

        def get_next(self):
            return next(self.batches, None)

    return DigitBatches()


def quantize_int8(float_path: Path, int8_path: Path, calibration: np.ndarray) -> None:
    """Write the int8 model: activation ranges from `calibration`, uint8 [N, 28, 28] real digits."""
    import logging

    import onnx
    from onnx import version_converter
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    logging.getLogger().setLevel(logging.ERROR)  # the quantizer logs advice at WARNING
    quantize_static(
        float_path,
        int8_path,
        calibration_reader(calibration),
        quant_format=QuantFormat.QDQ,
        op_types_to_quantize=list(QUANTIZED_OPS),
        per_channel=True,
        reduce_range=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
    )
    model = onnx.load(int8_path)
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    if opset < MIN_OPSET:
        model = version_converter.convert_version(model, MIN_OPSET)
        onnx.save(model, int8_path)


def weight_bytes(path: Path) -> int:
    """Bytes of a model's initializers: what quantization shrinks (the file also holds the graph's
    names, a fixed cost)."""
    import onnx
    from onnx import numpy_helper

    return sum(numpy_helper.to_array(t).nbytes for t in onnx.load(path).graph.initializer)


def alone_and_in_a_crowd(model, digits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities, float32 [N, 10], of each digit run alone, and of the same digits in
    one large batch with uniform noise mixed in (noise widens any range taken from the batch).
    `model`: a classifier (anything with predict), or the path of an .onnx model."""
    from digits.batch.model import OnnxClassifier

    classifier = model if hasattr(model, "predict") else OnnxClassifier(model)
    noise = np.random.default_rng(CROWD_SEED).integers(0, 256, size=(256, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    crowd = classifier.predict(np.concatenate([digits, noise]))[: len(digits)]
    alone = np.concatenate([classifier.predict(digits[i : i + 1]) for i in range(len(digits))])
    return alone, crowd


def int8_check(name: str, float_model, int8_model, digits: np.ndarray, truth: np.ndarray, real: np.ndarray,
               atol: float, rtol: float, float_name: str, weight_ratio: float | None = None) -> Check:
    """What every int8 check judges, ONNX and LiteRT alike: labels on `digits` against the
    float model's, accuracy of both against `truth`, size (the weights' `weight_ratio` where
    given, else the files'), and each of the `real` digits alone against in a crowd.
    `float_model`, `int8_model`: classifiers (labels, predict, path)."""
    float_labels, int8_labels = float_model.labels(digits), int8_model.labels(digits)
    alone, crowd = alone_and_in_a_crowd(int8_model, real)
    float_accuracy = float((float_labels == truth).mean())
    int8_accuracy = float((int8_labels == truth).mean())
    n = {
        "samples": int(len(float_labels)),
        "label_agreement": float((float_labels == int8_labels).mean()),
        "float_accuracy": float_accuracy,
        "int8_accuracy": int8_accuracy,
        "accuracy_drop_points": round((float_accuracy - int8_accuracy) * 100, 4),
        "float_bytes": os.path.getsize(float_model.path),
        "int8_bytes": os.path.getsize(int8_model.path),
        "consistency_samples": int(len(alone)),
        "batch_label_agreement": float((alone.argmax(1) == crowd.argmax(1)).mean()),
        "batch_max_abs_diff": float(np.abs(alone - crowd).max(initial=0.0)),
    }
    n["size_ratio"] = ratio = n["int8_bytes"] / n["float_bytes"]
    size_text, what = f"size {ratio:.0%}", "file is"
    if weight_ratio is not None:
        n["weight_ratio"] = ratio = weight_ratio
        size_text, what = f"weights {weight_ratio:.0%} of float (file {n['size_ratio']:.0%})", "weights are"
    failures = []
    if n["label_agreement"] < MIN_LABEL_AGREEMENT:
        failures.append(f"labels agree with {float_name} on {n['label_agreement']:.2%} < {MIN_LABEL_AGREEMENT:.0%}")
    if n["accuracy_drop_points"] > MAX_ACCURACY_DROP_POINTS:
        failures.append(f"accuracy drops {n['accuracy_drop_points']:.2f} points > {MAX_ACCURACY_DROP_POINTS}")
    if ratio > MAX_SIZE_RATIO:
        failures.append(f"{what} {ratio:.0%} of {float_name}'s > {MAX_SIZE_RATIO:.0%}")
    if n["batch_label_agreement"] < 1.0 or not np.allclose(alone, crowd, atol=atol, rtol=rtol):
        failures.append(
            f"a digit alone and in a batch of {len(crowd) + 256:,} differ (labels agree "
            f"{n['batch_label_agreement']:.2%}, probabilities by up to {n['batch_max_abs_diff']:.2e})"
        )
    summary = (f"labels agree {n['label_agreement']:.2%} with {float_name}, accuracy {float_accuracy:.4f} -> "
               f"{int8_accuracy:.4f}, {size_text}; alone vs in a batch: {n['batch_max_abs_diff']:.2e}")
    return Check(name, n, failures, summary)


def reference_probabilities(path: Path, digits: np.ndarray) -> np.ndarray:
    """onnx's ReferenceEvaluator (exact numpy arithmetic) on the model: float32 [N, 10]."""
    import onnx
    from onnx.reference import ReferenceEvaluator

    (probs,) = ReferenceEvaluator(onnx.load(path)).run([PROBABILITIES], {INPUT_NAME: digits})
    return probs


def check_int8(float_path: Path, int8_path: Path, digits: np.ndarray, truth: np.ndarray,
               real: np.ndarray | None = None, atol: float = DEFAULT_ATOL, rtol: float = DEFAULT_RTOL) -> Check:
    """The int8 .onnx against the float one (int8_check, on the weights' size; `real` defaults to
    `digits`), and onnxruntime against onnx's reference evaluator on the `real` digits: every label
    equal, REFERENCE_MIN_CLOSE of them within atol/rtol and none beyond REFERENCE_MAX_DIFF."""
    from digits.batch.model import OnnxClassifier

    real = digits if real is None else real
    int8 = OnnxClassifier(int8_path)
    check = int8_check("int8", OnnxClassifier(float_path), int8, digits, truth, real, atol, rtol, "the float model",
                       weight_ratio=weight_bytes(int8_path) / weight_bytes(float_path))
    runtime, reference = int8.predict(real), reference_probabilities(int8_path, real)
    n = check.numbers
    n["quantization"] = QUANTIZATION
    n["reference_label_agreement"] = float((runtime.argmax(1) == reference.argmax(1)).mean())
    n["reference_max_abs_diff"] = float(np.abs(runtime - reference).max(initial=0.0))
    n["reference_close"] = float(np.isclose(runtime, reference, atol=atol, rtol=rtol).all(axis=1).mean())
    if (n["reference_label_agreement"] < 1.0 or n["reference_close"] < REFERENCE_MIN_CLOSE
            or n["reference_max_abs_diff"] > REFERENCE_MAX_DIFF):
        check.failures.append(
            f"onnxruntime and the onnx reference evaluator differ (labels agree "
            f"{n['reference_label_agreement']:.2%}, {n['reference_close']:.2%} of digits within atol, "
            f"probabilities by up to {n['reference_max_abs_diff']:.2e})"
        )
    check.summary += f", onnxruntime vs reference: {n['reference_max_abs_diff']:.2e}"
    return check


def score_check(numbers: dict, scores: np.ndarray, reference: np.ndarray, what: str, against: str) -> list[str]:
    """Records in `numbers` how far two files' digit_score [N] lie apart; the failure, if beyond INT8_SCORE_ATOL."""
    diff = numbers["digit_score_max_abs_diff"] = float(np.abs(scores - reference).max(initial=0.0))
    if diff <= INT8_SCORE_ATOL:
        return []
    return [f"{what} digit_score differs from {against} by up to {diff:.3f} > {INT8_SCORE_ATOL}"]
