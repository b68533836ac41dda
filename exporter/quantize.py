"""The int8 variant: static QDQ quantization calibrated on real digits, and its check.

A digit must get one answer, whatever batch it is in and whichever runtime runs it. So
the scales are static, fixed at export from calibration digits (dynamic quantization
takes them from the batch in hand), and onnxruntime's exact integer arithmetic then
gives a digit the same output alone or in any batch. Chosen: static QDQ of the layers
with weights only (MatMul, Conv: bias, ReLU, pooling and softmax stay float),
per-channel s8 weights with reduce_range (7 bits, so a CPU without VNNI cannot saturate
its 16-bit sums of pairs), u8 activations, MinMax ranges from up to 1,000 training
digits. The variants measured against it: docs/decisions.md, "The int8 variant".

check_int8's gates: against the float model, labels agree on >= 99%, accuracy drops
<= 0.5 points, weights <= 35%; each digit alone gives what it gives in a large batch
(every label, probabilities within atol/rtol); and onnx's reference evaluator, which
dequantizes and multiplies in float32 and so may land one step off where a sum sits at
a rounding boundary, agrees on every label, with >= 99.5% of digits within atol/rtol
and none further than 0.05.

The file is written at opset 19 or later: the reference evaluator implements
QuantizeLinear/DequantizeLinear from opset 19 on, which for int8 equal opset 13's.
"""

import os
from pathlib import Path

import numpy as np

from core.contract import IMAGE_SIZE, INPUT_NAME, PROBABILITIES
from exporter.parity import DEFAULT_ATOL, DEFAULT_RTOL

MIN_LABEL_AGREEMENT = 0.99
MAX_ACCURACY_DROP_POINTS = 0.5
MAX_SIZE_RATIO = 0.35  # of the float model's weight bytes (its initializers)
CALIBRATION_DIGITS = 1000  # training digits whose activation ranges (MinMax) set the scales
CALIBRATION_BATCH = 250  # digits per calibration batch: MinMax ranges do not depend on it
MIN_OPSET = 19  # the reference evaluator's Q/DQ start at opset 19
CROWD_SEED = 0
REFERENCE_MIN_CLOSE = 0.995  # share of digits within atol/rtol of the reference evaluator
REFERENCE_MAX_DIFF = 0.05  # one step off at a requantization moved a digit by 7.3e-3 (docs/decisions.md)
# The layers with weights: the MLP's MatMuls and a CNN's convolutions. Bias, ReLU, pooling and
# softmax stay float, as the measured variants chose for the MLP (docs/decisions.md).
QUANTIZED_OPS = ("MatMul", "Conv")
QUANTIZATION = ("int8 static QDQ: MatMul and Conv, per-channel s8 weights (reduce_range), "
                "u8 activations calibrated on real digits")


def calibration_digits(train: np.ndarray, n: int = CALIBRATION_DIGITS) -> np.ndarray:
    """Up to n training digits, evenly spaced so that a class-sorted source gives every class."""
    picks = np.unique(np.linspace(0, len(train) - 1, min(n, len(train))).astype(int))
    return train[picks]


def calibration_reader(digits: np.ndarray, batch: int = CALIBRATION_BATCH):
    """onnxruntime's CalibrationDataReader over uint8 [N, 28, 28] digits, `batch` at a time,
    fed to the model's input: the one reader for the export and benchmarks/int8_variants.py.
    A reader is read once; make one per quantize_static call."""
    from onnxruntime.quantization import CalibrationDataReader

    digits = np.ascontiguousarray(digits, dtype=np.uint8)

    class DigitBatches(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{INPUT_NAME: digits[i : i + batch]} for i in range(0, len(digits), batch)])

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
    """Bytes of a model's initializers: what quantization shrinks (the file also holds the
    graph's names, a fixed cost; why the gate is on weights: docs/decisions.md)."""
    import onnx
    from onnx import numpy_helper

    return sum(numpy_helper.to_array(t).nbytes for t in onnx.load(path).graph.initializer)


def _probabilities(path: Path, digits: np.ndarray) -> np.ndarray:
    from batch.model import OnnxClassifier

    return OnnxClassifier(path).predict(digits)


