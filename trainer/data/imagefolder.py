"""A folder of digit images in class folders (the layouts: docs/train.md). Images of any size are
brought to MNIST's form by the batch runner's decoder: training sees what `digits classify` feeds the model.
"""

from pathlib import Path

import numpy as np

from digits.batch.decode import ImageError, decode_digit
from digits.batch.inputs import is_image_path
from digits.core.contract import CLASS_LABELS
from digits.core.errors import DataError
from digits.core.files import PathError, open_regular
from digits.trainer.data.digitset import SPLIT_SEED, TEST_FRACTION, Mnist, split_off_test


def is_image_folder(folder: Path) -> bool:
    return any((folder / d).is_dir() for d in CLASS_LABELS) or (folder / "train").is_dir()


def _refuse_strays(root: Path, expected: tuple[str, ...], what: str) -> None:
    """DataError for a visible folder in `root` other than `expected` (hidden ones, such as
    .ipynb_checkpoints, are a tool's): `seven/` would otherwise lose its sevens."""
    try:
        strays = sorted(p.name for p in root.iterdir()
                        if p.is_dir() and p.name not in expected and not p.name.startswith("."))
    except OSError as e:
        raise DataError(f"{root}: cannot list ({e.strerror or e})") from e
    if strays:
        raise DataError(f"{root}: folder {strays[0]}/ {what}")


def _list_class_files(root: Path) -> tuple[list[Path], np.ndarray]:
    """Image files of root/0..9 and their labels; any other folder is an error."""
    _refuse_strays(root, CLASS_LABELS, "is not a class; class folders are named 0..9")
    paths: list[Path] = []
    labels: list[int] = []
    for label, name in enumerate(CLASS_LABELS):
        if (root / name).is_dir():
            files = _class_images(root / name)
            paths += files
            labels += [label] * len(files)
    if not paths:
        raise DataError(f"{root}: no image files in class folders 0..9")
    return paths, np.array(labels, np.int64)


def _class_images(class_dir: Path) -> list[Path]:
    """The image files in a class folder and every visible folder below it, depth first, sorted;
    a symlink that leads back to a folder it is in is an error."""
    found: list[Path] = []
    stack = [(class_dir, frozenset())]
    while stack:
        folder, ancestors = stack.pop()
        try:
            ident = (folder.stat().st_dev, folder.stat().st_ino)
            entries = sorted(folder.iterdir())
            folders = [p for p in entries if p.is_dir()]
        except OSError as e:
            raise DataError(f"{folder}: cannot list ({e.strerror or e})") from e
        if ident in ancestors:
            raise DataError(f"{folder}: symlink loop (links back to a folder that contains it)")
        found += [p for p in entries if is_image_path(p) and p not in folders]
        below = ancestors | {ident}
        stack += [(p, below) for p in reversed(folders) if not p.name.startswith(".")]
    return found


def _decode_file(path: Path) -> np.ndarray:
    try:
        with open(open_regular(path), "rb") as f:  # a FIFO named like an image is refused, not read forever
            return decode_digit(f.read())
    except (ImageError, PathError) as e:
        raise DataError(f"{path}: {e}") from e
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from e


def _read_images(paths: list[Path]) -> np.ndarray:
    # One thread: the Python around a small digit's decode dominates, and two threads
    # were slower than one (docs/decisions.md, "Reading an image folder").
    return np.stack([_decode_file(p) for p in paths])


def load_image_folder(folder: Path) -> Mnist:
    if (folder / "train").is_dir():
        if not (folder / "test").is_dir():
            raise DataError(f"{folder}: has train/ but no test/ folder")
        _refuse_strays(folder, ("train", "test"), "is neither train/ nor test/")
        train_paths, y_train = _list_class_files(folder / "train")
        test_paths, y_test = _list_class_files(folder / "test")
        # the source is a name, not a local path (idx.py says why)
        return Mnist(_read_images(train_paths), y_train, _read_images(test_paths), y_test,
                     f"image folder {folder.resolve().name} (train/, test/)")
    paths, labels = _list_class_files(folder)
    held_out = f"{TEST_FRACTION:.0%} held out for test, seed {SPLIT_SEED}"
    return split_off_test(_read_images(paths), labels, f"image folder {folder.resolve().name} ({held_out})")
