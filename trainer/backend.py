"""Importing Keras quietly (inside the function that needs it: TensorFlow takes seconds),
and saying in one line what to install when the [train] extra is missing."""

import os
import sys

from digits.core import interrupts
from digits.core.errors import require_extra


def import_keras():
    if "keras" in sys.modules:
        return sys.modules["keras"]
    require_extra("train", "this command", ("tensorflow", "keras"))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    # TensorFlow's C++ start-up chatter (CUDA probing, oneDNN notes) goes straight to
    # descriptor 2, ignoring TF_CPP_MIN_LOG_LEVEL since TF 2.20: hidden for the import only.
    from digits.core.files import stderr_muted

    with stderr_muted(), interrupts.raising():  # seconds, and an import cannot ask whether to stop
        import keras
    return keras
