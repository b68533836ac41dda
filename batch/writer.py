"""Result rows, streamed: csv or jsonl, one row per item, whole lines only.

Columns: source, label, confidence (6 decimals), then label_1, prob_1 ...
label_K, prob_K with --top-k K, then review with --review-below P, then error
(empty unless the item could not be read; its label and confidence are then
empty). Each block of rows goes out in
one write and is flushed, so a reader, or an interrupted run, sees complete
lines only. Blocks go straight to the file descriptor (core.files.write_all),
every byte of them, whatever signal arrives meanwhile. A write that fails (a
full disk) cuts the file back to its last whole row and raises the error the
user sees (core.files.write_error).
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

from core.errors import DigitsError
from core.files import MISSING, REGULAR, PathError, kind_of, open_regular, write_all

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

    Built with numpy rather than str.format: formatting each row's confidence in
    Python was most of what classify spent beyond the model (docs/decisions.md).
    """
    micro = _micro(values)
    text = np.empty((len(micro), 8), np.uint8)
    text[:, 0] = 48 + micro // 1_000_000
    text[:, 1] = ord(".")
    _digits_into(text[:, 2:], micro % 1_000_000)
    return text


def _micro(values: np.ndarray) -> np.ndarray:
    """Probabilities in millionths, rounded as they are written: int64."""
    return np.rint(values.astype(np.float64) * 1e6).astype(np.int64)


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


def columns(top_k: int, review: bool = False) -> list[str]:
    """The csv header's columns for --top-k K (and --review-below: `review`). A jsonl row has
    the same keys, except that `error` is only in a failed row."""
    names = ["source", "label", "confidence"]
    for k in range(1, top_k + 1):
        names += [f"label_{k}", f"prob_{k}"]
    if review:
        names.append("review")
    return names + ["error"]


class RowFormat:
    """How rows are written: the text of a block of rows, the same in whichever process
    makes it (the run's own, a worker, a Ray actor), so rows are byte-identical however
    the work is spread."""

    def __init__(self, fmt: Format = "csv", top_k: int = 0, review_below: float | None = None):
        """`review_below`: rows whose confidence, as written (6 decimals), is under it get
        review 1 (jsonl: true), others 0 (false); None: no review column."""
        self.fmt, self.top_k, self.review_below = fmt, top_k, review_below
        # Compared as the written micro-units, so a row reading 0.900000 is never under 0.9.
        self._review_micro = None if review_below is None else int(round(review_below * 1e6))
        self._empty = "," * (2 + 2 * top_k + (review_below is not None))  # a failed row's empty fields

    def header(self) -> str:
        return ",".join(columns(self.top_k, self.review_below is not None)) + "\n" if self.fmt == "csv" else ""

    def under_review(self, probabilities: np.ndarray) -> np.ndarray:
        """bool [N]: the rows whose confidence, as written, is under --review-below."""
        return _micro(probabilities.max(axis=1)) < self._review_micro

    def rows(self, sources: Sequence[str], probabilities: np.ndarray,
             errors: Sequence[str | None] | None = None) -> str:
        """One row per source; where errors[i] is set, row i is a failure and its probabilities are ignored."""
        labels, confidence_text = _best(probabilities)
        labels, confidence = labels.tolist(), _texts(confidence_text)
        review = self.under_review(probabilities).tolist() if self._review_micro is not None else None
        if errors is None and not self.top_k and review is None and self.fmt == "csv":
            # The common case: no per-row branching.
            return "".join(map("{},{},{},\n".format, _csv_fields(sources), labels, confidence))
        if self.top_k:
            order = np.argsort(-probabilities, axis=1, kind="stable")[:, : self.top_k]
            top_probs = np.take_along_axis(probabilities, order, axis=1).tolist()
            order = order.tolist()
        lines = []
        for i, source in enumerate(sources):
            error = errors[i] if errors is not None else None
            if error is not None:
                lines.append(self.failed(source, error))
                continue
            if self.fmt == "csv":
                extra = "".join(f",{lab},{p:.6g}" for lab, p in zip(order[i], top_probs[i])) if self.top_k else ""
                if review is not None:
                    extra += ",1" if review[i] else ",0"
                lines.append(f"{_csv_field(source)},{labels[i]},{confidence[i]}{extra},\n")
            else:
                extra = "".join(
                    f', "label_{k}": {lab}, "prob_{k}": {p:.6g}'
                    for k, (lab, p) in enumerate(zip(order[i], top_probs[i]), 1)
                ) if self.top_k else ""
                if review is not None:
                    extra += ', "review": true' if review[i] else ', "review": false'
                lines.append(f'{{"source": {json.dumps(source)}, "label": {labels[i]}, '
                             f'"confidence": {confidence[i]}{extra}}}\n')
        return "".join(lines)

    def array_rows(self, path: str, start: int, probabilities: np.ndarray) -> str:
        """Rows `path#start` ... for consecutive rows of one array: the hot path for large arrays."""
        if self.top_k or self.fmt != "csv" or self.review_below is not None or _CSV_SPECIAL.search(path):
            return self.rows([f"{path}#{i}" for i in range(start, start + len(probabilities))], probabilities)
        return _array_rows_csv(path, start, *_best(probabilities))

    def failed(self, source: str, error: str) -> str:
        if self.fmt == "csv":
            return f"{_csv_field(source)}{self._empty},{_csv_field(error)}\n"
        return json.dumps({"source": source, "label": None, "confidence": None, "error": error}) + "\n"


