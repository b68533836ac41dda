"""Result rows, streamed: csv or jsonl, one row per item, whole lines only.

Columns: source, label, confidence, then label_1, prob_1 ... label_K, prob_K
with --top-k K, then error (empty unless the item could not be read; its label
and confidence are then empty). Each block of rows goes out in one write and is
flushed, so a reader, or an interrupted run, sees complete lines only. A write
that fails (a full disk) cuts the file back to its last whole row and raises the
error the user sees (digits.files.write_error).
"""

import json
import os
import re
import stat
from collections.abc import Sequence
from typing import Literal, TextIO

import numpy as np

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


def _best(probabilities: np.ndarray) -> tuple[list[int], list[float]]:
    """Each row's label and its probability, as Python lists for formatting."""
    labels = probabilities.argmax(axis=1)
    return labels.tolist(), probabilities[np.arange(len(labels)), labels].tolist()


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
    def __init__(self, stream: TextIO, fmt: Format = "csv", top_k: int = 0, name: str | None = None):
        self.stream, self.fmt, self.top_k = stream, fmt, top_k
        self.name = name or {"<stdout>": "standard output"}.get(getattr(stream, "name", None), "the output")
        # Rows are UTF-8 whatever the locale, and file names are bytes: one that is
        # not valid UTF-8 goes out as its own bytes (as `ls` and `find` print it)
        # instead of failing its whole block.
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(encoding="utf-8", errors="surrogateescape")
        self._file, self._whole = _regular_file(stream)
        if fmt == "csv":
            columns = ["source", "label", "confidence"]
            for k in range(1, top_k + 1):
                columns += [f"label_{k}", f"prob_{k}"]
            self._write(",".join(columns + ["error"]) + "\n")
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
        if errors is None and not self.top_k and self.fmt == "csv":
            # The common case, and the hot path for large arrays: no per-row branching.
            self._write("".join(map("{},{},{:.6g},\n".format, _csv_fields(sources), labels, confidence)))
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
                lines.append(f"{_csv_field(source)},{labels[i]},{confidence[i]:.6g}{extra},\n")
            else:
                extra = "".join(
                    f', "label_{k}": {lab}, "prob_{k}": {p:.6g}'
                    for k, (lab, p) in enumerate(zip(order[i], top_probs[i]), 1)
                ) if self.top_k else ""
                lines.append(f'{{"source": {json.dumps(source)}, "label": {labels[i]}, '
                             f'"confidence": {confidence[i]:.6g}{extra}}}\n')
        self._write("".join(lines))

    def write_array_rows(self, path: str, start: int, probabilities: np.ndarray) -> None:
        """Rows `path#start` ... for consecutive rows of one array: the hot path for large arrays."""
        if self.top_k or self.fmt != "csv" or _CSV_SPECIAL.search(path):
            sources = [f"{path}#{i}" for i in range(start, start + len(probabilities))]
            self.write_rows(sources, probabilities)
            return
        labels, confidence = _best(probabilities)
        line = path.replace("{", "{{").replace("}", "}}") + "#{},{},{:.6g},\n"
        self._write("".join(map(line.format, range(start, start + len(labels)), labels, confidence)))

    def write_failed(self, source: str, error: str) -> None:
        self._write(self._failed(source, error))

    def _failed(self, source: str, error: str) -> str:
        if self.fmt == "csv":
            return f"{_csv_field(source)}{self._empty},{_csv_field(error)}\n"
        return json.dumps({"source": source, "label": None, "confidence": None, "error": error}) + "\n"
