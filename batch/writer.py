"""Result rows, streamed: csv or jsonl, one row per item, whole lines only.

Columns: source, label, confidence (6 decimals), then label_1, prob_1 ...
label_K, prob_K with --top-k K, then error (empty unless the item could not be
read; its label and confidence are then empty). Each block of rows goes out in
one write and is flushed, so a reader, or an interrupted run, sees complete
lines only. A write that fails (a full disk) cuts the file back to its last
whole row and raises the error the user sees (digits.files.write_error).
"""

import csv
import json
import os
import re
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, TextIO

import numpy as np

from digits.errors import DigitsError

Format = Literal["csv", "jsonl"]


def format_for(path: str | None) -> Format:
    """The format a file name asks for: .jsonl/.ndjson -> jsonl, anything else csv."""
    return "jsonl" if path and path.lower().endswith((".jsonl", ".ndjson")) else "csv"


_CSV_SPECIAL = re.compile(r'[,"\r\n]')


def _csv_field(text: str) -> str:
    if _CSV_SPECIAL.search(text):
        return '"' + text.replace('"', '""') + '"'
    return text


def _csv_fields(texts: Sequence[str]) -> Sequence[str]:
    # One scan of the whole block: paths rarely need quoting.
    return [_csv_field(t) for t in texts] if _CSV_SPECIAL.search("".join(texts)) else texts


