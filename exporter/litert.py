"""`digits export --tflite [--int8] [--micro]`: the LiteRT files, start to finish.

convert_all makes every file's bytes before any check (so a refusal is quick);
check_all writes them under export's temporary names, checks them with LiteRT's and
TFLite Micro's interpreters, writes the micro C source, and adds each check to the
parity report. export.py moves everything into place only if all passed.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.contract import IMAGE_SIZE, INPUT_NAME, NUM_CLASSES, PROBABILITIES
from exporter.litert_check import check_tflite, check_tflite_int8
from exporter.litert_convert import keras_to_tflite
from exporter.litert_file import finish
from exporter.metadata import DIGIT_FORM
from exporter.quantize import calibration_digits

INT8_QUANTIZATION = ("full integer (TFLITE_BUILTINS_INT8): int8 weights and activations calibrated on real "
                     "digits; uint8 input with scale 1 and zero point 0 (the raw bytes)")


def _contract(batch: str, output: str) -> str:
    return (f"{INPUT_NAME}: uint8 [{batch}, {IMAGE_SIZE}, {IMAGE_SIZE}], {DIGIT_FORM} "
            f"Output: {PROBABILITIES} {output} [{batch}, {NUM_CLASSES}]")


CONTRACTS = {  # the file's input_contract: the ONNX model's input, its own output
    "float": f"{_contract('batch', 'float32')} (softmax); the label is the argmax.",
    "int8": f"{_contract('batch', 'float32')} (softmax, in steps of 1/256); the label is the argmax.",
    "micro": f"{_contract('1', 'int8')}, quantized: "
             "probability = (value - zero point) * scale, as the tensor says (1/256 and -128 for a softmax); "
             "the label is the argmax.",
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
        from exporter.micro import micro_interpreter

        files.micro = make("micro")
        micro_interpreter(files.micro, max(len(files.micro) * 10, 1 << 20), where)  # names a missing op
    return files


def check_all(files: LiteRtFiles, temps: dict[str, Path], keras_model, dataset, real: np.ndarray,
              atol: float, rtol: float, report, header_name: str = "model.micro.h") -> None:
    """Write the files to their temporary names and add their checks to `report.checks`.
    `header_name`: the name the .micro.h lands under, which the .micro.cc includes."""
    temps["tflite"].write_bytes(files.float)
    report.checks["tflite"] = check_tflite(keras_model, temps["tflite"], real, atol, rtol)
    if files.int8 is not None and report.passed:
        temps["int8_tflite"].write_bytes(files.int8)
        report.checks["int8_tflite"] = check_tflite_int8(
            temps["tflite"], temps["int8_tflite"], dataset.x_test, dataset.y_test, real=real, atol=atol, rtol=rtol
        )
    if files.micro is not None and report.passed:
        from exporter.micro import c_source, check_micro, measure_arena, op_names, output_quantization

        temps["micro_tflite"].write_bytes(files.micro)
        arena = measure_arena(files.micro, real[0])
        report.checks["micro"] = check_micro(temps["micro_tflite"], temps["int8_tflite"], real, arena)
        source, header = c_source(files.micro, header_name, arena, op_names(files.micro),
                                  output_quantization(files.micro))
        temps["micro_cc"].write_text(source)
        temps["micro_h"].write_text(header)


def variant_line(name: str, check: dict) -> str:
    mark = "✓" if check["passed"] else "✗"
    if name == "tflite":
        probs = check["outputs"][PROBABILITIES]
        return (f"[{mark}] tflite: LiteRT vs Keras on {check['samples']:,} inputs: max abs diff "
                f"{probs['max_abs_diff']:.2e} (atol {check['atol']:g}), labels agree {check['label_agreement']:.2%}")
    if name == "int8_tflite":
        return (
            f"[{mark}] int8 tflite: labels agree {check['label_agreement']:.2%} with model.tflite, accuracy "
            f"{check['float_accuracy']:.4f} -> {check['int8_accuracy']:.4f}, size {check['size_ratio']:.0%}; "
            f"alone vs in a batch: {check['batch_max_abs_diff']:.2e}"
        )
    return (
        f"[{mark}] micro: TFLite Micro vs LiteRT's int8 labels agree {check['label_agreement']:.2%} on "
        f"{check['samples']:,} digits; arena {check['arena_bytes']:,} bytes; ops {', '.join(check['ops'])}"
    )
