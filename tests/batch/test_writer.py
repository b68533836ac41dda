"""The row writer and --resume's reader on their own: formats, fast paths, torn lines."""

import csv
import io
import json
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from digits.batch.formats import RowFormat
from digits.batch.resume import Done, ResumeError, resume_output
from digits.batch.scores import Predicted
from digits.batch.writer import RowWriter


def _probabilities(rows: int, seed: int = 0) -> Predicted:
    """A block of probabilities alone: no digit score, nothing blank."""
    scores = np.random.default_rng(seed).random((rows, 10), dtype=np.float32) ** 4
    return Predicted((scores / scores.sum(axis=1, keepdims=True)).astype(np.float32))


def test_csv_rows_have_the_header_columns_and_six_decimals():
    out = io.StringIO()
    writer = RowWriter(out, RowFormat("csv", top_k=2))
    probabilities = Predicted(np.array([[0.1, 0.7, 0.2] + [0] * 7, [0.5, 0.25, 0.25] + [0] * 7], np.float32))
    writer.write(writer.format.rows(["a.png", "b,c.png"], probabilities))
    writer.write(writer.format.failed("d.png", 'bad "file"'))
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert list(rows[0]) == writer.format.columns() == ["source", "label", "confidence", "label_1", "prob_1", "label_2",
                                             "prob_2", "error"]
    assert rows[0] == {"source": "a.png", "label": "1", "confidence": "0.700000", "label_1": "1", "prob_1": "0.7",
                       "label_2": "2", "prob_2": "0.2", "error": ""}
    assert rows[1]["source"] == "b,c.png" and rows[1]["confidence"] == "0.500000"
    assert rows[2] == {"source": "d.png", "label": "", "confidence": "", "label_1": "", "prob_1": "", "label_2": "",
                       "prob_2": "", "error": 'bad "file"'}


def test_jsonl_rows_carry_error_only_when_failed():
    out = io.StringIO()
    writer = RowWriter(out, RowFormat("jsonl"))
    writer.write(writer.format.rows(["a.png"], _probabilities(1)))
    writer.write(writer.format.failed("b.png", "empty file"))
    classified, failed = (json.loads(line) for line in out.getvalue().splitlines())
    assert set(classified) == {"source", "label", "confidence"}
    assert failed == {"source": "b.png", "label": None, "confidence": None, "error": "empty file"}


@settings(max_examples=60, deadline=None)
@given(rows=st.integers(1, 1200), start=st.sampled_from([0, 7, 95, 990, 9_995, 123_456]),
       seed=st.integers(0, 2**16))
def test_the_array_fast_path_writes_what_the_general_path_writes(rows, start, seed):
    """Array rows are assembled in numpy (row numbers across digit widths, 998 -> 1000);
    byte for byte what formatting each row on its own gives."""
    probabilities = _probabilities(rows, seed)
    fmt = RowFormat("csv")
    fast = fmt.array_rows("x/a.npy", start, probabilities)
    general = fmt.rows([f"x/a.npy#{i}" for i in range(start, start + rows)], probabilities)
    assert fast == general


@settings(max_examples=60, deadline=None)
@given(probabilities=arrays(np.float32, st.tuples(st.integers(1, 40), st.just(10)),
                            elements=st.floats(0, 1, width=32)))
def test_the_common_csv_path_writes_what_the_per_row_path_writes(probabilities):
    """The block fast path (no top-k, no errors) against the per-row path (an errors list
    with no error in it), on any probabilities, ties and exact 0/1 included."""
    fmt = RowFormat("csv")
    sources = [f"d{i}.png" for i in range(len(probabilities))]
    block = Predicted(probabilities)
    assert fmt.rows(sources, block) == fmt.rows(sources, block, [None] * len(sources))


def test_review_compares_the_confidence_as_written():
    fmt = RowFormat("csv", review_below=0.9)
    probabilities = np.zeros((3, 10), np.float32)
    probabilities[:, 0] = [0.8999996, 0.8999994, 0.95]  # written 0.900000, 0.899999, 0.950000
    assert fmt.under_review(probabilities).tolist() == [False, True, False]


def test_a_failed_write_cuts_the_file_back_to_its_last_whole_row(tmp_path, monkeypatch):
    from digits.batch import writer as writer_module

    path = tmp_path / "rows.csv"
    stream = open(path, "w", encoding="utf-8")
    writer = RowWriter(stream, RowFormat("csv"), name=str(path))
    writer.write(writer.format.rows(["a.png"], _probabilities(1)))
    whole = path.read_bytes()

    def refuse(fd, data):
        os.write(fd, data[:10])  # part of it reached the file, then the disk filled
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(writer_module, "write_all", refuse)  # blocks go to the descriptor
    with pytest.raises(Exception, match="no space left"):
        writer.write(writer.format.rows(["b.png"], _probabilities(1)))
    assert path.read_bytes() == whole


def test_resume_reads_whole_rows_and_cuts_a_torn_line(tmp_path):
    path = tmp_path / "rows.csv"
    fmt = RowFormat("csv")
    text = fmt.header() + fmt.rows(["a.png", "b.png"], _probabilities(2))
    text += fmt.array_rows("x.npy", 0, _probabilities(3))
    text += fmt.failed("c.png", "empty file")
    path.write_text(text + "d.png,3,0.9")  # torn: no newline
    done = resume_output(path, fmt)
    assert path.read_text() == text
    assert (done.rows, done.failed, done.header) == (6, 1, True)
    assert done.take("a.png") and done.take("c.png") and not done.take("d.png")
    assert done.take("x.npy#2") and not done.take("x.npy#3") and done.array_rows("x.npy").tolist() == [0, 1]


def test_resume_refuses_other_columns_without_touching_the_file(tmp_path):
    path = tmp_path / "rows.csv"
    original = RowFormat("csv", top_k=2).header()
    path.write_text(original)
    with pytest.raises(ResumeError, match="columns"):
        resume_output(path, RowFormat("csv"))
    assert path.read_text() == original


def test_resume_of_a_missing_file_is_a_fresh_start(tmp_path):
    assert resume_output(tmp_path / "none.csv", RowFormat("csv")) == Done()
