"""`digits export --tflite [--int8] [--micro]`: Keras -> LiteRT (.tflite), and each file's check.

The three files (float, int8, micro: docs/edge.md) take raw MNIST bytes, uint8 [batch, 28, 28]:
the converter is given a Keras model wrapping the user's (Rescaling 1/255, then Reshape), since
`from_keras_model` freezes its weights, which the int8 calibrator needs (what else was tried:
docs/decisions.md, "Converting").
"""

import contextlib
import io
import sys
import warnings
from pathlib import Path

import numpy as np

from digits.core.contract import DIGIT_SCORE, IMAGE_SIZE, INPUT_NAME, LABEL, NUM_CLASSES, PROBABILITIES
from digits.core.errors import ModelError
from digits.core.files import stderr_muted
from digits.exporter.convert import with_scores
from digits.exporter.litert_file import finish
from digits.exporter.metadata import DIGIT_FORM
from digits.exporter.parity import Check, against_keras, judged
from digits.exporter.quantize import calibration_digits, int8_check, score_check
from digits.trainer.backend import import_keras

CALIBRATION_BATCH = 100
INT8_QUANTIZATION = ("full integer (TFLITE_BUILTINS_INT8): int8 weights and activations calibrated on real "
                     "digits; uint8 input with scale 1 and zero point 0 (the raw bytes)")


def _contract(batch: str, probabilities: str, score: str) -> str:
    return (f"{INPUT_NAME}: uint8 [{batch}, {IMAGE_SIZE}, {IMAGE_SIZE}], {DIGIT_FORM} Outputs: {PROBABILITIES} "
            f"{probabilities}, the label is the argmax; {DIGIT_SCORE} [{batch}], 0..1, higher = more like a digit "
            f"({score}).")


CONTRACTS = {  # the file's input_contract: the ONNX model's input, its own outputs
    "float": _contract("batch", f"float32 [batch, {NUM_CLASSES}] (softmax)", "float32"),
    "int8": _contract("batch", f"float32 [batch, {NUM_CLASSES}] (softmax, in steps of 1/256)",
                      "float32, in steps of about 1/256"),
    "micro": _contract("1", f"int8 [1, {NUM_CLASSES}], quantized: probability = (value - zero point) * scale, as the "
                       "tensor says (1/256 and -128 for a softmax)", "int8, quantized as the tensor says"),
}
DESCRIPTIONS = {
    "float": "MNIST digit classifier: float32 weights, dynamic batch",
    "int8": "MNIST digit classifier: full integer int8, dynamic batch",
    "micro": "MNIST digit classifier for TensorFlow Lite Micro: full integer int8, batch 1, int8 output",
}


def convert_all(model, input_shape, train: np.ndarray, metadata: dict, int8: bool, micro: bool,
                where: str) -> dict[str, bytes]:
    """{kind: finished bytes}: float, and int8 and micro as asked. ModelError for a model the converter
    cannot make full-integer, or (micro) one with an op TFLite Micro has no kernel for."""
    calibration = calibration_digits(train)
    files = {}
    for kind in ["float"] + ["int8"] * int8 + ["micro"] * micro:
        extra = {"litert_format": kind, "converter": "tf.lite.TFLiteConverter.from_keras_model",
                 "input_contract": CONTRACTS[kind], **({"quantization": INT8_QUANTIZATION} if kind != "float" else {})}
        content = keras_to_tflite(model, input_shape, kind, calibration, where)
        files[kind] = finish(content, {**metadata, **extra}, DESCRIPTIONS[kind])
    if micro:
        from digits.exporter.micro import micro_interpreter

        micro_interpreter(files["micro"], max(len(files["micro"]) * 10, 1 << 20), where)  # names a missing op
    return files


