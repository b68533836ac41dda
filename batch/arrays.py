"""`.npy` arrays of digits (docs/classify.md says which), read chunk by chunk with plain reads, not a
memory map, whose touched pages count as resident memory. An object array is refused, never unpickled."""

import os
import re
from collections.abc import Iterator
from typing import BinaryIO

import numpy as np

from digits.core.contract import PIXELS
from digits.core.errors import DigitsError, first_line
from digits.core.files import PathError, open_regular

ROW = PIXELS  # bytes of one uint8 digit
SCAN_ROWS = 65_536  # rows per read when checking float arrays for range and NaN


class ArrayError(DigitsError):
    """An .npy file that is not an array of digits; the message says why."""


def read_npy_header(f: BinaryIO) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, fortran_order, dtype) from an .npy header of any version numpy writes, by its public
    parser (literals only), leaving `f` at the data. ArrayError for anything but a plain numeric
    array: an unknown version, a negative or non-integer dimension, a dtype holding objects."""
    try:
        major, minor = np.lib.format.read_magic(f)
        if (major, minor) == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif (major, minor) in ((2, 0), (3, 0)):  # 3.0 allows UTF-8 field names: 2.0's parser reads it
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise ArrayError(f"unknown .npy format version {major}.{minor}")
    except (ValueError, SyntaxError, TypeError, EOFError, UnicodeDecodeError, IndexError) as e:
        # IndexError: descr ('|u1',). ast's "<ast.BinOp object at 0x7f...>" for a header expression
        # (2*3, 28, 28): its address would make two runs' rows differ.
        message = re.sub(r" object at 0x[0-9a-fA-F]+", "", first_line(e, 120))
        raise ArrayError(f"not a readable .npy file ({message})") from e
    if not all(type(d) is int and d >= 0 for d in shape):
        raise ArrayError(f"shape {shape} in the header: dimensions must be whole numbers >= 0")
    if dtype.hasobject:
        raise ArrayError("holds Python objects; only numeric arrays are read (allow_pickle=False)")
    return tuple(shape), bool(fortran), dtype


class DigitArray:
    """An .npy file of digits. Opening reads and checks the header only."""

    def __init__(self, path: str):
        self.path = path
        try:
            with open(open_regular(path), "rb") as f:
                shape, fortran, dtype = read_npy_header(f)
                self.offset, size = f.tell(), os.fstat(f.fileno()).st_size
        except PathError as e:
            raise ArrayError(str(e)) from e
        except OSError as e:
            raise ArrayError(f"cannot read: {e.strerror or e}") from e
        if len(shape) == 2 and shape[1] == ROW:
            shape = (shape[0], 28, 28)
        if len(shape) != 3 or shape[1:] != (28, 28):
            raise ArrayError(f"shape {shape}: expected (N, 28, 28) or (N, 784)")
        if dtype != np.uint8 and not np.issubdtype(dtype, np.floating):
            raise ArrayError(f"dtype {dtype}: expected uint8 (0..255) or float (0..1)")
        if fortran and sum(d > 1 for d in shape) > 1:
            # Column-major bytes: even one digit would be read transposed.
            raise ArrayError("Fortran-ordered array; save it in C order (np.ascontiguousarray)")
        self.dtype, self.length = dtype, shape[0]
        if size < self.offset + self.length * ROW * dtype.itemsize:
            rows = (size - self.offset) // (ROW * dtype.itemsize)
            raise ArrayError(f"truncated: header says {self.length:,} rows, file holds {rows:,}")

    def __len__(self) -> int:
        return self.length

    def window(self, first: int, count: int) -> "DigitArray":
        """This array narrowed to rows first..first+count, read as the whole array is (chunks
        count from `first`'s row as 0). ArrayError if the file no longer holds them."""
        if first + count > self.length:
            raise ArrayError(f"changed while being read: header now says {self.length:,} rows")
        self.offset += first * ROW * self.dtype.itemsize
        self.length = count
        return self

    def _raw_chunks(self, size: int) -> Iterator[tuple[int, np.ndarray]]:
        """The file's rows, `size` at a time. A file cut short while it is read gives every whole row
        before the cut, then ArrayError saying at which row: the rows written and the error row agree."""
        row_bytes = ROW * self.dtype.itemsize
        with open(open_regular(self.path), "rb") as f:
            f.seek(self.offset)
            for start in range(0, self.length, size):
                n = min(size, self.length - start)
                data = f.read(n * row_bytes)
                if len(data) != n * row_bytes:
                    whole = len(data) // row_bytes
                    if whole:
                        yield start, np.frombuffer(data, self.dtype, whole * ROW).reshape(whole, 28, 28)
                    raise ArrayError(f"truncated while being read: the file ends at row {start + whole:,} "
                                     f"of the header's {self.length:,}")
                yield start, np.frombuffer(data, self.dtype).reshape(n, 28, 28)

    def _check_floats(self) -> None:
        try:
            for start, chunk in self._raw_chunks(SCAN_ROWS):
                finite = np.isfinite(chunk).reshape(len(chunk), -1).all(axis=1)
                if not finite.all():
                    raise ArrayError(f"NaN or infinite value in row {start + int(np.flatnonzero(~finite)[0]):,}")
                low, high = float(chunk.min()), float(chunk.max())
                if low < 0.0 or high > 1.0:
                    # repr: 1.0000001 is not shown as 1, which would read as inside 0..1
                    raise ArrayError(f"float values must lie in 0..1, found {low!r}..{high!r} "
                                     f"(rows from {start:,})")
        except ArrayError as e:
            if not str(e).startswith("truncated"):
                raise
            # Cut short: the rows before the cut were checked; the pass that classifies them stops there too.

    def chunks(self, size: int) -> Iterator[tuple[int, np.ndarray]]:
        """(first row index, uint8 [n, 28, 28]) for consecutive blocks of `size` rows; ArrayError for
        bad float values (one pass over the file) before the first."""
        if self.dtype != np.uint8:
            self._check_floats()
        for start, chunk in self._raw_chunks(size):
            if self.dtype != np.uint8:
                chunk = np.rint(chunk.astype(np.float32) * 255.0).astype(np.uint8)
            yield start, chunk

