"""Importing Keras quietly, and saying clearly when the training stack is not installed.

TensorFlow takes seconds to import, so code that needs Keras calls `import_keras()`
inside the function that needs it, never at module level. Commands that need the
`[train]` extra call `require_train_extra()` first: on a core (edge) install they
end in one line naming what to install, not a ModuleNotFoundError.
"""

import importlib.util
import os
import sys

from core.errors import DigitsError

TRAIN_EXTRA = "pip install 'digits[train]'"


class MissingExtraError(DigitsError):
    """A command needs packages of an extra that this install does not have."""


def require_train_extra(what: str, modules: tuple[str, ...] = ("tensorflow", "keras")) -> None:
    """MissingExtraError unless every module in `modules` can be imported (checked without importing)."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise MissingExtraError(
            f"{what} needs the training extra, which this install lacks (no {', '.join(missing)}): {TRAIN_EXTRA}"
        )


def import_keras():
    if "keras" in sys.modules:
        return sys.modules["keras"]
    require_train_extra("this command")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    # TensorFlow's C++ start-up chatter (CUDA probing, oneDNN and CPU-feature
    # notes) goes straight to file descriptor 2 and ignores TF_CPP_MIN_LOG_LEVEL
    # since TF 2.20: hide fd 2 for the import only. Python errors still raise.
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import keras
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    return keras
