"""The toolkit's one in-memory form of labelled digits, and its checks."""

from dataclasses import dataclass

import numpy as np

from digits.core.contract import IMAGE_SIZE, NUM_CLASSES, PIXELS
from digits.core.errors import DataError

SHAPE = (IMAGE_SIZE, IMAGE_SIZE)
# Sources without a test part (the bundled sample, a flat image folder) hold this much out, alike every time.
TEST_FRACTION = 0.2
SPLIT_SEED = 0


@dataclass(frozen=True)
class Mnist:
    """Train and test digits: x_* uint8 [N, 28, 28] white on black, y_* int64 [N] in 0..9;
    `source` says in words where they came from (shown to users, written to metrics.json)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str


def check_images(images: np.ndarray, where: str) -> np.ndarray:
    """[N, 28, 28] or [N, 784] integers in 0..255 as uint8 [N, 28, 28]; DataError for anything else."""
    if images.dtype == object or not np.issubdtype(images.dtype, np.integer):
        raise DataError(f"{where}: images must be integers 0..255, found dtype {images.dtype}")
    if images.ndim == 2 and images.shape[1] == PIXELS:
        images = images.reshape(-1, *SHAPE)
    if images.ndim != 3 or images.shape[1:] != SHAPE:
        raise DataError(f"{where}: images must have shape (N, 28, 28) or (N, 784), found {images.shape}")
    if images.dtype != np.uint8:
        if images.size and (images.min() < 0 or images.max() > 255):
            raise DataError(f"{where}: pixel values must be 0..255, found {images.min()}..{images.max()}")
        images = images.astype(np.uint8)
    return images


def check_labels(labels: np.ndarray, count: int, where: str) -> np.ndarray:
    """Labels for `count` images as int64 [N] in 0..9; DataError for anything else."""
    if labels.dtype == object or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{where}: labels must be integers 0..9, found dtype {labels.dtype}")
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise DataError(f"{where}: labels must have shape (N,), found {labels.shape}")
    if len(labels) != count:
        raise DataError(f"{where}: {len(labels)} labels for {count} images")
    bad = (labels < 0) | (labels >= NUM_CLASSES)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"{where}: label {labels[i]} at index {i} is outside 0..9 ({int(bad.sum())} such labels)")
    return labels.astype(np.int64)


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (keep, held_out): `fraction` of each class held out, both shuffled (a source
    sorted by class, as the bundled sample is, would otherwise hold out one class only)."""
    rng = np.random.default_rng(seed)
    keep, held = [], []
    for cls in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == cls))
        n_held = int(round(len(idx) * fraction))
        held.append(idx[:n_held])
        keep.append(idx[n_held:])
    return rng.permutation(np.concatenate(keep)), rng.permutation(np.concatenate(held))


def split_off_test(images: np.ndarray, labels: np.ndarray, source: str) -> Mnist:
    """Mnist from one pool of digits: TEST_FRACTION of each class held out for testing."""
    train_idx, test_idx = stratified_split(labels, TEST_FRACTION, SPLIT_SEED)
    return Mnist(images[train_idx], labels[train_idx], images[test_idx], labels[test_idx], source)
