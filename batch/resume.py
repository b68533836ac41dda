"""--resume: what an output file already holds, read back so that a run continues it."""

import csv
import json
import os
import re
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from digits.batch.formats import NOT_A_DIGIT, RowFormat
from digits.core.errors import DigitsError
from digits.core.files import MISSING, REGULAR, PathError, kind_of, open_regular


class ResumeError(DigitsError):
    """An --output file that --resume cannot continue; the message says why."""


# An array's row is `PATH#N`, and an array is a file whose name ends in .npy (batch/inputs.py),
# so only such a PATH is an array's: an image named `scan#1` or `page.png#2` is its own source.
# An image named `a.npy#2` (named, not walked: a walk takes it for neither) is matched as the row.
_ARRAY_ROW = re.compile(r"(.*\.npy)#(\d+)", re.DOTALL | re.IGNORECASE)


@dataclass
class Done:
    """What an output file already holds, for --resume: the rows each source has there, matched by what
    it names (the folder's real path and the file's name), not as typed.

    Each row answers one occurrence of its source: a file named twice has two rows after a whole run,
    so a resumed run passes over as many occurrences as the file holds rows, and classifies the rest.
    """

    sources: Counter = field(default_factory=Counter)  # key -> rows not yet matched (images, errors)
    arrays: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # key -> (rows, times in the file)
    rows: int = 0  # whole rows in the file
    failed: int = 0  # ... of which error rows
    header: bool = False  # the csv header is there (jsonl has none)
    _folders: dict[str, str] = field(default_factory=dict)  # a folder as typed -> its real path

    def key(self, path: str) -> str:
        """`path` by what it names: its folder's real path (asked once per folder), then its name."""
        folder, name = os.path.split(path)
        real = self._folders.get(folder)
        if real is None:
            real = self._folders[folder] = os.path.realpath(folder or ".")
        return os.path.join(real, name)

    def take(self, source: str) -> bool:
        """Whether `source` (an image, or an item that failed) has a row not yet matched;
        if so, that row now answers this occurrence of it."""
        key = self.key(source)
        if self.sources[key]:
            self.sources[key] -= 1
            return True
        match = _ARRAY_ROW.fullmatch(source) if "#" in source else None
        return bool(match) and self.array_rows(match[1], int(match[2])).size > 0

    def array_rows(self, path: str, only: int | None = None) -> np.ndarray:
        """Row numbers of the array at `path` (`only`: just that row) that have a row not yet
        matched, sorted (int64); those rows now answer this occurrence of the array."""
        found = self.arrays.get(self.key(path))
        if found is None:
            return np.zeros(0, np.int64)
        rows, times = found
        which = (times > 0) if only is None else (times > 0) & (rows == only)
        matched = rows[which]
        np.subtract(times, 1, out=times, where=which)
        return matched


def holds_rows(path: str | os.PathLike) -> bool:
    """Whether the file at `path` starts as our rows do (csv or jsonl): an earlier run's output."""
    try:
        with open(open_regular(path), "rb") as f:
            start = f.read(len(_JSONL_START))
    except (OSError, PathError):
        return False
    return start.startswith(b"source,") or start == _JSONL_START


def resumable(path: str | os.PathLike) -> None:
    """ResumeError unless `path` is a regular file or nothing yet: a FIFO or a device cannot be read back."""
    kind = kind_of(path)
    if kind not in (REGULAR, MISSING):
        raise ResumeError(f"{os.fsdecode(path)}: cannot resume: it is {kind}, not a file that keeps its rows")


_JSONL_START = b'{"source": '


def resume_output(path: str | os.PathLike, row_format: RowFormat) -> Done:
    """Read an output file that an earlier run may have left, for --resume.

    Every whole row is kept; a torn last line (a run killed mid-write) is cut off, so appending
    continues on a line boundary. Only this run's kind of output is continued: its first line is the
    header (csv) or a row (jsonl) this run writes, or the start of it. Anything else is refused with
    ResumeError, untouched. A missing or empty file is an empty one.
    """
    done = Done()
    fmt = row_format.fmt
    expected = row_format.columns()
    arrays: dict[str, list[int]] = {}  # as the rows name them, keyed below
    try:
        with open(open_regular(path), "rb") as f:
            good = 0  # the offset just past the last whole row
            record = b""
            for number, line in enumerate(f, 1):
                record += line
                if not record.endswith(b"\n") or (fmt == "csv" and record.count(b'"') % 2):
                    continue  # torn (no newline yet), or a quoted field with a newline in it
                text = record.decode("utf-8", "surrogateescape")
                if fmt == "csv" and not done.header:
                    if text.rstrip("\r\n") != ",".join(expected):
                        raise ResumeError(_other_columns(path, text.rstrip("\r\n").split(","), expected))
                    done.header = True
                else:
                    source, failed = (_csv_row if fmt == "csv" else _jsonl_row)(text, expected, path, number)
                    match = _ARRAY_ROW.fullmatch(source) if "#" in source else None
                    if match and not failed:
                        arrays.setdefault(match[1], []).append(int(match[2]))
                    else:
                        done.sources[done.key(source)] += 1
                    done.rows += 1
                    done.failed += failed
                good += len(record)
                record = b""
        if record:  # a torn last line: dropped, if the file is ours (its header or first row, cut off by a kill)
            ours = row_format.header().encode() if fmt == "csv" else _JSONL_START
            if not good and not (ours.startswith(record) or (fmt == "jsonl" and record.startswith(ours))):
                raise ResumeError(f"{os.fsdecode(path)}: cannot resume: its first line is not the "
                                  f"{'header' if fmt == 'csv' else 'first row'} `digits classify` writes; "
                                  "left as it is (write to another --output)")
            with open(path, "r+b") as f:
                f.truncate(good)
    except FileNotFoundError:
        return done
    except PathError as e:
        raise ResumeError(f"{os.fsdecode(path)}: cannot resume: {e}") from e
    except OSError as e:
        raise ResumeError(f"{path}: cannot read the output to resume it ({e.strerror or e})") from e
    keyed: dict[str, list[int]] = {}
    for source, rows in arrays.items():  # an array typed two ways is one
        keyed.setdefault(done.key(source), []).extend(rows)
    done.arrays = {key: np.unique(np.array(rows, np.int64), return_counts=True) for key, rows in keyed.items()}
    return done


def _other_columns(path, found: list[str], expected: list[str]) -> str:
    return (f"{path}: cannot resume: the file's columns are {','.join(found)[:200]!r}, this run writes "
            f"{','.join(expected)!r} (resume with the model, --top-k, --review-below, --not-digits and --format of "
            "the first run, or write to another --output)")


def _csv_row(text: str, expected: list[str], path, number: int) -> tuple[str, bool]:
    fields = next(csv.reader([text])) if '"' in text else text.rstrip("\r\n").split(",")
    if len(fields) != len(expected):
        raise ResumeError(f"{path}: cannot resume: line {number} has {len(fields)} fields, not the "
                          f"{len(expected)} of this run's columns")
    return fields[0], fields[-1] not in ("", NOT_A_DIGIT)


def _jsonl_row(text: str, expected: list[str], path, number: int) -> tuple[str, bool]:
    try:
        row = json.loads(text)
        source = row["source"]
    except (ValueError, TypeError, KeyError):
        raise ResumeError(f"{path}: cannot resume: line {number} is not a jsonl row of `digits classify`") from None
    if row.get("error") is not None:
        return source, row["error"] != NOT_A_DIGIT
    if sorted(row) != sorted(expected[:-1]):
        raise ResumeError(_other_columns(path, list(row), expected[:-1]))
    return source, False