def _best(probabilities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's label and its probability written as text: int64 [N], uint8 [N, 8]."""
    labels = probabilities.argmax(axis=1)
    return labels, _fixed6(probabilities[np.arange(len(labels)), labels])


def _fixed6(values: np.ndarray) -> np.ndarray:
    """Probabilities (0..1) as text with 6 decimals, 'd.dddddd', as ASCII codes: uint8 [N, 8].

    Built with numpy rather than str.format: on a large array, formatting each
    row's confidence in Python was most of the time classify spent beyond the
    model itself (measured: ~0.4 us a row, against ~0.02 us here).
    """
    micro = np.rint(values.astype(np.float64) * 1e6).astype(np.int64)
    text = np.empty((len(micro), 8), np.uint8)
    text[:, 0] = 48 + micro // 1_000_000
    text[:, 1] = ord(".")
    _digits_into(text[:, 2:], micro % 1_000_000)
    return text


def _digits_into(out: np.ndarray, numbers: np.ndarray) -> None:
    """Write non-negative ints as zero-padded decimal ASCII into uint8 [N, width]."""
    numbers = numbers.copy()
    for j in range(out.shape[1] - 1, -1, -1):
        out[:, j] = 48 + numbers % 10
        numbers //= 10


def _texts(ascii_rows: np.ndarray) -> list[str]:
    """uint8 [N, W] ASCII codes -> N str."""
    return np.ascontiguousarray(ascii_rows).view(f"S{ascii_rows.shape[1]}").ravel().astype(str).tolist()


def _array_rows_csv(path: str, start: int, labels: np.ndarray, confidence: np.ndarray) -> str:
    """csv rows `path#i,label,confidence,` for consecutive rows i from `start`, assembled as bytes
    in numpy: ~20x faster than formatting each row in Python."""
    prefix = np.frombuffer((path + "#").encode("utf-8", "surrogateescape"), np.uint8)
    blocks = []
    first, end = start, start + len(labels)
    while first < end:  # one block per row-number width: 998, 999 | 1000, 1001 ...
        width = len(str(first))
        last = min(end, 10**width)
        rows = slice(first - start, last - start)
        block = np.empty((last - first, len(prefix) + width + 13), np.uint8)
        block[:, : len(prefix)] = prefix
        _digits_into(block[:, len(prefix) : len(prefix) + width], np.arange(first, last))
        at = len(prefix) + width
        block[:, at] = block[:, at + 2] = block[:, at + 11] = ord(",")
        block[:, at + 1] = 48 + labels[rows]
        block[:, at + 3 : at + 11] = confidence[rows]
        block[:, at + 12] = ord("\n")
        blocks.append(block.tobytes())
        first = last
    return b"".join(blocks).decode("utf-8", "surrogateescape")


def columns(top_k: int) -> list[str]:
    """The csv header's columns (and the jsonl keys of a classified row) for --top-k K."""
    names = ["source", "label", "confidence"]
    for k in range(1, top_k + 1):
        names += [f"label_{k}", f"prob_{k}"]
    return names + ["error"]


def _regular_file(stream: TextIO) -> tuple[int | None, int]:
    """(descriptor, current offset) of a stream writing a regular file, else (None, 0)."""
    try:
        fd = stream.fileno()
        if stat.S_ISREG(os.fstat(fd).st_mode):
            stream.flush()
            return fd, os.lseek(fd, 0, os.SEEK_CUR)
    except (OSError, ValueError):
        pass
    return None, 0


class RowWriter:
    def __init__(self, stream: TextIO, fmt: Format = "csv", top_k: int = 0, name: str | None = None,
                 header: bool = True):
        """`header=False`: the stream already has the csv header (appending for --resume)."""
        self.stream, self.fmt, self.top_k = stream, fmt, top_k
        self.name = name or {"<stdout>": "standard output"}.get(getattr(stream, "name", None), "the output")
        # Rows are UTF-8 whatever the locale, and file names are bytes: one that is
        # not valid UTF-8 goes out as its own bytes (as `ls` and `find` print it)
        # instead of failing its whole block.
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(encoding="utf-8", errors="surrogateescape")
        self._file, self._whole = _regular_file(stream)
        if fmt == "csv":
            if header:
                self._write(",".join(columns(top_k)) + "\n")
            self._empty = "," * (2 + 2 * top_k)  # a failed row's empty label..prob_K fields

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except OSError as e:
            raise self._failed_write(e) from e
        if self._file is not None:
            self._whole = os.lseek(self._file, 0, os.SEEK_CUR)

    def _failed_write(self, e: OSError) -> Exception:
        """A write failed (full disk, /dev/full, a closed pipe): cut a regular file back to
        its last whole row, send whatever the stream still buffers to /dev/null (so
        closing it cannot write half a row later), and say what happened."""
        from digits.files import write_error

        try:
            fd = self.stream.fileno()
            if self._file is not None:
                os.ftruncate(fd, self._whole)
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, fd)
            os.close(null)
        except (OSError, ValueError):
            pass
        return write_error(self.name, e)

    def write_rows(self, sources: Sequence[str], probabilities: np.ndarray,
                   errors: Sequence[str | None] | None = None) -> None:
        """One row per source; where errors[i] is set, row i is a failure and its probabilities are ignored."""
        labels, confidence = _best(probabilities)
        labels, confidence = labels.tolist(), _texts(confidence)
        if errors is None and not self.top_k and self.fmt == "csv":
            # The common case: no per-row branching.
            self._write("".join(map("{},{},{},\n".format, _csv_fields(sources), labels, confidence)))
            return
        if self.top_k:
            order = np.argsort(-probabilities, axis=1, kind="stable")[:, : self.top_k]
            top_probs = np.take_along_axis(probabilities, order, axis=1).tolist()
            order = order.tolist()
        lines = []
        for i, source in enumerate(sources):
            error = errors[i] if errors is not None else None
            if error is not None:
                lines.append(self._failed(source, error))
                continue
            if self.fmt == "csv":
                extra = "".join(f",{lab},{p:.6g}" for lab, p in zip(order[i], top_probs[i])) if self.top_k else ""
                lines.append(f"{_csv_field(source)},{labels[i]},{confidence[i]}{extra},\n")
            else:
                extra = "".join(
                    f', "label_{k}": {lab}, "prob_{k}": {p:.6g}'
                    for k, (lab, p) in enumerate(zip(order[i], top_probs[i]), 1)
                ) if self.top_k else ""
                lines.append(f'{{"source": {json.dumps(source)}, "label": {labels[i]}, '
                             f'"confidence": {confidence[i]}{extra}}}\n')
        self._write("".join(lines))

    def write_array_rows(self, path: str, start: int, probabilities: np.ndarray) -> None:
        """Rows `path#start` ... for consecutive rows of one array: the hot path for large arrays."""
        if self.top_k or self.fmt != "csv" or _CSV_SPECIAL.search(path):
            sources = [f"{path}#{i}" for i in range(start, start + len(probabilities))]
            self.write_rows(sources, probabilities)
            return
        self._write(_array_rows_csv(path, start, *_best(probabilities)))

    def write_failed(self, source: str, error: str) -> None:
        self._write(self._failed(source, error))

    def write_text(self, text: str) -> None:
        """Whole rows already formatted in this writer's format (another process's RowWriter)."""
        if text:
            self._write(text)

    def _failed(self, source: str, error: str) -> str:
        if self.fmt == "csv":
            return f"{_csv_field(source)}{self._empty},{_csv_field(error)}\n"
        return json.dumps({"source": source, "label": None, "confidence": None, "error": error}) + "\n"


