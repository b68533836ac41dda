"""Keras -> LiteRT (.tflite) with tf.lite.TFLiteConverter, the ONNX model's contract built in.

Three files, all taking raw MNIST bytes, uint8 [batch, 28, 28], and giving
`probabilities` [batch, 10]; the cast, the division by 255 and the reshape to the
Keras model's input are inside, as in the ONNX graph:

    float  model.tflite        float32 weights, dynamic batch, float32 probabilities
    int8   model.int8.tflite   full integer (TFLITE_BUILTINS_INT8), dynamic batch, uint8 in
                               (scale 1, zero point 0: the bytes themselves), float32 out
    micro  model.micro.tflite  as int8 but batch 1 (TFLite Micro needs static shapes)
                               and int8 out (a board need not compute in float)

The converter is given a Keras model wrapping the user's (Rescaling 1/255, then
Reshape): `from_keras_model` freezes its weights, which the int8 calibrator needs
(what else was tried: docs/decisions.md, "Converting"). Then the file is finished here:
tensors named `image` and `probabilities`, the class labels and input contract as
TFLite Metadata, its buffers 16-byte aligned.
"""

import contextlib
import io
import sys
import warnings

import numpy as np

from digits.core.contract import DIGIT_SCORE, IMAGE_SIZE, INPUT_NAME, NUM_CLASSES
from digits.core.errors import ModelError
from digits.exporter.convert import with_scores
from digits.trainer.backend import import_keras

KINDS = ("float", "int8", "micro")
CALIBRATION_BATCH = 100


def keras_to_tflite(model, input_shape: tuple[int, ...], kind: str, calibration: np.ndarray | None = None,
                    where: str = "model") -> bytes:
    """The converted file's bytes (names and metadata not yet set: see litert_file.finish).

    `calibration`: uint8 [N, 28, 28] training digits for the int8 kinds' activation
    ranges. ModelError when the converter cannot express the model (an op with no
    int8 builtin, for the int8 kinds)."""
    keras = import_keras()
    import tensorflow as tf

    integer = kind in ("int8", "micro")
    image = keras.Input(shape=(IMAGE_SIZE, IMAGE_SIZE), batch_size=1 if kind == "micro" else None,
                        dtype="float32" if integer else "uint8", name=INPUT_NAME)
    pixels = keras.layers.Reshape(input_shape)(keras.layers.Rescaling(1 / 255.0)(image))
    probabilities, as_trained = with_scores(model)(pixels)
    wrapper = keras.Model(image, [probabilities, score_layers(as_trained)], name="digits")

    converter = tf.lite.TFLiteConverter.from_keras_model(wrapper)
    if integer:
        # The calibrator sees raw 0..255 pixel values as floats, so the uint8 input
        # it makes has scale 1 and zero point 0 (checked after conversion).
        step = 1 if kind == "micro" else CALIBRATION_BATCH
        digits = np.asarray(calibration, dtype=np.float32)

        def representative():
            for i in range(0, len(digits), step):
                yield [digits[i : i + step]]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
        if kind == "micro":
            converter.inference_output_type = tf.int8
    try:
        with _quiet():
            content = converter.convert()
    except Exception as e:  # the converter's ConverterError and friends
        lines = ([line for line in str(e).splitlines() if "error:" in line]
                 or str(e).strip().splitlines() or [type(e).__name__])
        raise ModelError(f"{where}: cannot convert to a {kind} LiteRT model ({lines[0].strip()[:200]})") from e
    if integer:
        _check_raw_input(content, where)
    return content


def score_layers(as_trained):
    """digit_score [batch] from the probabilities before temperature, as the ONNX graph computes it
    (exporter/convert.py): REDUCE_MAX, then (top - 1/10) * 10/9 as one Rescaling (MUL, ADD), ops
    TFLite Micro runs at int8."""
    keras = import_keras()
    from keras import ops

    top = keras.layers.Lambda(lambda p: ops.max(p, axis=1), name="top_probability")(as_trained)
    ratio = NUM_CLASSES / (NUM_CLASSES - 1)
    return keras.layers.Rescaling(ratio, offset=-ratio / NUM_CLASSES, name=DIGIT_SCORE)(top)


def _check_raw_input(content: bytes, where: str) -> None:
    """The int8 files promise raw bytes in: input scale 1 and zero point 0."""
    from ai_edge_litert.interpreter import Interpreter

    (details,) = Interpreter(model_content=content).get_input_details()
    scale, zero_point = details["quantization"]
    if details["dtype"] != np.uint8 or scale != 1.0 or zero_point != 0:
        raise ModelError(
            f"{where}: the int8 LiteRT model's input is quantized with scale {scale:g} and zero point "
            f"{zero_point}, not 1 and 0; were the calibration digits blank?"
        )


@contextlib.contextmanager
def _quiet():
    """The converter prints 'Saved artifact at ...' on stdout and MLIR notes on fd 2, and warns
    that the uint8 input has no statistics (it needs none: scale 1, checked after)."""
    from digits.core.files import stderr_muted

    sys.stdout.flush()
    with stderr_muted(), contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        yield