def alone_and_in_a_crowd(model, digits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities, float32 [N, 10], of each digit run alone, and of the same digits in
    one large batch with uniform noise mixed in (noise widens any range taken from the batch).
    `model`: a classifier (anything with predict), or the path of an .onnx model."""
    from batch.model import OnnxClassifier

    classifier = model if hasattr(model, "predict") else OnnxClassifier(model)
    noise = np.random.default_rng(CROWD_SEED).integers(0, 256, size=(256, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    crowd = classifier.predict(np.concatenate([digits, noise]))[: len(digits)]
    alone = np.concatenate([classifier.predict(digits[i : i + 1]) for i in range(len(digits))])
    return alone, crowd


def int8_gates(float_labels: np.ndarray, int8_labels: np.ndarray, truth: np.ndarray, alone: np.ndarray,
               crowd: np.ndarray, float_path: Path, int8_path: Path) -> dict:
    """What every int8 check reports, ONNX and LiteRT alike: label agreement with the float
    model, accuracy of both against `truth`, the files' sizes, and each digit alone against
    in a crowd (alone_and_in_a_crowd)."""
    float_accuracy = float((float_labels == truth).mean())
    int8_accuracy = float((int8_labels == truth).mean())
    return {
        "samples": int(len(float_labels)),
        "label_agreement": float((float_labels == int8_labels).mean()),
        "float_accuracy": float_accuracy,
        "int8_accuracy": int8_accuracy,
        "accuracy_drop_points": round((float_accuracy - int8_accuracy) * 100, 4),
        "float_bytes": os.path.getsize(float_path),
        "int8_bytes": os.path.getsize(int8_path),
        "consistency_samples": int(len(alone)),
        "batch_label_agreement": float((alone.argmax(1) == crowd.argmax(1)).mean()),
        "batch_max_abs_diff": float(np.abs(alone - crowd).max(initial=0.0)),
    }


def int8_failures(check: dict, alone: np.ndarray, crowd: np.ndarray, atol: float, rtol: float, float_name: str,
                  size: str) -> list[str]:
    """The gates of int8_gates' check that failed, in words. `size`: the check's key for
    the size ratio judged (weight_ratio: the weights; size_ratio: the whole file)."""
    failures = []
    if check["label_agreement"] < MIN_LABEL_AGREEMENT:
        failures.append(f"labels agree with {float_name} on {check['label_agreement']:.2%} < {MIN_LABEL_AGREEMENT:.0%}")
    if check["accuracy_drop_points"] > MAX_ACCURACY_DROP_POINTS:
        failures.append(f"accuracy drops {check['accuracy_drop_points']:.2f} points > {MAX_ACCURACY_DROP_POINTS}")
    if check[size] > MAX_SIZE_RATIO:
        what = "weights are" if size == "weight_ratio" else "file is"
        failures.append(f"{what} {check[size]:.0%} of {float_name}'s > {MAX_SIZE_RATIO:.0%}")
    if check["batch_label_agreement"] < 1.0 or not np.allclose(alone, crowd, atol=atol, rtol=rtol):
        failures.append(
            f"a digit alone and in a batch of {len(crowd) + 256:,} differ (labels agree "
            f"{check['batch_label_agreement']:.2%}, probabilities by up to {check['batch_max_abs_diff']:.2e})"
        )
    return failures


def reference_probabilities(path: Path, digits: np.ndarray) -> np.ndarray:
    """onnx's ReferenceEvaluator (exact numpy arithmetic) on the model: float32 [N, 10]."""
    import onnx
    from onnx.reference import ReferenceEvaluator

    (probs,) = ReferenceEvaluator(onnx.load(path)).run([PROBABILITIES], {INPUT_NAME: digits})
    return probs


def check_int8(float_path: Path, int8_path: Path, digits: np.ndarray, truth: np.ndarray,
               real: np.ndarray | None = None, atol: float = DEFAULT_ATOL, rtol: float = DEFAULT_RTOL) -> dict:
    """The int8 model against the float one (labels on `digits`, accuracy against `truth`,
    size of the weights) and against itself: on the `real` digits (default `digits`), each digit alone
    gives what it gives in a large batch (every label equal, probabilities within
    atol/rtol), and onnxruntime gives what onnx's reference evaluator gives (every label
    equal, probabilities as close as the module docstring says)."""
    real = digits if real is None else real
    float_labels = _probabilities(float_path, digits).argmax(1)
    int8_labels = _probabilities(int8_path, digits).argmax(1)
    alone, crowd = alone_and_in_a_crowd(int8_path, real)
    runtime = _probabilities(int8_path, real)
    reference = reference_probabilities(int8_path, real)
    check = {
        "quantization": QUANTIZATION,
        **int8_gates(float_labels, int8_labels, truth, alone, crowd, float_path, int8_path),
        "reference_label_agreement": float((runtime.argmax(1) == reference.argmax(1)).mean()),
        "reference_max_abs_diff": float(np.abs(runtime - reference).max(initial=0.0)),
        "reference_close": float(np.isclose(runtime, reference, atol=atol, rtol=rtol).all(axis=1).mean()),
    }
    check["size_ratio"] = check["int8_bytes"] / check["float_bytes"]
    check["weight_ratio"] = weight_bytes(int8_path) / weight_bytes(float_path)
    failures = int8_failures(check, alone, crowd, atol, rtol, "the float model", size="weight_ratio")
    if (check["reference_label_agreement"] < 1.0 or check["reference_close"] < REFERENCE_MIN_CLOSE
            or check["reference_max_abs_diff"] > REFERENCE_MAX_DIFF):
        failures.append(
            f"onnxruntime and the onnx reference evaluator differ (labels agree "
            f"{check['reference_label_agreement']:.2%}, {check['reference_close']:.2%} of digits within atol, "
            f"probabilities by up to {check['reference_max_abs_diff']:.2e})"
        )
    check["passed"] = not failures
    if failures:
        check["failure"] = "; ".join(failures)
    return check
