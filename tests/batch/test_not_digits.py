"""Is it a digit? classify's digit_score column, --not-digits mark|reject|keep, the blank rule and the counts,
with the committed models, on a folder of real MNIST digits mixed with clothes (Fashion-MNIST), letters, pen strokes
and blank images."""

import csv
import io
import json

import cv2
import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image, ImageDraw, ImageFont

from digits.batch.block import blank_digits
from digits.batch.decode import decode_digit
from digits.batch.formats import NOT_A_DIGIT, RowFormat
from digits.batch.scores import Predicted
from tests.conftest import COMMITTED_CNN, COMMITTED_MODEL, ROOT, assert_one_line_error, run_digits

MODELS = {"mlp": COMMITTED_MODEL, "cnn": COMMITTED_CNN}
DIGITS = 40
BLANKS = ("blank28.png", "box64.png")
CLOTHES = sorted((ROOT / "tests" / "data" / "fashion").glob("cloth*.png"))  # tests/data/README.md: their source


def rows_of(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def _letters_and_strokes() -> dict[str, bytes]:
    """Non-digits, dark ink on a light 64x64 page: letters and signs in Pillow's own font, random pen strokes."""
    font = ImageFont.load_default(size=48)
    made = {}
    for i, char in enumerate("AKMWXRGNEF#@&%"):
        page = Image.new("L", (64, 64), 255)
        ImageDraw.Draw(page).text((32, 32), char, fill=0, font=font, anchor="mm")
        made[f"letter{i:02d}.png"] = _png(page)
    rng = np.random.default_rng(0)
    for i in range(12):
        page = Image.new("L", (64, 64), 255)
        points = [tuple(rng.integers(4, 60, 2).tolist()) for _ in range(int(rng.integers(4, 8)))]
        ImageDraw.Draw(page).line(points, fill=0, width=4)
        made[f"stroke{i:02d}.png"] = _png(page)
    return made


@pytest.fixture(scope="module")
def mixed(tmp_path_factory, small):
    """A folder: DIGITS real MNIST digits (28x28, as MNIST stores them), Fashion-MNIST clothes, letters, strokes,
    a blank 28x28 page and an empty 64x64 form box (its frame is a form line: nothing in it)."""
    root = tmp_path_factory.mktemp("mixed")
    for i in range(DIGITS):
        cv2.imwrite(str(root / f"digit{i:02d}.png"), small.x_test[i])
    for cloth in CLOTHES:
        (root / cloth.name).write_bytes(cloth.read_bytes())
    for name, data in _letters_and_strokes().items():
        (root / name).write_bytes(data)
    (root / "blank28.png").write_bytes(_png(Image.new("L", (28, 28), 255)))
    box = Image.new("L", (64, 64), 255)
    ImageDraw.Draw(box).rectangle((4, 4, 59, 59), outline=0, width=2)
    (root / "box64.png").write_bytes(_png(box))
    return root


def _threshold(model) -> float:
    return float(ort.InferenceSession(str(model)).get_modelmeta().custom_metadata_map["digit_score_threshold"])


def _run(model, folder, tmp_path, *options) -> tuple[list[dict], dict, int]:
    summary = tmp_path / "summary.json"
    result = run_digits("classify", model, folder, "--summary-json", summary, *options)
    return rows_of(result.stdout), json.loads(summary.read_text()), result.returncode


@pytest.mark.parametrize("name", MODELS)
def test_mark_reject_keep_give_each_file_its_row_and_count_every_kind(name, mixed, tmp_path):
    model = MODELS[name]
    marked, counts, code = _run(model, mixed, tmp_path)  # mark is the default
    assert code == 0
    files = sorted(p.name for p in mixed.iterdir())
    assert sorted(r["source"].rsplit("/", 1)[1] for r in marked) == files
    assert list(marked[0]) == ["source", "label", "confidence", "digit_score", "not_digit", "error"]
    threshold = _threshold(model)
    for row in marked:
        blank = row["source"].endswith(BLANKS)
        assert row["not_digit"] == ("1" if blank or float(row["digit_score"]) < threshold else "0"), row
    flagged = {r["source"].rsplit("/", 1)[1] for r in marked if r["not_digit"] == "1"}
    assert set(BLANKS) <= flagged
    assert sum(name.startswith("digit") for name in flagged) <= 2  # the threshold keeps 99% of real digits
    assert any(name.startswith(("letter", "stroke")) for name in flagged)
    assert sum(name.startswith("cloth") for name in flagged) >= 15  # of 20; measured 20 (MLP) and 17 (CNN)
    assert (counts["items"], counts["failed"], counts["blank"]) == (len(files), 0, 2)
    assert counts["not_digits"] == len(flagged) - 2
    assert counts["classified"] == len(files) - len(flagged) == sum(counts["per_label"].values())

    rejected, reject_counts, code = _run(model, mixed, tmp_path, "--not-digits", "reject")
    assert code == 0  # a not-digit is no failure
    assert {k: reject_counts[k] for k in ("items", "classified", "not_digits", "blank", "failed", "per_label")} == \
        {k: counts[k] for k in ("items", "classified", "not_digits", "blank", "failed", "per_label")}
    kept, _, code = _run(model, mixed, tmp_path, "--not-digits", "keep")
    assert code == 0 and list(kept[0]) == ["source", "label", "confidence", "digit_score", "error"]
    for mark, reject, keep in zip(marked, rejected, kept):
        assert mark["source"] == reject["source"] == keep["source"]
        assert {k: v for k, v in mark.items() if k != "not_digit"} == keep  # keep: no change to any row
        if mark["not_digit"] == "1":
            assert (reject["label"], reject["confidence"], reject["digit_score"], reject["error"]) == \
                ("", "", "", NOT_A_DIGIT)
        else:  # a digit's row is the same whatever --not-digits says
            assert reject == keep


def _without_digit_score(tmp_path):
    """tests/data/mlp.onnx as models exported before digit_score were: probabilities and label only."""
    onnx = pytest.importorskip("onnx")
    model = onnx.load(COMMITTED_MODEL)
    kept = [o for o in model.graph.output if o.name != "digit_score"]
    del model.graph.output[:]
    model.graph.output.extend(kept)
    props = [(p.key, p.value) for p in model.metadata_props if not p.key.startswith("digit_score")]
    del model.metadata_props[:]
    for key, value in props:
        model.metadata_props.add(key=key, value=value)
    path = tmp_path / "old.onnx"
    onnx.save(model, path)
    return path


def test_a_model_without_digit_score_still_marks_blanks(mixed, tmp_path):
    old = _without_digit_score(tmp_path)
    rows, counts, code = _run(old, mixed, tmp_path)
    assert code == 0 and list(rows[0]) == ["source", "label", "confidence", "not_digit", "error"]
    assert [r["not_digit"] == "1" for r in rows] == [r["source"].endswith(BLANKS) for r in rows]
    assert (counts["blank"], counts["not_digits"], counts["classified"]) == (2, 0, len(rows) - 2)
    new, _, _ = _run(COMMITTED_MODEL, mixed, tmp_path)
    assert [r["label"] for r in rows] == [r["label"] for r in new]  # the same model: the same labels
    rejected, _, code = _run(old, mixed, tmp_path, "--not-digits", "reject")
    assert code == 0 and [r["error"] for r in rejected] == [NOT_A_DIGIT if r["not_digit"] == "1" else "" for r in rows]


def test_blank_is_no_ink_after_contrast_normalisation():
    """A blank page (white, grey, any size), an empty form box: blank. A faint digit: not blank."""
    box = Image.new("L", (64, 64), 255)
    ImageDraw.Draw(box).rectangle((4, 4, 59, 59), outline=0, width=2)
    faint = np.full((28, 28), 200, np.uint8)
    faint[8:20, 12:15] = 180  # a faint stroke on grey paper: normalised to full ink
    pages = [Image.new("L", (28, 28), 255), Image.new("L", (28, 28), 120), Image.new("L", (300, 200), 230), box]
    decoded = np.stack([decode_digit(_png(p)) for p in pages] + [decode_digit(_png(Image.fromarray(faint)))])
    assert blank_digits(decoded).tolist() == [True, True, True, True, False]
    assert decoded[-1].max() == 255


def test_arrays_jsonl_and_parquet_carry_the_columns(small, tmp_path):
    array = tmp_path / "a.npy"
    digits = np.concatenate([small.x_test[:5], np.zeros((2, 28, 28), np.uint8)])
    np.save(array, digits)
    result = run_digits("classify", COMMITTED_CNN, array, "--format", "jsonl")
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["not_digit"] for line in lines[5:]] == [True, True]
    assert all(0 <= line["digit_score"] <= 1 for line in lines)
    csv_rows = rows_of(run_digits("classify", COMMITTED_CNN, array, "--top-k", "2").stdout)
    assert [float(r["digit_score"]) for r in csv_rows] == [line["digit_score"] for line in lines]
    assert "2 blank" in run_digits("classify", COMMITTED_CNN, array).stderr

    pyarrow = pytest.importorskip("pyarrow.parquet")
    fmt = RowFormat("parquet", scored=True, not_digits="mark")
    block = Predicted(np.full((2, 10), 0.1, np.float32), np.array([0.5, 0.01], np.float32), np.array([False, True]))
    (tmp_path / "rows.parquet").write_bytes(fmt.join([fmt.rows(["a", "b"], block), fmt.failed("c", "bad")]))
    table = pyarrow.read_table(tmp_path / "rows.parquet").to_pydict()
    assert table["digit_score"] == [pytest.approx(0.5), pytest.approx(0.01), None]
    assert table["not_digit"] == [False, True, None]


