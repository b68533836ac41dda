"""The int8 variant: static QDQ quantization calibrated on real digits, and its check.

A digit must get one answer, whatever batch it is in and whichever runtime runs it.
Measured by benchmarks/int8_variants.py on the seed's MLP (bundled sample; accuracy on
its 1,000 test digits, float 0.9500; the rest on 2,000 real digits; "alone vs batch":
each digit run alone against the same digit in a batch of 2,256; "vs reference": onnx's
ReferenceEvaluator; labels that differ, then the max abs difference of the probabilities):

| variant                               | size | accuracy | agrees with float | alone vs batch | vs reference |
|---------------------------------------|------|----------|-------------------|----------------|--------------|
| dynamic, s8 weights (the old variant) | 26%  | 0.9500   | 99.95%            | 1, 4.0e-2      | 0, 2.4e-7    |
| dynamic, s8 weights, reduce_range     | 26%  | 0.9500   | 99.95%            | 0, 3.5e-2      | 0, 2.4e-7    |
| dynamic, u8 weights                   | 26%  | 0.9500   | 100.00%           | 0, 3.0e-2      | 0, 2.4e-7    |
| static QDQ, every op                  | 27%  | 0.9500   | 100.00%           | 0, 0           | 0, 3.9e-3    |
| static QDQ, MatMul only               | 27%  | 0.9500   | 100.00%           | 0, 0           | 0, 2.4e-7    |
| static QDQ, MatMul only, u8 weights   | 27%  | 0.9500   | 100.00%           | 0, 0           | 0, 1.9e-6    |
| static QDQ, MatMul only, reduce_range | 27%  | 0.9500   | 100.00%           | 0, 0           | 0, 2.4e-7    |

Dynamic quantization takes each activation's scale from the batch in hand, so a digit's
answer depends on its neighbours (up to 0.04 here, and a changed label). Static scales
are fixed at export from calibration digits, and onnxruntime's integer arithmetic is
exact, so a digit gives bit-identical output alone or among 2,000 others. Quantizing
every op quantizes the softmax too, whose output then moves in steps of 1/255;
quantizing the MatMuls alone keeps bias, ReLU and softmax in float.

Chosen: the last row. Static QDQ, MatMul only, per-channel s8 weights with reduce_range
(7 bits), u8 activations, MinMax ranges from up to 1,000 training digits. reduce_range
is for CPUs without VNNI, where onnxruntime's u8s8 kernel adds pairs of products in 16
bits and can saturate (255 x 127 x 2 > 32767; 255 x 63 x 2 is not). This machine has
VNNI, so the table cannot show saturation, and reduce_range cost nothing measurable
here. u8 weights avoid saturation too, but ran 1.5x to 1.9x slower in two runs.

onnx's reference evaluator is not exact for these models: it dequantizes and multiplies
in float32, where onnxruntime adds integers exactly. A sum within float32's error of a
rounding boundary can land one step off: on a weakly trained MLP (3 epochs, 600
digits), 1 digit of 2,000, exact value 172.49999451, onnxruntime 172, the reference 173,
moving that digit's probabilities by 7.3e-3. So the check asks of the reference: every
label equal, at least 99.5% of digits within atol/rtol, none further than 0.05.
onnxruntime against itself (alone vs batch) must be within atol/rtol on every digit.

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
REFERENCE_MAX_DIFF = 0.05  # one step off at a requantization moved a digit by 7.3e-3 (docstring)
# The layers with weights: the MLP's MatMuls and a CNN's convolutions. Bias, ReLU, pooling and
# softmax stay float, as the table above chose for the MLP.
QUANTIZED_OPS = ("MatMul", "Conv")
QUANTIZATION = "int8 static QDQ: MatMul and Conv, per-channel s8 weights (reduce_range), u8 activations calibrated on real digits"


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
    """Bytes of a model's initializers: what quantization shrinks. The file also holds the
    graph (node and tensor names), about 10 kB whatever the weights: 7% of the seed's
    MLP, but a third of keras.io's CNN (139 kB of weights), whose int8 file measured 38%
    of the float file while its weights were 26%."""
    import onnx
    from onnx import numpy_helper

    return sum(numpy_helper.to_array(t).nbytes for t in onnx.load(path).graph.initializer)


def _probabilities(path: Path, digits: np.ndarray) -> np.ndarray:
    from batch.model import OnnxClassifier

    return OnnxClassifier(path).predict(digits)


def alone_and_in_a_crowd(int8_path: Path, digits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities, float32 [N, 10], of each digit run alone, and of the same digits in
    one large batch with uniform noise mixed in (noise widens any range taken from the batch)."""
    from batch.model import OnnxClassifier

    classifier = OnnxClassifier(int8_path)
    noise = np.random.default_rng(CROWD_SEED).integers(0, 256, size=(256, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    crowd = classifier.predict(np.concatenate([digits, noise]))[: len(digits)]
    alone = np.concatenate([classifier.predict(digits[i : i + 1]) for i in range(len(digits))])
    return alone, crowd


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
    equal, probabilities as close as the module docstring explains)."""
    real = digits if real is None else real
    float_labels = _probabilities(float_path, digits).argmax(1)
    int8_labels = _probabilities(int8_path, digits).argmax(1)
    float_accuracy = float((float_labels == truth).mean())
    int8_accuracy = float((int8_labels == truth).mean())
    alone, crowd = alone_and_in_a_crowd(int8_path, real)
    runtime = _probabilities(int8_path, real)
    reference = reference_probabilities(int8_path, real)
    check = {
        "quantization": QUANTIZATION,
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
        "reference_label_agreement": float((runtime.argmax(1) == reference.argmax(1)).mean()),
        "reference_max_abs_diff": float(np.abs(runtime - reference).max(initial=0.0)),
        "reference_close": float(np.isclose(runtime, reference, atol=atol, rtol=rtol).all(axis=1).mean()),
    }
    check["size_ratio"] = check["int8_bytes"] / check["float_bytes"]
    check["weight_ratio"] = weight_bytes(int8_path) / weight_bytes(float_path)
    failures = []
    if check["label_agreement"] < MIN_LABEL_AGREEMENT:
        failures.append(f"labels agree with the float model on {check['label_agreement']:.2%} < {MIN_LABEL_AGREEMENT:.0%}")
    if check["accuracy_drop_points"] > MAX_ACCURACY_DROP_POINTS:
        failures.append(f"accuracy drops {check['accuracy_drop_points']:.2f} points > {MAX_ACCURACY_DROP_POINTS}")
    if check["weight_ratio"] > MAX_SIZE_RATIO:
        failures.append(f"weights are {check['weight_ratio']:.0%} of the float model's > {MAX_SIZE_RATIO:.0%}")
    if check["batch_label_agreement"] < 1.0 or not np.allclose(alone, crowd, atol=atol, rtol=rtol):
        failures.append(
            f"a digit alone and in a batch of {len(crowd) + 256:,} differ (labels agree "
            f"{check['batch_label_agreement']:.2%}, probabilities by up to {check['batch_max_abs_diff']:.2e})"
        )
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
