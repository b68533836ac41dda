"""Every source of MNIST, read into one form (`Mnist`, digitset.py) by one entry point, `load_mnist`."""

import sys
from pathlib import Path

from digits.core.errors import DataError
from digits.core.files import FOLDER, MISSING, REGULAR, kind_of
from digits.trainer.data.digitset import Mnist
from digits.trainer.data.idx import find_idx_files, load_idx_folder
from digits.trainer.data.imagefolder import is_image_folder, load_image_folder
from digits.trainer.data.keras_mnist import load_keras_mnist
from digits.trainer.data.npz import load_npz
from digits.trainer.data.sample import load_sample


def load_mnist(path: Path | None = None, *, notice=lambda msg: print(msg, file=sys.stderr)) -> Mnist:
    """MNIST from an .npz, a folder of IDX files or an image folder; without a path, Keras's MNIST
    or else (with a `notice`) the bundled sample. DataError when a part holds no digits."""
    data = _load(path, notice)
    for part, images in (("training", data.x_train), ("test", data.x_test)):
        if len(images) == 0:
            raise DataError(f"{data.source}: holds no {part} digits")
    return data


def _load(path: Path | None, notice) -> Mnist:
    if path is None:
        try:
            return load_keras_mnist()
        except DataError as e:
            data = load_sample()
            notice(f"notice: {e}; using the {data.source}")
            return data
    kind = kind_of(path)
    if kind == MISSING:
        raise DataError(f"{path}: no such file or folder")
    if kind == REGULAR:
        if path.suffix == ".npz":
            return load_npz(path)
        raise DataError(f"{path}: not an .npz file; give an .npz, a folder of IDX files or an image folder")
    if kind != FOLDER:
        raise DataError(f"{path}: is {kind}; give an .npz file, a folder of IDX files or an image folder")
    if find_idx_files(path) is not None:
        return load_idx_folder(path)
    if is_image_folder(path):
        return load_image_folder(path)
    raise DataError(f"{path}: holds neither the four MNIST IDX files nor class folders 0..9 (or train/ and test/)")
