"""Keras -> ONNX through tf2onnx's `from_function`, with the digit contract built in.

`tf2onnx.convert.from_keras` fails on Keras 3 (tensorflow-onnx #2448), so the
model is wrapped in a tf.function that takes MNIST's raw form and does the
preprocessing itself; tf2onnx converts that function. The graph then needs no
glue code in any runtime:

    image          uint8   [batch, 28, 28]  white digit on black
    probabilities  float32 [batch, 10]
    label          int64   [batch]          argmax of probabilities
"""

from digits.errors import ModelError
from trainer.backend import import_keras

DEFAULT_OPSET = 18  # the highest opset tf2onnx 1.17 tests
MIN_OPSET = 14
INPUT_NAME = "image"
OUTPUT_NAMES = ("probabilities", "label")
# Input shapes (batch axis dropped) a Keras digit model may take.
SUPPORTED_INPUTS = ((784,), (28, 28), (28, 28, 1))


def check_classifier(model, where: str) -> tuple[int, ...]:
    """The model's per-digit input shape; ModelError unless it is a one-input, 10-class digit model."""
    if len(model.inputs) != 1:
        raise ModelError(f"{where}: model has {len(model.inputs)} inputs; a digit classifier has one")
    shape = tuple(model.inputs[0].shape[1:])
    if shape not in SUPPORTED_INPUTS:
        raise ModelError(
            f"{where}: model input has shape {shape}; expected a 784 vector or a 28x28(x1) image"
        )
    if len(model.outputs) != 1 or tuple(model.outputs[0].shape[1:]) != (10,):
        shapes = ", ".join(str(tuple(o.shape)) for o in model.outputs)
        raise ModelError(f"{where}: model outputs {shapes}; expected one output of 10 class scores")
    return shape


def keras_to_onnx(model, input_shape: tuple[int, ...], opset: int = DEFAULT_OPSET):
    """Convert `model` (taking pixels/255 in `input_shape`) to an onnx.ModelProto with the contract above."""
    import_keras()
    import tensorflow as tf
    import tf2onnx

    @tf.function(input_signature=[tf.TensorSpec([None, 28, 28], tf.uint8, name=INPUT_NAME)])
    def digit_classifier(image):
        pixels = tf.reshape(tf.cast(image, tf.float32) / 255.0, [-1, *input_shape])
        probabilities = model(pixels, training=False)
        return {
            "probabilities": probabilities,
            "label": tf.argmax(probabilities, axis=1, output_type=tf.int64),
        }

    onnx_model, _ = tf2onnx.convert.from_function(
        digit_classifier, input_signature=digit_classifier.input_signature, opset=opset
    )
    _name_batch_axis(onnx_model)
    _order_outputs(onnx_model)
    return onnx_model


def _name_batch_axis(onnx_model) -> None:
    # tf2onnx leaves the batch axis as "unk__N"; a named axis documents itself.
    for value in list(onnx_model.graph.input) + list(onnx_model.graph.output):
        dim = value.type.tensor_type.shape.dim[0]
        dim.ClearField("dim_value")
        dim.dim_param = "batch"


def _order_outputs(onnx_model) -> None:
    outputs = {o.name: o for o in onnx_model.graph.output}
    if set(outputs) != set(OUTPUT_NAMES):
        raise RuntimeError(f"tf2onnx produced outputs {sorted(outputs)}, expected {OUTPUT_NAMES}")
    ordered = [type(outputs[name])() for name in OUTPUT_NAMES]
    for copy, name in zip(ordered, OUTPUT_NAMES):
        copy.CopyFrom(outputs[name])
    del onnx_model.graph.output[:]
    onnx_model.graph.output.extend(ordered)