def _descriptor(stream: TextIO) -> tuple[int | None, bool, int]:
    """(descriptor, whether it is a regular file, its current offset) of a stream with
    a file descriptor, its buffer flushed; (None, False, 0) for one without (StringIO)."""
    try:
        fd = stream.fileno()
        stream.flush()
        if stat.S_ISREG(os.fstat(fd).st_mode):
            return fd, True, os.lseek(fd, 0, os.SEEK_CUR)
        return fd, False, 0
    except (OSError, ValueError, AttributeError):  # io.UnsupportedOperation is both
        return None, False, 0


class RowWriter:
    """Rows of one RowFormat onto a stream, each block in one write, flushed."""

    def __init__(self, stream: TextIO, row_format: RowFormat, name: str | None = None, header: bool = True):
        """`header=False`: the stream already has the csv header (appending for --resume)."""
        self.stream, self.format = stream, row_format
        self.name = name or {"<stdout>": "standard output"}.get(getattr(stream, "name", None), "the output")
        # Rows are UTF-8 whatever the locale, and file names are bytes: one that is
        # not valid UTF-8 goes out as its own bytes (as `ls` and `find` print it)
        # instead of failing its whole block.
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(encoding="utf-8", errors="surrogateescape")
        self._fd, regular, self._whole = _descriptor(stream)
        self._file = self._fd if regular else None
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
        from core.files import write_error

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
        self.write(self.format.rows(sources, probabilities, errors))

    def write_array_rows(self, path: str, start: int, probabilities: np.ndarray) -> None:
        self.write(self.format.array_rows(path, start, probabilities))

    def write_failed(self, source: str, error: str) -> None:
        self.write(self.format.failed(source, error))


class ResumeError(DigitsError):
    """An --output file that --resume cannot continue; the message says why."""


# An array's row is `PATH#N`, and an array is a file whose name ends in .npy (batch/inputs.py),
# so only such a PATH is an array's: an image named `scan#1` or `page.png#2` is its own source.
# An image named `a.npy#2` (named, not walked: a walk takes it for neither) is matched as the row.
_ARRAY_ROW = re.compile(r"(.*\.npy)#(\d+)", re.DOTALL | re.IGNORECASE)


