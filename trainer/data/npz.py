"""Keras's layout of MNIST: one .npz with x_train, y_train, x_test, y_test."""

import math
import zipfile
import zlib
from pathlib import Path

import numpy as np

from digits.batch.arrays import ArrayError, read_npy_header
from digits.core.contract import MAX_DATA_FILE_BYTES
from digits.core.errors import DataError
from digits.trainer.data.digitset import Mnist, check_images, check_labels

KEYS = ("x_train", "y_train", "x_test", "y_test")


def _read_member(archive: zipfile.ZipFile, where: str, member: str) -> np.ndarray:
    """One array of the archive, never unpickled. Its header is checked first: the size it declares
    must be the size stored, so a forged header cannot make us allocate terabytes or read past the data."""
    declared = 0
    try:
        info = archive.getinfo(member)
        with archive.open(info) as f:
            shape, fortran, dtype = read_npy_header(f)
            header = f.tell()
            declared = math.prod(shape) * dtype.itemsize
            # a zip bomb may be honest about its size; full MNIST's largest array is 47 MB
            if declared > MAX_DATA_FILE_BYTES:
                raise DataError(
                    f"{where}: {declared:,} bytes; more than {MAX_DATA_FILE_BYTES // 2**30} GiB is not MNIST")
            if declared != info.file_size - header:
                raise DataError(f"{where}: header says {shape} {dtype} = {declared:,} bytes, "
                                f"archive holds {info.file_size - header:,}")
            data = f.read(declared)
    except ArrayError as e:
        raise DataError(f"{where}: {e}") from e
    except MemoryError as e:
        raise DataError(f"{where}: {declared:,} bytes do not fit in memory") from e
    except (OSError, zipfile.BadZipFile, EOFError, zlib.error, KeyError, RuntimeError, NotImplementedError) as e:
        # RuntimeError: an encrypted member; NotImplementedError: a compression zipfile lacks
        raise DataError(f"{where}: not readable ({e})") from e
    if len(data) != declared:
        raise DataError(f"{where}: truncated")
    array = np.frombuffer(data, dtype).reshape(shape, order="F" if fortran else "C")
    return np.ascontiguousarray(array)


def load_npz(path: Path, source: str | None = None) -> Mnist:
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as e:
        with open(path, "rb") as f:
            head = f.read(6)
        what = "an .npy array, not an .npz archive" if head == b"\x93NUMPY" else "not an .npz (zip) archive"
        raise DataError(f"{path}: {what}") from e
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from e
    with archive:
        names = {n.removesuffix(".npy"): n for n in archive.namelist()}
        missing = [k for k in KEYS if k not in names]
        if missing:
            raise DataError(f"{path}: missing arrays {', '.join(missing)} (has: {', '.join(sorted(names)) or 'none'})")
        arrays = {k: _read_member(archive, f"{path} {k}", names[k]) for k in KEYS}
    x_train = check_images(arrays["x_train"], f"{path} x_train")
    x_test = check_images(arrays["x_test"], f"{path} x_test")
    y_train = check_labels(arrays["y_train"], len(x_train), f"{path} y_train")
    y_test = check_labels(arrays["y_test"], len(x_test), f"{path} y_test")
    return Mnist(x_train, y_train, x_test, y_test, source or f"npz {path.name}")  # a name, not a path (idx.py says why)
