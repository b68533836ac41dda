"""Importing Keras quietly, in the one place that does it.

TensorFlow takes seconds to import, so every caller imports it through here,
inside the function that needs it, never at module level.
"""

import os
import sys


def import_keras():
    if "keras" in sys.modules:
        return sys.modules["keras"]
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
