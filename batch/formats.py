"""Result rows: how a block of them reads, in csv, jsonl or parquet, with the columns RowFormat.columns names.

error is empty unless the item could not be read, or is "not a digit" with --not-digits reject; its
label and scores are then empty. csv and jsonl rows are text, streamed (batch/writer.py); parquet
rows are a pyarrow table, one file per Ray shard.
"""

import io
import json
import re
from collections.abc import Sequence
from typing import Literal

import numpy as np

from digits.batch.scores import Predicted
from digits.core.contract import NUM_CLASSES

Format = Literal["csv", "jsonl", "parquet"]
NotDigits = Literal["mark", "reject", "keep"]
NOT_A_DIGIT = "not a digit"  # a rejected row's error (--not-digits reject): not a failure


_CSV_SPECIAL = re.compile(r'[,"\r\n]')


def _csv_field(text: str) -> str:
    return '"' + text.replace('"', '""') + '"' if _CSV_SPECIAL.search(text) else text


def _csv_fields(texts: Sequence[str]) -> Sequence[str]:
    # One scan of the whole block: paths rarely need quoting.
    return [_csv_field(t) for t in texts] if _CSV_SPECIAL.search("".join(texts)) else texts


def _best(probabilities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's label and its probability written as text: int64 [N], uint8 [N, 8]."""
    labels = probabilities.argmax(axis=1)
    return labels, _fixed6(probabilities[np.arange(len(labels)), labels])


def _fixed6(values: np.ndarray) -> np.ndarray:
    """Probabilities (0..1) as text with 6 decimals, 'd.dddddd', as ASCII codes: uint8 [N, 8]. In numpy:
    formatting each row's confidence in Python was most of what classify spent beyond the model."""
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


def _top(probabilities: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's k most likely labels, most likely first (a tie: the lower label first), and their probabilities."""
    order = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(probabilities, order, axis=1)


def _texts(ascii_rows: np.ndarray) -> list[str]:
    """uint8 [N, W] ASCII codes -> N str."""
    return np.ascontiguousarray(ascii_rows).view(f"S{ascii_rows.shape[1]}").ravel().astype(str).tolist()


def _array_rows_csv(path: str, start: int, labels: np.ndarray, confidence: np.ndarray, tail: np.ndarray) -> str:
    """csv rows `path#i,label,confidence<tail>,` for consecutive rows i from `start`, assembled as bytes
    in numpy: ~20x faster than formatting each row in Python. `tail`: uint8 [N, W], the added columns."""
    extra = tail.shape[1]
    prefix = np.frombuffer((path + "#").encode("utf-8", "surrogateescape"), np.uint8)
    blocks = []
    first, end = start, start + len(labels)
    while first < end:  # one block per row-number width: 998, 999 | 1000, 1001 ...
        width = len(str(first))
        last = min(end, 10**width)
        rows = slice(first - start, last - start)
        block = np.empty((last - first, len(prefix) + width + 13 + extra), np.uint8)
        block[:, : len(prefix)] = prefix
        _digits_into(block[:, len(prefix) : len(prefix) + width], np.arange(first, last))
        at = len(prefix) + width
        block[:, at] = block[:, at + 2] = block[:, at + 11 + extra] = ord(",")
        block[:, at + 1] = 48 + labels[rows]
        block[:, at + 3 : at + 11] = confidence[rows]
        block[:, at + 11 : at + 11 + extra] = tail[rows]
        block[:, at + 12 + extra] = ord("\n")
        blocks.append(block.tobytes())
        first = last
    return b"".join(blocks).decode("utf-8", "surrogateescape")


class RowFormat:
    """How rows are written: a block of rows as text (a table, for parquet), the same in whichever process
    makes it (the run's own, a worker, a Ray actor), so rows are byte-identical however the work is spread."""

    def __init__(self, fmt: Format = "csv", top_k: int = 0, review_below: float | None = None,
                 scored: bool = False, not_digits: NotDigits = "keep"):
        """`review_below`: rows whose confidence, as written (6 decimals), is under it get review 1 (jsonl: true),
        others 0 (false); None: no review column. `scored`: the model gives a digit_score, written in its column.
        `not_digits` (--not-digits): mark gives a not_digit column, 1 (jsonl: true) for a blank digit or one under the
        model's threshold; reject writes such a row as an error row saying NOT_A_DIGIT; keep writes it as any other."""
        self.fmt, self.top_k, self.review_below = fmt, top_k, review_below
        self.scored, self.not_digits = scored, not_digits
        self.mark = not_digits == "mark"
        # Compared as the written micro-units, so a row reading 0.900000 is never under 0.9.
        self._review_micro = None if review_below is None else int(round(review_below * 1e6))
        self._empty = "," * (2 + 2 * top_k + (review_below is not None) + scored + self.mark)  # failed rows' blanks

    def columns(self) -> list[str]:
        """The csv header's columns: source, label, confidence, label_k and prob_k for --top-k K, review for
        --review-below, digit_score for a model that gives one, not_digit for --not-digits mark, error. A jsonl
        row has the same keys, `error` only when it is set."""
        top = [f"{key}_{k}" for k in range(1, self.top_k + 1) for key in ("label", "prob")]
        extra = ["review"] * (self.review_below is not None) + ["digit_score"] * self.scored + ["not_digit"] * self.mark
        return ["source", "label", "confidence", *top, *extra, "error"]

    def header(self) -> str:
        return ",".join(self.columns()) + "\n" if self.fmt == "csv" else ""

    def under_review(self, probabilities: np.ndarray) -> np.ndarray:
        """bool [N]: the rows whose confidence, as written, is under --review-below."""
        return _micro(probabilities.max(axis=1)) < self._review_micro

    def _extras(self, predicted: Predicted) -> list[tuple[str, np.ndarray]]:
        """The added columns that this format writes, as (name, values [N]): review, digit_score, not_digit."""
        extras = []
        if self._review_micro is not None:
            extras.append(("review", self.under_review(predicted.probabilities)))
        if self.scored:  # zeros for a block that has none (a failed row's, never written)
            scores = predicted.scores
            extras.append(("digit_score", np.zeros(len(predicted.probabilities)) if scores is None else scores))
        if self.mark:
            extras.append(("not_digit", predicted.not_digit))
        return extras

    def _tail(self, predicted: Predicted) -> np.ndarray:
        """The added columns of csv rows as ASCII, each after its comma: uint8 [N, W]."""
        commas = np.full(len(predicted.probabilities), ord(","), np.uint8)
        parts = [np.column_stack([commas, _fixed6(values) if name == "digit_score" else 48 + values.astype(np.uint8)])
                 for name, values in self._extras(predicted)]
        return np.concatenate(parts, axis=1) if parts else np.zeros((len(commas), 0), np.uint8)

    def _tails(self, predicted: Predicted) -> list[str]:
        """What follows each csv or jsonl row's confidence: the top-k labels, then the added columns."""
        csv = self.fmt == "csv"
        tail = self._tail(predicted) if csv else None
        if csv and not self.top_k:  # the common case: assembled in numpy
            return _texts(tail) if tail.shape[1] else [""] * len(tail)
        tails = [""] * len(predicted.probabilities)
        order, top = _top(predicted.probabilities, self.top_k)
        for k, labels, probabilities in zip(range(1, self.top_k + 1), order.T.tolist(), top.T.tolist()):
            label, prob = (",", ",") if csv else (f', "label_{k}": ', f', "prob_{k}": ')
            tails = [f"{t}{label}{lab}{prob}{p:.6g}" for t, lab, p in zip(tails, labels, probabilities)]
        if csv:
            return [t + added for t, added in zip(tails, _texts(tail))] if tail.shape[1] else tails
        for name, values in self._extras(predicted):
            texts = _texts(_fixed6(values)) if name == "digit_score" else np.where(values, "true", "false").tolist()
            tails = [f'{tail}, "{name}": {text}' for tail, text in zip(tails, texts)]
        return tails

    def _rejected(self, predicted: Predicted, errors: Sequence[str | None] | None) -> Sequence[str | None] | None:
        """`errors`, with NOT_A_DIGIT for every row that --not-digits reject leaves without a label."""
        not_digit = predicted.not_digit
        if self.not_digits != "reject" or not not_digit.any():
            return errors
        errors = [None] * len(not_digit) if errors is None else errors
        return [NOT_A_DIGIT if no and e is None else e for no, e in zip(not_digit.tolist(), errors)]

    def rows(self, sources: Sequence[str], predicted: Predicted, errors: Sequence[str | None] | None = None) -> str:
        """One row per source; where errors[i] is set, row i is a failure and its probabilities are ignored."""
        errors = self._rejected(predicted, errors)
        if self.fmt == "parquet":
            return self._table(sources, predicted, errors)
        labels, confidence = _best(predicted.probabilities)
        labels, confidence, tails = labels.tolist(), _texts(confidence), self._tails(predicted)
        if errors is None and self.fmt == "csv":  # the common case: no per-row branching
            return "".join(map("{},{},{}{},\n".format, _csv_fields(sources), labels, confidence, tails))
        lines = []
        for i, source in enumerate(sources):
            if errors is not None and errors[i] is not None:
                lines.append(self.failed(source, errors[i]))
            elif self.fmt == "csv":
                lines.append(f"{_csv_field(source)},{labels[i]},{confidence[i]}{tails[i]},\n")
            else:
                lines.append(f'{{"source": {json.dumps(source)}, "label": {labels[i]}, '
                             f'"confidence": {confidence[i]}{tails[i]}}}\n')
        return "".join(lines)

    def array_rows(self, path: str, start: int, predicted: Predicted) -> str:
        """Rows `path#start` ... for consecutive rows of one array: the hot path for large arrays."""
        if (self.top_k or self.fmt != "csv" or _CSV_SPECIAL.search(path)
                or (self.not_digits == "reject" and predicted.not_digit.any())):
            return self.rows([f"{path}#{i}" for i in range(start, start + len(predicted.probabilities))], predicted)
        return _array_rows_csv(path, start, *_best(predicted.probabilities), self._tail(predicted))

    def failed(self, source: str, error: str) -> str:
        if self.fmt == "parquet":
            return self._table([source], Predicted(np.zeros((1, NUM_CLASSES), np.float32)), [error])
        if self.fmt == "csv":
            return f"{_csv_field(source)}{self._empty},{_csv_field(error)}\n"
        return json.dumps({"source": source, "label": None, "confidence": None, "error": error}) + "\n"

    def join(self, parts: list, header: bool = False) -> bytes:
        """Blocks of rows (as rows() gave them) as one file's bytes: UTF-8 text (a name that is not UTF-8
        as its own bytes), with the csv header first when `header`; or one parquet file."""
        if self.fmt != "parquet":
            return ((self.header() if header else "") + "".join(parts)).encode("utf-8", "surrogateescape")
        import pyarrow as pa
        import pyarrow.parquet as pq

        sink = io.BytesIO()
        empty = Predicted(np.zeros((0, NUM_CLASSES), np.float32))
        pq.write_table(pa.concat_tables(parts or [self._table([], empty, None)]), sink)
        return sink.getvalue()

    def _table(self, sources: Sequence[str], predicted: Predicted, errors: Sequence[str | None] | None):
        """The rows as a pyarrow table: the csv columns, a failed row's label and scores null."""
        import pyarrow as pa

        probabilities = predicted.probabilities
        errors = list(errors) if errors is not None else [None] * len(sources)
        failed = np.array([e is not None for e in errors], dtype=bool)
        labels = probabilities.argmax(axis=1)
        confidence = probabilities[np.arange(len(labels)), labels].astype(np.float64)
        table = {"source": pa.array([_utf8(s) for s in sources], pa.string()),
                 "label": pa.array(labels.astype(np.int64), mask=failed),
                 "confidence": pa.array(confidence, mask=failed)}
        order, top = _top(probabilities, self.top_k)
        for k in range(self.top_k):
            table[f"label_{k + 1}"] = pa.array(order[:, k].astype(np.int64), mask=failed)
            table[f"prob_{k + 1}"] = pa.array(top[:, k].astype(np.float64), mask=failed)
        for name, values in self._extras(predicted):
            table[name] = pa.array(values.astype(np.float64) if name == "digit_score" else values, mask=failed)
        table["error"] = pa.array(errors, pa.string())
        return pa.table(table)


def _utf8(text: str) -> str:
    """`text` as valid UTF-8: Parquet strings are, so a file name that is not (kept by os.fsdecode as
    surrogates) is written with its odd bytes as \\x.. escapes rather than failing."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
