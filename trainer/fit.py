"""Training the seed's MLP on Mnist with a Recipe (trainer/model.py), with an honest validation split."""

import contextlib
import signal
import sys
import threading
import time
from dataclasses import dataclass

from trainer.backend import import_keras
from trainer.data import Mnist
from trainer.data.digitset import stratified_split
from trainer.model import Recipe, build_mlp, model_input


@contextlib.contextmanager
def stop_between_batches(model):
    """Ctrl-C or SIGTERM while fitting stops training after the batch in hand; the
    program's own handler then acts, from plain Python after `fit` has returned.

    An exception raised by a signal handler in the middle of `fit` unwinds through
    TensorFlow's input pipeline while its threads still run, and corrupted the heap:
    glibc aborted the process (SIGABRT, "free(): invalid next size") in about half of
    the runs of a SIGTERM test on a loaded machine, measured.
    """
    if threading.current_thread() is not threading.main_thread():  # handlers are the main thread's
        yield
        return
    caught: list[int] = []

    def defer(signum, frame):
        caught.append(signum)
        model.stop_training = True  # Keras checks it after every batch

    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for s, handler in previous.items():
        if handler is not signal.SIG_IGN:  # an ignored signal stays ignored
            signal.signal(s, defer)
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if caught:  # now as if the signal came at this moment, to the handler it would have met
        signum = caught[0]
        handler = previous[signum]
        if callable(handler):
            handler(signum, None)
        else:
            signal.raise_signal(signum)


@dataclass
class Trained:
    model: object
    history: dict  # loss, accuracy, val_loss, val_accuracy: one float per epoch
    train_seconds: float
    train_size: int
    validation_size: int


def train(data: Mnist, recipe: Recipe, verbose: int = 2, summary=print) -> Trained:
    """Fit a new MLP on data.x_train; Keras progress goes to stderr.

    The validation part is a stratified, shuffled split of the training digits:
    Keras's own `validation_split` takes the last rows, which in a class-sorted
    source (the bundled sample) are all nines.
    """
    keras = import_keras()
    keras.utils.set_random_seed(recipe.seed)
    fit_idx, val_idx = stratified_split(data.y_train, recipe.validation_split, recipe.seed)

    model = build_mlp(recipe.dropout)
    model.summary(print_fn=lambda line, **_: summary(line))
    x = model_input(data.x_train, model.inputs[0].shape)
    y = keras.utils.to_categorical(data.y_train, 10)
    validation = (x[val_idx], y[val_idx]) if len(val_idx) else None

    start = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr), stop_between_batches(model):  # Keras prints progress to stdout
        history = model.fit(
            x[fit_idx],
            y[fit_idx],
            validation_data=validation,
            epochs=recipe.epochs,
            batch_size=recipe.batch_size,
            verbose=verbose,
        )
    seconds = time.perf_counter() - start
    return Trained(
        model=model,
        history={k: [float(v) for v in values] for k, values in history.history.items()},
        train_seconds=seconds,
        train_size=len(fit_idx),
        validation_size=len(val_idx),
    )