def test_resume_keeps_rejected_rows_and_refuses_other_columns(mixed, tmp_path):
    out = tmp_path / "rows.csv"
    first = run_digits("classify", COMMITTED_MODEL, mixed, "--not-digits", "reject", "--output", out)
    assert first.returncode == 0, first.stderr
    lines = out.read_text().splitlines(keepends=True)
    assert any(NOT_A_DIGIT in line for line in lines)
    out.write_text("".join(lines[: len(lines) // 2]))
    again = run_digits("classify", COMMITTED_MODEL, mixed, "--not-digits", "reject", "--output", out, "--resume")
    assert again.returncode == 0, again.stderr  # rejected rows kept are not failures
    assert sorted(out.read_text().splitlines(keepends=True)) == sorted(lines)
    assert "(0 failed)" in again.stderr
    marked = run_digits("classify", COMMITTED_MODEL, mixed, "--output", out, "--resume")
    assert_one_line_error(marked, 1, "cannot resume", "--not-digits")


@pytest.mark.parametrize("not_digits", ["mark", "reject", "keep"])
def test_array_rows_fast_path_writes_what_rows_writes(not_digits):
    """An array's csv rows, assembled as bytes in numpy, are the general path's rows, with the added columns."""
    rng = np.random.default_rng(1)
    probabilities = rng.dirichlet(np.full(10, 0.3), 1500).astype(np.float32)
    block = Predicted(probabilities, rng.random(1500).astype(np.float32), rng.random(1500) < 0.1,
                      rng.random(1500) < 0.1)
    fmt = RowFormat("csv", review_below=0.7, scored=True, not_digits=not_digits)
    fast = fmt.array_rows("x/a.npy", 995, block)
    assert fast == fmt.rows([f"x/a.npy#{i}" for i in range(995, 2495)], block)
    rows = rows_of(fmt.header() + fast)
    assert [r["digit_score"] for r in rows] == [f"{s:.6f}" if e == "" else "" for s, e in
                                                 zip(block.scores.tolist(), (r["error"] for r in rows))]
    assert sum(r["error"] == NOT_A_DIGIT for r in rows) == (block.not_digit.sum() if not_digits == "reject" else 0)
