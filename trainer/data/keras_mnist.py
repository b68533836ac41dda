"""Keras's own MNIST: its cached mnist.npz, else its download."""

import contextlib
import io
import os
import socket
from pathlib import Path

from digits.core.errors import DataError
from digits.trainer.backend import import_keras
from digits.trainer.data.digitset import Mnist
from digits.trainer.data.npz import load_npz

DOWNLOAD_TIMEOUT_S = 20


def load_keras_mnist() -> Mnist:
    """Keras's 60,000 + 10,000 digits; DataError when they cannot be had. The cached file is
    read with our own safe loader (no pickle, full checks); only a download goes through Keras."""
    # Where keras.datasets.mnist.load_data() keeps its download.
    cached = Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras", "datasets", "mnist.npz")
    if not cached.is_file():
        previous = socket.getdefaulttimeout()
        socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)  # Keras's download has none
        try:
            keras = import_keras()
            # Keras announces the download (and its progress) on stdout: kept out of sight, so
            # that a failed download is the one line the caller prints, not two.
            with contextlib.redirect_stdout(io.StringIO()):
                keras.datasets.mnist.load_data()
        except Exception as e:  # any network or storage failure means: not available
            reason = " ".join(str(e).split(" -- ")[-1].split())[:160] or type(e).__name__
            raise DataError(f"Keras MNIST could not be downloaded ({reason})") from e
        finally:
            socket.setdefaulttimeout(previous)
    return load_npz(cached, source=f"Keras MNIST ({cached.name})")
