"""`digits export --tflite [--int8] [--micro]`: the LiteRT files, start to finish.

convert_all makes every file's bytes before any check (so a refusal is quick); export.py's
variants write them under temporary names and check them (litert_check.py, micro.py).
"""

from dataclasses import dataclass

import numpy as np

from digits.core.contract import DIGIT_SCORE, IMAGE_SIZE, INPUT_NAME, NUM_CLASSES, PROBABILITIES
from digits.exporter.litert_convert import keras_to_tflite
from digits.exporter.litert_file import finish
from digits.exporter.metadata import DIGIT_FORM
from digits.exporter.quantize import calibration_digits

INT8_QUANTIZATION = ("full integer (TFLITE_BUILTINS_INT8): int8 weights and activations calibrated on real "
                     "digits; uint8 input with scale 1 and zero point 0 (the raw bytes)")


def _contract(batch: str, output: str) -> str:
    return (f"{INPUT_NAME}: uint8 [{batch}, {IMAGE_SIZE}, {IMAGE_SIZE}], {DIGIT_FORM} "
            f"Outputs: {PROBABILITIES} {output} [{batch}, {NUM_CLASSES}]")


_SCORE = f"{DIGIT_SCORE} [{{batch}}], 0..1, higher = more like a digit"
CONTRACTS = {  # the file's input_contract: the ONNX model's input, its own outputs
    "float": f"{_contract('batch', 'float32')} (softmax), the label is the argmax; "
             f"{_SCORE.format(batch='batch')} (float32).",
    "int8": f"{_contract('batch', 'float32')} (softmax, in steps of 1/256), the label is the argmax; "
            f"{_SCORE.format(batch='batch')} (float32, in steps of about 1/256).",
    "micro": f"{_contract('1', 'int8')}, quantized: "
             "probability = (value - zero point) * scale, as the tensor says (1/256 and -128 for a softmax), "
             f"the label is the argmax; {_SCORE.format(batch='1')} (int8, quantized as the tensor says).",
}
DESCRIPTIONS = {
    "float": "MNIST digit classifier: float32 weights, dynamic batch",
    "int8": "MNIST digit classifier: full integer int8, dynamic batch",
    "micro": "MNIST digit classifier for TensorFlow Lite Micro: full integer int8, batch 1, int8 output",
}


@dataclass
class LiteRtFiles:
    float: bytes
    int8: bytes | None = None
    micro: bytes | None = None


def convert_all(model, input_shape, train: np.ndarray, metadata: dict, int8: bool, micro: bool,
                where: str) -> LiteRtFiles:
    """Each requested file's finished bytes. ModelError for a model the converter cannot
    make full-integer, or (micro) one with an op TFLite Micro has no kernel for."""
    calibration = calibration_digits(train)

    def make(kind: str) -> bytes:
        content = keras_to_tflite(model, input_shape, kind, calibration, where)
        extra = {"litert_format": kind, "converter": "tf.lite.TFLiteConverter.from_keras_model",
                 "input_contract": CONTRACTS[kind]}
        if kind != "float":
            extra["quantization"] = INT8_QUANTIZATION
        return finish(content, {**metadata, **extra}, DESCRIPTIONS[kind])

    files = LiteRtFiles(float=make("float"))
    if int8:
        files.int8 = make("int8")
    if micro:
        from digits.exporter.micro import micro_interpreter

        files.micro = make("micro")
        micro_interpreter(files.micro, max(len(files.micro) * 10, 1 << 20), where)  # names a missing op
    return files
