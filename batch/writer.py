"""Result rows, streamed: one block of RowFormat text at a time, whole lines only.

Each block goes out in one write, straight to the file descriptor (core.files.write_all), every byte of it whatever
signal arrives meanwhile, so a reader or an interrupted run sees complete lines only. A write that fails (a full disk)
cuts the file back to its last whole row and raises the error the user sees (core.files.write_error).
"""

import contextlib
import os
import stat
from collections.abc import Sequence
from typing import TextIO

import numpy as np

from digits.batch.formats import RowFormat
from digits.core.files import write_all, write_error


class RowWriter:
    """Rows of one RowFormat onto a stream, each block in one write, flushed."""

    def __init__(self, stream: TextIO, row_format: RowFormat, name: str | None = None, header: bool = True):
        """`header=False`: the stream already has the csv header (appending for --resume)."""
        self.stream, self.format = stream, row_format
        self.name = name or {"<stdout>": "standard output"}.get(getattr(stream, "name", None), "the output")
        # Rows are UTF-8 whatever the locale, and file names are bytes: one that is not valid UTF-8 goes out as its own
        # bytes (as `ls` and `find` print it) instead of failing its whole block.
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(encoding="utf-8", errors="surrogateescape")
        self._fd = self._file = None  # the descriptor rows go to; the same, when it is a regular file
        self._whole = 0  # a regular file's offset just past its last whole row
        try:
            self._fd = stream.fileno()
            stream.flush()
            if stat.S_ISREG(os.fstat(self._fd).st_mode):
                self._file, self._whole = self._fd, os.lseek(self._fd, 0, os.SEEK_CUR)
        except (OSError, ValueError, AttributeError):  # no descriptor (StringIO); io.UnsupportedOperation is both
            self._fd = None
        if header:
            self.write(row_format.header())

    def write(self, text: str) -> None:
        """Whole rows, as RowFormat made them."""
        if not text:
            return
        try:
            if self._fd is None:
                self.stream.write(text)
                self.stream.flush()
            else:
                write_all(self._fd, text.encode("utf-8", "surrogateescape"))
        except OSError as e:
            raise self._failed_write(e) from e
        except BaseException:
            # Stopped at once in the middle of a block (a second Ctrl-C): a file is cut
            # back to its last whole row; a pipe keeps what its reader already took.
            if self._file is not None:
                os.ftruncate(self._file, self._whole)
                os.lseek(self._file, self._whole, os.SEEK_SET)
            raise
        if self._file is not None:
            self._whole = os.lseek(self._file, 0, os.SEEK_CUR)

    def _failed_write(self, e: OSError) -> Exception:
        """A write failed (full disk, /dev/full, a closed pipe): cut a regular file back to
        its last whole row, send whatever the stream still buffers to /dev/null (so
        closing it cannot write half a row later), and say what happened."""
        with contextlib.suppress(OSError, ValueError):
            fd = self.stream.fileno()
            if self._file is not None:
                os.ftruncate(fd, self._whole)
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, fd)
            os.close(null)
        return write_error(self.name, e)

    def write_rows(self, sources: Sequence[str], probabilities: np.ndarray,
                   errors: Sequence[str | None] | None = None) -> None:
        self.write(self.format.rows(sources, probabilities, errors))

    def write_array_rows(self, path: str, start: int, probabilities: np.ndarray) -> None:
        self.write(self.format.array_rows(path, start, probabilities))

    def write_failed(self, source: str, error: str) -> None:
        self.write(self.format.failed(source, error))
