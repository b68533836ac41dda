"""The recipes in one screen: the networks (`build_mlp` mirrors the seed tutorial's layer list,
`RECIPE` its numbers), their training defaults, and the Keras side of the digit contract."""

import zipfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from digits.core.contract import IMAGE_SIZE, NUM_CLASSES, PIXELS
from digits.core.errors import ModelError, first_line
from digits.core.files import require_file
from digits.trainer.backend import import_keras


@dataclass(frozen=True)
class Recipe:
    """How to train: each field is a `digits train` option, defaulting to the seed's value."""

    epochs: int = 50
    batch_size: int = 128
    validation_split: float = 0.2  # held out of the training digits, stratified and shuffled
    dropout: float = 0.25
    seed: int = 0  # seeds the split, the initial weights and dropout
    model: str = "mlp"  # a key of MODELS
    augment: bool = False  # random shifts, rotations and zoom of the training digits
    early_stop: int = 0  # stop after this many epochs without a better validation loss; 0: off
    decay: float = 1.0  # the learning rate is multiplied by this after each epoch; 1: constant
    outliers: float = 0.5  # generated non-digits per training digit, taught as uniform (trainer/outliers.py); 0: off


RECIPE = Recipe()
MAX_SEED = 2**31 - 1  # seeds numpy (below 2**32), TensorFlow and the augmentation layers (seed + 2) alike

# The CNN's own defaults where they differ from the seed's, chosen on full MNIST's validation
# split (docs/decisions.md, "The CNN, remade"): augmented digits, dropout 0.25 (augmentation
# regularises too), and a learning rate that decays by 0.85 an epoch: 15 epochs end at a
# tenth of Adam's 1e-3.
CNN_DEFAULTS = {"epochs": 15, "dropout": 0.25, "augment": True, "decay": 0.85}


def default_recipe(model: str) -> Recipe:
    """The recipe `digits train --model MODEL` trains with when given no other option."""
    return replace(RECIPE, model=model, **(CNN_DEFAULTS if model == "cnn" else {}))


def build_mlp(dropout: float = RECIPE.dropout):
    """784 -> 256 -> 128 -> 64 -> 10, dropout after each hidden layer, Adam, cross-entropy."""
    keras = import_keras()
    from keras import layers

    model = keras.Sequential(
        [
            keras.Input(shape=(PIXELS,), name="pixels"),
            layers.Dense(256, activation="relu"),
            layers.Dropout(dropout),
            layers.Dense(128, activation="relu"),
            layers.Dropout(dropout),
            layers.Dense(64, activation="relu"),
            layers.Dropout(dropout),
            layers.Dense(NUM_CLASSES, activation="softmax"),
        ],
        name="mnist_mlp",
    )
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    return model


def build_cnn(dropout: float = CNN_DEFAULTS["dropout"]):
    """28x28x1 -> conv 32 3x3 relu, max-pool, conv 64 3x3 relu, max-pool, conv 128 3x3 relu,
    dropout, dense 128 relu, dropout, 10 softmax: 241,546 weights."""
    keras = import_keras()
    from keras import layers

    model = keras.Sequential(
        [
            keras.Input(shape=(IMAGE_SIZE, IMAGE_SIZE, 1), name="pixels"),
            layers.Conv2D(32, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Conv2D(64, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Conv2D(128, 3, activation="relu"),
            layers.Flatten(),
            layers.Dropout(dropout),
            layers.Dense(128, activation="relu"),
            layers.Dropout(dropout),
            layers.Dense(NUM_CLASSES, activation="softmax"),
        ],
        name="mnist_cnn",
    )
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    return model


MODELS = {"mlp": build_mlp, "cnn": build_cnn}


def build_augmentation(seed: int):
    """Random shifts (up to 10% of a side), rotations (up to 18 degrees) and zoom (up to 10%) of
    [N, 28, 28, 1] digits, filling with black: for training batches, outside the saved model."""
    keras = import_keras()
    from keras import layers

    return keras.Sequential(
        [
            layers.RandomTranslation(0.1, 0.1, fill_mode="constant", seed=seed),
            layers.RandomRotation(0.05, fill_mode="constant", seed=seed + 1),
            layers.RandomZoom(0.1, fill_mode="constant", seed=seed + 2),
        ],
        name="augmentation",
    )


def model_input(digits: np.ndarray, input_shape: tuple) -> np.ndarray:
    """The Keras model's input step: uint8 [N, 28, 28] -> float32 pixels/255 in `input_shape`,
    the model's, batch axis first ((None, 784), (None, 28, 28, 1) or (None, 28, 28))."""
    return (digits.astype(np.float32) / 255.0).reshape(-1, *input_shape[1:])


def load_keras_model(path: Path):
    """Load a .keras file with safe mode on: no code from Lambda layers runs."""
    require_file(path, "model file", ModelError)  # a FIFO or folder is named, not read
    # A .keras model is a zip archive: said in our words, where Keras says "File not found" for a
    # truncated file that exists, or "File format not supported".
    if not str(path).lower().endswith((".h5", ".hdf5")) and not zipfile.is_zipfile(path):
        with open(path, "rb") as f:  # readable: require_file opened it
            why = ("a zip archive without its end: truncated or corrupt" if f.read(4) == b"PK\x03\x04"
                   else "not a zip archive, which a .keras model is")
        raise ModelError(f"{path}: not a loadable Keras model ({why})")
    keras = import_keras()
    try:
        return keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as e:  # Keras raises many types for a bad file; all mean "not loadable"
        raise ModelError(f"{path}: not a loadable Keras model ({first_line(e)})") from e


def predict_keras(model, digits: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """Class probabilities, float32 [N, 10], for uint8 [N, 28, 28] digits."""
    x = model_input(digits, tuple(model.inputs[0].shape))
    return np.asarray(model.predict(x, batch_size=batch_size, verbose=0), dtype=np.float32)


# Input shapes (batch axis dropped) a Keras digit model may take.
SUPPORTED_INPUTS = ((PIXELS,), (IMAGE_SIZE, IMAGE_SIZE), (IMAGE_SIZE, IMAGE_SIZE, 1))


def check_classifier(model, where: str) -> tuple[int, ...]:
    """The model's per-digit input shape; ModelError unless it is a one-input, 10-class
    digit model. `digits evaluate` and `digits export` take the same models."""
    try:
        inputs = model.inputs
    except (AttributeError, ValueError) as e:  # Keras's words for a model never built: "has no defined inputs yet"
        raise ModelError(f"{where}: the model was saved before it was built, so it has no input shape; "
                         "give it a keras.Input (or call model.build) and save it again") from e
    if len(inputs) != 1:
        raise ModelError(f"{where}: model has {len(inputs)} inputs; a digit classifier has one")
    shape = tuple(inputs[0].shape[1:])
    if shape not in SUPPORTED_INPUTS:
        raise ModelError(f"{where}: model input has shape {shape}; expected a 784 vector or a 28x28(x1) image")
    if len(model.outputs) != 1 or tuple(model.outputs[0].shape[1:]) != (NUM_CLASSES,):
        shapes = ", ".join(str(tuple(o.shape)) for o in model.outputs)
        raise ModelError(f"{where}: model outputs {shapes}; expected one output of 10 class scores")
    return shape
