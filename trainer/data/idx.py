"""LeCun's IDX files, gzipped or not: a 4-byte magic (0, 0, type 0x08 for unsigned bytes, ndim),
ndim big-endian uint32 sizes, then the data."""

import gzip
import io
import math
import struct
import zlib
from pathlib import Path

import numpy as np

from digits.core.contract import MAX_DATA_FILE_BYTES
from digits.core.errors import DataError
from digits.core.files import MISSING, kind_of, require_file
from digits.trainer.data.digitset import Mnist, check_images, check_labels

IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801

# The canonical names, and the dotted spelling some mirrors use.
FILES = {
    "train_images": ("train-images-idx3-ubyte", "train-images.idx3-ubyte"),
    "train_labels": ("train-labels-idx1-ubyte", "train-labels.idx1-ubyte"),
    "test_images": ("t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"),
    "test_labels": ("t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"),
}


def find_idx_files(folder: Path) -> dict[str, Path] | None:
    """The four files in `folder`, or None when it holds none of them; DataError when it holds some."""
    found: dict[str, Path] = {}
    for role, names in FILES.items():
        candidates = [folder / f"{name}{gz}" for name in names for gz in ("", ".gz")]
        present = [path for path in candidates if kind_of(path) != MISSING]  # a FIFO is found, then refused when read
        if present:
            found[role] = present[0]
    if not found:
        return None
    missing = [FILES[role][0] for role in FILES if role not in found]
    if missing:
        raise DataError(f"{folder}: IDX files incomplete, missing {', '.join(missing)} (or .gz)")
    return found


def read_idx(path: Path, expected_magic: int) -> np.ndarray:
    """One IDX file -> uint8 array, checking magic, dimensions and length."""
    try:
        require_file(path, "IDX file", DataError)
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            with gzip.GzipFile(fileobj=io.BytesIO(raw)) as unzipped:
                # capped: a gzip bomb is refused, not unpacked (MNIST's largest file is 47 MB)
                raw = unzipped.read(MAX_DATA_FILE_BYTES + 1)
            if len(raw) > MAX_DATA_FILE_BYTES:
                raise DataError(f"{path}: unpacks to more than {MAX_DATA_FILE_BYTES // 2**30} GiB; not MNIST")
    except MemoryError as e:
        raise DataError(f"{path}: too large to read into memory") from e
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path}: cannot read ({e})") from e
    if len(raw) < 4:
        raise DataError(f"{path}: too short to be an IDX file ({len(raw)} bytes)")
    magic = struct.unpack(">I", raw[:4])[0]
    if magic != expected_magic:
        kind = "images (0x00000803)" if expected_magic == IMAGES_MAGIC else "labels (0x00000801)"
        raise DataError(f"{path}: bad magic number 0x{magic:08x}, expected IDX {kind}")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated header")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    expected = math.prod(dims)  # exact: numpy's int64 product wraps on forged dimensions
    actual = len(raw) - header
    if actual != expected:
        what = "truncated" if actual < expected else "has trailing bytes"
        raise DataError(
            f"{path}: {what}: header says {'x'.join(map(str, dims))} = {expected:,} bytes of data, found {actual:,}"
        )
    return np.frombuffer(raw, np.uint8, offset=header).reshape(dims)


def load_idx_folder(folder: Path) -> Mnist:
    files = find_idx_files(folder)
    if files is None:
        raise DataError(f"{folder}: no IDX files ({FILES['train_images'][0]} ...)")
    parts = []
    for part in ("train", "test"):
        images, labels = files[f"{part}_images"], files[f"{part}_labels"]
        x = check_images(read_idx(images, IMAGES_MAGIC), str(images))
        parts += [x, check_labels(read_idx(labels, LABELS_MAGIC), len(x), f"{labels} (for {images.name})")]
    # The form and the file names, never the folder: the source travels into metrics.json
    # and from there into every exported model's metadata, which must not carry a local path.
    return Mnist(*parts, source=f"IDX files ({', '.join(files[role].name for role in FILES)})")
