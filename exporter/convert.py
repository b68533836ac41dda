"""Keras -> ONNX through tf2onnx's `from_function`, with the digit contract (docs/export.md) built in.

`tf2onnx.convert.from_keras` fails on Keras 3 (tensorflow-onnx #2448), so the model is wrapped
in a tf.function that takes MNIST's raw form and does the preprocessing itself: the graph needs
no glue code in any runtime.
"""

import copy

from digits.core.contract import DIGIT_SCORE, IMAGE_SIZE, INPUT_NAME, LABEL, NUM_CLASSES, OUTPUT_NAMES, PROBABILITIES
from digits.core.errors import ModelError
from digits.trainer.backend import import_keras

DEFAULT_OPSET = 18  # the highest opset tf2onnx 1.17 tests
MIN_OPSET = 14


def as_probabilities(model, scores, where: str):
    """(model whose output is a probability distribution, whether a softmax was added), judged by
    `scores`, the model's outputs on real digits: distributions are kept, logits get a Softmax
    layer, and scores in 0..1 that do not sum to 1 (a sigmoid per class) are refused with
    ModelError, since no fixed step turns independent scores into probabilities."""
    import numpy as np

    from digits.batch.scores import distributions

    if distributions(np.asarray(scores, dtype=np.float32)):  # the rule classify holds every output to
        return model, False
    scores = np.asarray(scores, dtype=np.float64)
    if scores.min() >= 0 and scores.max() <= 1:
        worst = float(np.abs(scores.sum(axis=1) - 1).max())
        raise ModelError(
            f"{where}: the model's 10 outputs lie in 0..1 but do not sum to 1 (off by up to {worst:.3g}; "
            f"a sigmoid last layer?); export takes a softmax or a linear (logits) last layer"
        )
    keras = import_keras()
    wrapped = keras.Sequential(
        [keras.Input(shape=tuple(model.inputs[0].shape[1:])), model, keras.layers.Softmax(name=PROBABILITIES)],
        name=f"{model.name}_softmax",
    )
    return wrapped, True


def logits_of(model):
    """A Keras model, sharing `model`'s weights, whose output is `model`'s scores before its last
    softmax: the logits, the one tensor every calibrated output is computed from.

    A softmax that cannot be taken apart (inside a custom layer) gives log(probabilities), the
    logits shifted by a constant per digit; int8 and TFLite Micro then have a LOG to run, which
    only that rare model pays for."""
    keras = import_keras()
    last = model.layers[-1] if model.layers else None
    config = last.get_config() if last is not None else {}
    if (isinstance(last, (keras.layers.Softmax, keras.layers.Activation))
            and config.get("activation", "softmax") == "softmax"):
        return keras.Model(model.inputs, last.input, name=f"{model.name}_logits")
    if config.get("activation") == "softmax":
        linear = type(last).from_config({**config, "activation": "linear", "name": f"{last.name}_logits"})
        logits = linear(last.input)
        linear.set_weights(last.get_weights())
        return keras.Model(model.inputs, logits, name=f"{model.name}_logits")
    from keras import ops

    from digits.trainer.calibrate import TINY

    log_p = keras.layers.Lambda(lambda p: ops.log(ops.maximum(p, float(TINY))), name="log_probabilities")
    return keras.Model(model.inputs, log_p(model.outputs[0]), name=f"{model.name}_logits")


def with_temperature(model, temperature: float):
    """`model` with its probabilities calibrated: softmax(logits / T), equal to trainer/calibrate.py's
    softmax(log(p) / T) but with no LOG op, so TFLite Micro's int8 kernels run it; labels unchanged."""
    keras = import_keras()
    logits = logits_of(model)
    scaled = keras.layers.Rescaling(1.0 / float(temperature), name="temperature")(logits.outputs[0])
    probabilities = keras.layers.Softmax(name=PROBABILITIES)(scaled)
    return keras.Model(logits.inputs, probabilities, name=f"{model.name}_calibrated")


def with_scores(model):
    """A Keras model giving [probabilities, probabilities before temperature] from one pass, the
    second for digit_score (trainer/calibrate.py's digit_score_report says why)."""
    keras = import_keras()
    try:
        logits = model.get_layer("temperature").input
    except ValueError:  # no temperature: the probabilities are as trained
        return keras.Model(model.inputs, [model.outputs[0], model.outputs[0]], name=f"{model.name}_scored")
    raw = keras.layers.Softmax(name="before_temperature")(logits)
    return keras.Model(model.inputs, [model.outputs[0], raw], name=f"{model.name}_scored")


def keras_to_onnx(model, input_shape: tuple[int, ...], opset: int = DEFAULT_OPSET):
    """Convert `model` (taking pixels/255 in `input_shape`) to an onnx.ModelProto with the contract above."""
    import_keras()
    import tensorflow as tf
    import tf2onnx

    scored = with_scores(model)

    @tf.function(input_signature=[tf.TensorSpec([None, IMAGE_SIZE, IMAGE_SIZE], tf.uint8, name=INPUT_NAME)])
    def digit_classifier(image):
        pixels = tf.reshape(tf.cast(image, tf.float32) / 255.0, [-1, *input_shape])
        probabilities, as_trained = scored(pixels, training=False)
        return {
            PROBABILITIES: probabilities,
            LABEL: tf.argmax(probabilities, axis=1, output_type=tf.int64),
            DIGIT_SCORE: (tf.reduce_max(as_trained, axis=1) - 1 / NUM_CLASSES) * (NUM_CLASSES / (NUM_CLASSES - 1)),
        }

    onnx_model, _ = tf2onnx.convert.from_function(
        digit_classifier, input_signature=digit_classifier.input_signature, opset=opset
    )
    # tf2onnx leaves the batch axis as "unk__N"; a named axis documents itself.
    for value in [*onnx_model.graph.input, *onnx_model.graph.output]:
        dim = value.type.tensor_type.shape.dim[0]
        dim.ClearField("dim_value")
        dim.dim_param = "batch"
    # tf2onnx orders a dict's outputs its own way; the contract's order is OUTPUT_NAMES'.
    ordered = sorted((copy.deepcopy(o) for o in onnx_model.graph.output), key=lambda o: OUTPUT_NAMES.index(o.name))
    del onnx_model.graph.output[:]
    onnx_model.graph.output.extend(ordered)
    # tf2onnx appends its git hash, "None" in a wheel: the version alone says what made it.
    onnx_model.producer_version = tf2onnx.__version__
    return onnx_model