class ResumeError(DigitsError):
    """An --output file that --resume cannot continue; the message says why."""


_ARRAY_ROW = re.compile(r"(.*)#(\d+)", re.DOTALL)


@dataclass
class Done:
    """What an output file already holds, for --resume: the sources that have a row."""

    sources: set[str] = field(default_factory=set)  # images, failed arrays, error items
    arrays: dict[str, np.ndarray] = field(default_factory=dict)  # array path -> its row numbers, sorted
    rows: int = 0  # whole rows in the file
    failed: int = 0  # ... of which error rows
    header: bool = False  # the csv header is there (jsonl has none)

    def has(self, source: str) -> bool:
        if source in self.sources:
            return True
        match = _ARRAY_ROW.fullmatch(source) if "#" in source else None
        return bool(match) and bool(np.isin(int(match[2]), self.arrays.get(match[1], ())))

    def array_rows(self, path: str) -> np.ndarray:
        """Row numbers of the array at `path` that have a row, sorted (int64)."""
        return self.arrays.get(path, np.zeros(0, np.int64))


def resume_output(path: str | os.PathLike, fmt: Format, top_k: int) -> Done:
    """Read an output file that an earlier run may have left, for --resume.

    Every whole row is kept; a torn last line (the run was killed mid-write) is
    cut off the file, so appending continues on a line boundary. A file that
    is not this run's kind of output (other columns, other format) is refused
    with ResumeError rather than appended to. A missing file is an empty one.
    """
    done = Done()
    expected = columns(top_k)
    arrays: dict[str, list[int]] = {}
    try:
        with open(path, "rb") as f:
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
                        done.sources.add(source)
                    done.rows += 1
                    done.failed += failed
                good += len(record)
                record = b""
        if record:  # a torn last line: drop it
            with open(path, "r+b") as f:
                f.truncate(good)
    except FileNotFoundError:
        return done
    except OSError as e:
        raise ResumeError(f"{path}: cannot read the output to resume it ({e.strerror or e})") from e
    done.arrays = {p: np.unique(np.array(rows, np.int64)) for p, rows in arrays.items()}
    return done


def _other_columns(path, found: list[str], expected: list[str]) -> str:
    return (f"{path}: cannot resume: the file's columns are {','.join(found)[:200]!r}, this run writes "
            f"{','.join(expected)!r} (resume with the --top-k and --format of the first run, or write "
            "to another --output)")


def _csv_row(text: str, expected: list[str], path, number: int) -> tuple[str, bool]:
    fields = next(csv.reader([text])) if '"' in text else text.rstrip("\r\n").split(",")
    if len(fields) != len(expected):
        raise ResumeError(f"{path}: cannot resume: line {number} has {len(fields)} fields, not the "
                          f"{len(expected)} of this run's columns")
    return fields[0], fields[-1] != ""


def _jsonl_row(text: str, expected: list[str], path, number: int) -> tuple[str, bool]:
    try:
        row = json.loads(text)
        source = row["source"]
    except (ValueError, TypeError, KeyError):
        raise ResumeError(f"{path}: cannot resume: line {number} is not a jsonl row of `digits classify`") from None
    if row.get("error") is not None:
        return source, True
    if sorted(row) != sorted(expected[:-1]):
        raise ResumeError(_other_columns(path, list(row), expected[:-1]))
    return source, False
