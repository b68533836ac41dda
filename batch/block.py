"""One block of image files -> its rows (read, decode, classify, format): every engine's unit of work,
so the rows are byte-identical wherever a block is done."""

import os
from dataclasses import dataclass
from stat import S_ISREG

import numpy as np

from digits.batch.classifier import Classifier
from digits.batch.decode import border_pixels, decode_digits
from digits.batch.formats import RowFormat
from digits.batch.scores import Predicted
from digits.core.contract import IMAGE_SIZE, MAX_IMAGE_FILE_BYTES, NUM_CLASSES
from digits.core.errors import first_line
from digits.core.files import PathError, open_regular, stderr_muted

READ_AHEAD = 64 * 1024  # one read takes a digit image whole


@dataclass
class BlockRows:
    """What a block gives the run: its rows' text and the counts for the summary."""

    text: str  # (a parquet RowFormat's rows: a pyarrow table)
    per_label: np.ndarray  # int64 [NUM_CLASSES]: classified rows (digits) by label
    failed: int
    review: int  # classified rows under --review-below
    not_digits: int = 0  # rows whose digit_score is under the model's threshold (not blank)
    blank: int = 0  # rows with no ink (blank_digits)

    @property
    def rows(self) -> int:
        """Every row the block wrote."""
        return int(self.per_label.sum()) + self.failed + self.not_digits + self.blank


_PAGE_AT = (4 * IMAGE_SIZE - 4 - 1) // 2  # the lower median of a 28x28 digit's border pixels


def blank_digits(digits: np.ndarray) -> np.ndarray:
    """bool [N]: the uint8 [N, 28, 28] digits with nothing brighter than their page (decode.page_level's):
    what decoding leaves as it is for want of ink, and an empty form box. Decoding stretches anything
    brighter than the page to full ink, so this is the one rule, for images and arrays alike."""
    page = np.partition(border_pixels(digits), _PAGE_AT, axis=1)[:, _PAGE_AT]
    return digits.reshape(len(digits), -1).max(axis=1, initial=0) <= page


def predict(classifier: Classifier, digits: np.ndarray) -> Predicted:
    """The model's probabilities and digit_score for uint8 [N, 28, 28] digits, and which are blank or
    under the model's threshold (digit_score as written, 6 decimals, under it; never blank): what every
    engine makes a block's rows and counts from."""
    probabilities, scores = classifier.scored(digits)
    blank, below = blank_digits(digits), None
    if scores is not None and classifier.threshold is not None:
        below = (np.rint(scores.astype(np.float64) * 1e6) < round(classifier.threshold * 1e6)) & ~blank
    return Predicted(probabilities, scores, blank, below)


def classify_block(paths: list[str], invert: str, classifier: Classifier, row_format: RowFormat,
                   out: np.ndarray | None = None, read=None) -> BlockRows:
    """The rows of image files `paths`, in order; a file that cannot be had is an error row. `out`: the
    array to decode into (a worker reuses one). `read(path)`: a file's bytes or why not (default read_file;
    the Ray engine's read_uri). ModelError when the model fails on the block."""
    with stderr_muted():  # libpng's lines for a corrupt PNG: the file's error row says it
        digits, errors = decode_digits(list(map(read or read_file, paths)), invert, out=out)
    block = predict(classifier, digits)
    if not any(e is not None for e in errors):
        errors = None
    rows = count_rows(block, errors, row_format)
    rows.text = row_format.rows(paths, block, errors)
    return rows


def count_rows(block: Predicted, errors: list | None, row_format: RowFormat) -> BlockRows:
    """A block's counts, every engine's (its text left empty): failed rows (errors[i] set); of the others,
    blank, under the threshold, and digits by label and under --review-below, whatever --not-digits says."""
    probabilities = block.probabilities
    ok = np.ones(len(probabilities), bool) if errors is None else np.array([e is None for e in errors], bool)
    blank, below = ok & block.blank, ok & block.below
    digit = ok & ~blank & ~below
    per_label = np.bincount(probabilities.argmax(axis=1)[digit], minlength=NUM_CLASSES)
    review = 0
    if row_format.review_below is not None:
        review = int((row_format.under_review(probabilities) & digit).sum())
    return BlockRows("", per_label, int((~ok).sum()), review, int(below.sum()), int(blank.sum()))


def read_file(path: str) -> bytes | str:
    """A file's bytes, or why they could not be had. Nothing blocks: the open is O_NONBLOCK, so a
    FIFO swapped in since the walk reads as empty at once. One read takes a digit image whole; the
    file's kind and size are checked only when it came back empty, full or refused: an fstat on
    every file costs a tenth of a small PNG's decode."""
    try:
        # os-level calls: half the cost of open()/read() on small files (docs/decisions.md).
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        try:
            data = os.read(fd, READ_AHEAD)
            if 0 < len(data) < READ_AHEAD:
                return data
            st = os.fstat(fd)
            if not S_ISREG(st.st_mode):
                return _not_regular(path)
            if not data:
                return data  # an empty file: decode_digit says so
            if st.st_size > MAX_IMAGE_FILE_BYTES:  # checked before reading a large file whole
                return f"file larger than {MAX_IMAGE_FILE_BYTES // 2**20} MiB"
            return data + os.read(fd, st.st_size + 1 - len(data))
        finally:
            os.close(fd)
    except (IsADirectoryError, BlockingIOError):  # BlockingIOError: a terminal or such, with nothing to read
        return _not_regular(path)
    except OSError as e:
        return f"cannot read: {e.strerror or e}"


def read_uri(uri: str) -> bytes | str:
    """read_file for a URI (s3://..., read with pyarrow), with the same cap and wording."""
    import pyarrow.fs as pafs

    try:
        fs, path = pafs.FileSystem.from_uri(uri)
        with fs.open_input_file(path) as f:
            if f.size() > MAX_IMAGE_FILE_BYTES:
                return f"file larger than {MAX_IMAGE_FILE_BYTES // 2**20} MiB"
            return f.read()
    except (OSError, ValueError) as e:
        return f"cannot read: {first_line(e)}"


def _not_regular(path: str) -> str:
    """open_regular's words for what `path` is."""
    try:
        os.close(open_regular(path))
    except PathError as e:
        return str(e)
    except OSError as e:
        return f"cannot read: {e.strerror or e}"
    return "changed while being read"