@dataclass
class Done:
    """What an output file already holds, for --resume: the rows each source has there.

    Sources are matched by what they name, not as typed: `scans/1.png`, `./scans/1.png`
    and a path through a symlinked folder are one file (the folder's real path and
    the file's name). Each row in the file answers one occurrence of its source: a
    file named twice has two rows after an uninterrupted run, so a resumed run
    passes over as many occurrences as the file holds rows, and classifies the rest.
    """

    sources: dict[str, int] = field(default_factory=dict)  # key -> rows not yet matched (images, errors)
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

    def has(self, source: str) -> bool:
        """Whether `source` (an input, or `path#row` of an array) has a row not yet matched."""
        match = _ARRAY_ROW.fullmatch(source) if "#" in source else None
        if match:
            found = self.arrays.get(self.key(match[1]))
            if found is not None:
                rows, times = found
                at = np.searchsorted(rows, int(match[2]))
                if at < len(rows) and rows[at] == int(match[2]) and times[at] > 0:
                    return True
        return self.sources.get(self.key(source), 0) > 0

    def take(self, source: str) -> bool:
        """Whether `source` (an image, or an item that failed) has a row not yet matched;
        if so, that row now answers this occurrence of it."""
        key = self.key(source)
        left = self.sources.get(key, 0)
        if left:
            self.sources[key] = left - 1
            return True
        match = _ARRAY_ROW.fullmatch(source) if "#" in source else None
        return bool(match) and self.has(source) and bool(self.array_rows(match[1], int(match[2])).size)

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
    """Whether the file at `path` starts as this program's rows do (csv or jsonl): an
    earlier run's output, which a new run may write over."""
    try:
        with open(open_regular(path), "rb") as f:
            start = f.read(len(_JSONL_START))
    except (OSError, PathError):
        return False
    return start.startswith(b"source,") or start == _JSONL_START


def resumable(path: str | os.PathLike) -> None:
    """ResumeError unless `path` is a regular file or nothing yet: a FIFO or a device
    cannot be read back (reading a FIFO it writes itself hung the run forever)."""
    kind = kind_of(path)
    if kind not in (REGULAR, MISSING):
        raise ResumeError(f"{os.fsdecode(path)}: cannot resume: it is {kind}, not a file that keeps its rows")


_JSONL_START = b'{"source": '


def _ours(record: bytes, row_format: RowFormat) -> bool:
    """Whether a file's torn first line (no newline) is the start of what this run writes:
    the header, or a first jsonl row, cut off by a kill."""
    ours = row_format.header().encode() if row_format.fmt == "csv" else _JSONL_START
    return ours.startswith(record) or (row_format.fmt == "jsonl" and record.startswith(ours))


def resume_output(path: str | os.PathLike, row_format: RowFormat) -> Done:
    """Read an output file that an earlier run may have left, for --resume.

    Every whole row is kept; a torn last line (the run was killed mid-write) is
    cut off the file, so appending continues on a line boundary. Only a file
    that is this run's kind of output is continued: its first line is exactly
    the header (csv) or a row (jsonl) this run writes, or the start of it (a run
    killed while writing it). Anything else (other columns, another format, a
    note with no newline) is refused with ResumeError, untouched. A missing or
    empty file is an empty one.
    """
    done = Done()
    fmt = row_format.fmt
    expected = columns(row_format.top_k, row_format.review_below is not None)
    sources: dict[str, int] = {}
    arrays: dict[str, list[int]] = {}
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
                        sources[source] = sources.get(source, 0) + 1
                    done.rows += 1
                    done.failed += failed
                good += len(record)
                record = b""
        if record:  # a torn last line: drop it, if the file is ours
            if not good and not _ours(record, row_format):
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
    for source, times in sources.items():
        key = done.key(source)
        done.sources[key] = done.sources.get(key, 0) + times
    for source, rows in arrays.items():
        numbers, times = np.unique(np.array(rows, np.int64), return_counts=True)
        key = done.key(source)
        if key in done.arrays:  # the same array typed two ways
            numbers, times = _merged(done.arrays[key], (numbers, times))
        done.arrays[key] = (numbers, times)
    return done


def _merged(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    numbers = np.concatenate([a[0], b[0]])
    times = np.concatenate([a[1], b[1]])
    unique, where = np.unique(numbers, return_inverse=True)
    return unique, np.bincount(where, weights=times).astype(np.int64)


def _other_columns(path, found: list[str], expected: list[str]) -> str:
    return (f"{path}: cannot resume: the file's columns are {','.join(found)[:200]!r}, this run writes "
            f"{','.join(expected)!r} (resume with the --top-k, --review-below and --format of the first run, or write "
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
