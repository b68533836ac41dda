"""Training a Recipe's model (trainer/model.py) on Mnist, with an honest validation split."""

import contextlib
import sys
import time
from dataclasses import dataclass

import numpy as np

from digits.core import interrupts
from digits.core.contract import NUM_CLASSES
from digits.trainer.backend import import_keras
from digits.trainer.data import Mnist
from digits.trainer.data.digitset import stratified_split
from digits.trainer.model import MODELS, Recipe, build_augmentation, model_input


@dataclass
class Trained:
    model: object
    history: dict  # loss, accuracy, val_loss, val_accuracy: one float per epoch
    train_seconds: float
    train_size: int
    validation_digits: object  # uint8 [V, 28, 28], the held-out digits, for calibration
    validation_labels: object  # int64 [V]
    epochs_run: int  # fewer than recipe.epochs when early stopping ended training
    best_epoch: int | None  # 1-based epoch whose weights were restored by early stopping


def train(data: Mnist, recipe: Recipe, verbose: int = 2, summary=print) -> Trained:
    """Fit a new model (recipe.model) on data.x_train; Keras progress goes to stderr. Validation
    is a stratified, shuffled split: Keras's own `validation_split` takes the last rows, all
    nines in a class-sorted source. With recipe.early_stop, the best epoch's weights are kept."""
    keras = import_keras()
    keras.utils.set_random_seed(recipe.seed)
    fit_idx, val_idx = stratified_split(data.y_train, recipe.validation_split, recipe.seed)

    model = MODELS[recipe.model](recipe.dropout)
    model.summary(print_fn=lambda line, **_: summary(line))
    shape = tuple(model.inputs[0].shape)
    x = model_input(data.x_train, shape)
    y = keras.utils.to_categorical(data.y_train, NUM_CLASSES)
    validation = (x[val_idx], y[val_idx]) if len(val_idx) else None
    digits, onehot = _with_outliers(data.x_train[fit_idx], y[fit_idx], recipe)
    training = (
        _augmented(digits, onehot, shape, recipe)
        if recipe.augment
        else {"x": model_input(digits, shape), "y": onehot, "batch_size": recipe.batch_size}
    )

    def stop_when_asked(batch, logs) -> None:
        # Ends `fit` after the batch in hand; the caller then raises. Raising from the signal handler
        # inside `fit` corrupted TensorFlow's heap (docs/decisions.md, "Stopping training").
        if interrupts.asked() is not None:
            model.stop_training = True

    callbacks = [keras.callbacks.LambdaCallback(on_train_batch_end=stop_when_asked)]
    stopper = keras.callbacks.EarlyStopping(monitor="val_loss", patience=recipe.early_stop, restore_best_weights=True)
    if recipe.early_stop:
        callbacks.append(stopper)
    if recipe.decay != 1.0:  # Adam's 1e-3 x decay**epoch
        callbacks.append(keras.callbacks.LearningRateScheduler(lambda epoch: 1e-3 * recipe.decay**epoch))

    interrupts.check()  # asked before fitting began: not one batch
    start = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):  # Keras prints progress to stdout
        history = model.fit(
            **training,
            validation_data=validation,
            epochs=recipe.epochs,
            verbose=verbose,
            callbacks=callbacks,
        )
    interrupts.check()
    seconds = time.perf_counter() - start
    history = {k: [float(v) for v in values] for k, values in history.history.items()}
    return Trained(
        model=model,
        history=history,
        train_seconds=seconds,
        train_size=len(fit_idx),
        validation_digits=data.x_train[val_idx],
        validation_labels=data.y_train[val_idx],
        epochs_run=len(history["loss"]),
        best_epoch=stopper.best_epoch + 1 if recipe.early_stop and stopper.best_weights is not None else None,
    )


def _with_outliers(digits, onehot, recipe: Recipe):
    """The training digits and their one-hot targets, then recipe.outliers x as many generated
    non-digits whose target is uniform (outlier exposure's loss term). Keras's training
    `accuracy` counts them as wrong; validation has none."""
    from digits.trainer.outliers import make_outliers

    count = int(round(len(digits) * recipe.outliers))  # 0: the concatenations add nothing
    outliers = make_outliers(count, digits, recipe.seed)
    uniform = np.full((count, NUM_CLASSES), 1 / NUM_CLASSES, onehot.dtype)
    return np.concatenate([digits, outliers]), np.concatenate([onehot, uniform])


def _augmented(digits, onehot, shape: tuple, recipe: Recipe) -> dict:
    """`fit` arguments feeding shuffled batches of augmented digits through tf.data, outside the model."""
    import tensorflow as tf

    augment = build_augmentation(recipe.seed)
    images = digits.astype(np.float32)[..., None] / 255.0

    def step(batch, labels):
        moved = augment(batch, training=True)
        return tf.reshape(moved, [-1, *shape[1:]]), labels

    # One map call at a time: the random layers draw from one seeded state, so runs repeat.
    pipeline = (
        tf.data.Dataset.from_tensor_slices((images, onehot.astype(np.float32)))
        .shuffle(len(images), seed=recipe.seed, reshuffle_each_iteration=True)
        .batch(recipe.batch_size)
        .map(step)
        .prefetch(2)
    )
    return {"x": pipeline, "shuffle": False}  # the pipeline shuffles; Keras would warn it cannot
