"""Result rows, streamed: one block of RowFormat text at a time, whole lines only.

Each block goes out in one write, straight to the file descriptor (core.files.write_all), every byte of it whatever
signal arrives meanwhile, so a reader or an interrupted run sees complete lines only. A write that fails (a full disk)
cuts the file back to its last whole row and raises the error the user sees (core.files.write_error).
"""

import contextlib
import os
import stat
from typing import TextIO

from digits.batch.formats import RowFormat
from digits.core.files import to_devnull, write_all, write_error


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
        except BaseException as e:
            # A write that failed (full disk, /dev/full, a closed pipe), or one stopped at once in the middle of a block
            # (a second Ctrl-C): a file is cut back to its last whole row; a pipe keeps what its reader already took.
            with contextlib.suppress(OSError):
                if self._file is not None:
                    os.ftruncate(self._file, self._whole)
                    os.lseek(self._file, self._whole, os.SEEK_SET)
            if not isinstance(e, OSError):
                raise
            # What the stream still buffers goes to /dev/null: closing it cannot write half a row later.
            with contextlib.suppress(OSError, ValueError):
                to_devnull(self.stream.fileno())
            raise write_error(self.name, e) from e
        if self._file is not None:
            self._whole = os.lseek(self._file, 0, os.SEEK_CUR)
