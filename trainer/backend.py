"""Importing Keras quietly, and saying clearly when the training stack is not installed.

TensorFlow takes seconds to import, so code that needs Keras calls `import_keras()`
inside the function that needs it, never at module level. Commands that need the
`[train]` extra call `require_train_extra()` first: on a core (edge) install they
end in one line naming what to install, not a ModuleNotFoundError.
"""

import os
import sys

from digits.core import interrupts
from digits.core.errors import require_extra


def require_train_extra(what: str, modules: tuple[str, ...] = ("tensorflow", "keras")) -> None:
    """core.errors.require_extra for the [train] extra."""
    require_extra("train", what, modules)


def import_keras():
    if "keras" in sys.modules:
        return sys.modules["keras"]
    require_train_extra("this command")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    # TensorFlow's C++ start-up chatter (CUDA probing, oneDNN and CPU-feature
    # notes) goes straight to file descriptor 2 and ignores TF_CPP_MIN_LOG_LEVEL
    # since TF 2.20: hide fd 2 for the import only. Python errors still raise.
    from digits.core.files import stderr_muted

    with stderr_muted(), interrupts.raising():  # seconds, and an import cannot ask whether to stop
        import keras
    return keras
