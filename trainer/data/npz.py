"""Keras's layout of MNIST: one .npz with x_train, y_train, x_test, y_test."""

import zipfile
from pathlib import Path

import numpy as np

from digits.errors import DataError
from trainer.data.digitset import Mnist, check_images, check_labels

KEYS = ("x_train", "y_train", "x_test", "y_test")


def load_npz(path: Path, source: str | None = None) -> Mnist:
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [k for k in KEYS if k not in archive.files]
            if missing:
                raise DataError(
                    f"{path}: missing arrays {', '.join(missing)} (has: {', '.join(archive.files) or 'none'})"
                )
            arrays = {k: archive[k] for k in KEYS}
    except DataError:
        raise
    except ValueError as e:
        if "allow_pickle" in str(e):
            raise DataError(f"{path}: holds Python objects (pickled); only plain numeric arrays are read") from e
        raise DataError(f"{path}: not a readable .npz archive ({e})") from e
    except (OSError, zipfile.BadZipFile, EOFError) as e:
        raise DataError(f"{path}: not a readable .npz archive ({e})") from e

    x_train = check_images(arrays["x_train"], f"{path} x_train")
    x_test = check_images(arrays["x_test"], f"{path} x_test")
    return Mnist(
        x_train=x_train,
        y_train=check_labels(arrays["y_train"], len(x_train), f"{path} y_train"),
        x_test=x_test,
        y_test=check_labels(arrays["y_test"], len(x_test), f"{path} y_test"),
        source=source or f"npz {path}",
    )