def keras_to_tflite(model, input_shape: tuple[int, ...], kind: str, calibration: np.ndarray, where: str) -> bytes:
    """The converted file's bytes, before litert_file.finish. `calibration`: uint8 [N, 28, 28]
    training digits for the int8 kinds' activation ranges. ModelError when the converter
    cannot express the model (an op with no int8 builtin, for the int8 kinds)."""
    keras = import_keras()
    import tensorflow as tf
    from keras import ops

    integer = kind in ("int8", "micro")
    image = keras.Input(shape=(IMAGE_SIZE, IMAGE_SIZE), batch_size=1 if kind == "micro" else None,
                        dtype="float32" if integer else "uint8", name=INPUT_NAME)
    pixels = keras.layers.Reshape(input_shape)(keras.layers.Rescaling(1 / 255.0)(image))
    probabilities, as_trained = with_scores(model)(pixels)
    # digit_score as the ONNX graph computes it (exporter/convert.py): REDUCE_MAX, then (top - 1/10) * 10/9
    # as one Rescaling (MUL, ADD), ops TFLite Micro runs at int8.
    top = keras.layers.Lambda(lambda p: ops.max(p, axis=1), name="top_probability")(as_trained)
    ratio = NUM_CLASSES / (NUM_CLASSES - 1)
    score = keras.layers.Rescaling(ratio, offset=-ratio / NUM_CLASSES, name=DIGIT_SCORE)(top)
    converter = tf.lite.TFLiteConverter.from_keras_model(keras.Model(image, [probabilities, score], name="digits"))
    if integer:
        # The calibrator sees raw 0..255 pixel values as floats, so the uint8 input
        # it makes has scale 1 and zero point 0 (checked after conversion).
        step = 1 if kind == "micro" else CALIBRATION_BATCH
        digits = np.asarray(calibration, dtype=np.float32)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([digits[i : i + step]] for i in range(0, len(digits), step))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
        if kind == "micro":
            converter.inference_output_type = tf.int8
    sys.stdout.flush()
    try:
        # The converter prints 'Saved artifact at ...' on stdout and MLIR notes on fd 2, and warns
        # that the uint8 input has no statistics (it needs none: scale 1, checked below).
        with stderr_muted(), contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            content = converter.convert()
    except Exception as e:  # the converter's ConverterError and friends
        lines = ([line for line in str(e).splitlines() if "error:" in line]
                 or str(e).strip().splitlines() or [type(e).__name__])
        raise ModelError(f"{where}: cannot convert to a {kind} LiteRT model ({lines[0].strip()[:200]})") from e
    if integer:  # the int8 files promise raw bytes in: input scale 1 and zero point 0
        from ai_edge_litert.interpreter import Interpreter

        (details,) = Interpreter(model_content=content).get_input_details()
        scale, zero_point = details["quantization"]
        if details["dtype"] != np.uint8 or scale != 1.0 or zero_point != 0:
            raise ModelError(
                f"{where}: the int8 LiteRT model's input is quantized with scale {scale:g} and zero point "
                f"{zero_point}, not 1 and 0; were the calibration digits blank?"
            )
    return content


def check_tflite(answers: list, tflite_path: Path, atol: float, rtol: float) -> Check:
    """The float .tflite against Keras's `answers` (parity.keras_answers), as the ONNX model is judged."""
    from digits.batch.litert_model import LiteRtClassifier

    classifier = LiteRtClassifier(tflite_path)

    def run(digits: np.ndarray) -> dict:
        probs, scores = classifier.scored(digits)
        return {PROBABILITIES: probs, LABEL: probs.argmax(1), **({} if scores is None else {DIGIT_SCORE: scores})}

    return against_keras(judged(answers, run, "litert", atol, rtol), atol, rtol, name="tflite")


def check_tflite_int8(float_path: Path, int8_path: Path, digits: np.ndarray, truth: np.ndarray,
                      real: np.ndarray, atol: float, rtol: float) -> Check:
    """The int8 .tflite against the float one, and alone against in a crowd, as check_int8 does for ONNX."""
    from digits.batch.litert_model import LiteRtClassifier

    float_model, int8_model = LiteRtClassifier(float_path), LiteRtClassifier(int8_path)
    check = int8_check("int8_tflite", float_model, int8_model, digits, truth, real, atol, rtol, "model.tflite")
    check.failures += score_check(check.numbers, int8_model.scored(digits)[1], float_model.scored(digits)[1],
                                  "the int8 file's", "model.tflite's")
    return check
