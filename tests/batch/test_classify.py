"""`digits classify` as a user meets it: inputs, rows, errors and exit codes."""

import contextlib
import csv
import io
import json
import os
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.conftest import ROOT, assert_one_line_error, run_digits, run_fresh, save_graph


def rows_of(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


def onnx_labels(model, digits) -> list[int]:
    return ort.InferenceSession(str(model)).run(["label"], {"image": digits})[0].tolist()


@pytest.fixture(scope="module")
def digit_folder(tmp_path_factory, small):
    """12 PNGs (two in a subfolder) and a stray text file."""
    root = tmp_path_factory.mktemp("digits")
    (root / "sub").mkdir()
    for i in range(10):
        cv2.imwrite(str(root / f"d{i:02d}.png"), small.x_test[i])
    for i in (10, 11):
        cv2.imwrite(str(root / "sub" / f"d{i:02d}.png"), small.x_test[i])
    (root / "notes.txt").write_text("skip me")
    return root


def test_folder_and_arrays_in_input_order(exported_onnx, digit_folder, small, tmp_path):
    uint8 = tmp_path / "u8.npy"
    np.save(uint8, small.x_test[20:25])
    floats = tmp_path / "f.npy"
    np.save(floats, (small.x_test[30:33] / 255.0).reshape(3, 784).astype(np.float32))

    result = run_digits("classify", exported_onnx, digit_folder, uint8, floats)
    assert result.returncode == 0, result.stderr
    rows = rows_of(result.stdout)
    expected_sources = [str(digit_folder / f"d{i:02d}.png") for i in range(10)]
    expected_sources += [str(digit_folder / "sub" / f"d{i:02d}.png") for i in (10, 11)]
    expected_sources += [f"{uint8}#{i}" for i in range(5)] + [f"{floats}#{i}" for i in range(3)]
    assert [r["source"] for r in rows] == expected_sources
    digits = np.concatenate([small.x_test[:12], small.x_test[20:25], small.x_test[30:33]])
    assert [int(r["label"]) for r in rows] == onnx_labels(exported_onnx, digits)
    assert all(0 < float(r["confidence"]) <= 1 and r["error"] == "" for r in rows)
    assert "20 items, 20 classified, 0 failed, 1 skipped" in result.stderr
    assert "digits/s" in result.stderr and "per label:" in result.stderr


def test_no_recursive_glob_and_stdin(exported_onnx, digit_folder):
    flat = rows_of(run_digits("classify", exported_onnx, digit_folder, "--no-recursive").stdout)
    assert len(flat) == 10 and not any("sub" in r["source"] for r in flat)
    only = rows_of(run_digits("classify", exported_onnx, digit_folder, "--glob", "d1*.png").stdout)
    assert [os.path.basename(r["source"]) for r in only] == ["d10.png", "d11.png"]
    listed = f"{digit_folder / 'd03.png'}\n\n{digit_folder / 'sub'}\n"
    result = run_digits("classify", exported_onnx, "-", stdin=listed)
    assert [os.path.basename(r["source"]) for r in rows_of(result.stdout)] == ["d03.png", "d10.png", "d11.png"]


def test_top_k_and_jsonl(exported_onnx, small, tmp_path):
    array = tmp_path / "a.npy"
    np.save(array, small.x_test[:6])
    rows = rows_of(run_digits("classify", exported_onnx, array, "--top-k", "3").stdout)
    assert list(rows[0]) == ["source", "label", "confidence", "label_1", "prob_1", "label_2", "prob_2",
                             "label_3", "prob_3", "digit_score", "not_digit", "error"]
    probs = ort.InferenceSession(str(exported_onnx)).run(["probabilities"], {"image": small.x_test[:6]})[0]
    for row, p in zip(rows, probs):
        top = np.argsort(-p)[:3]
        assert [int(row[f"label_{k}"]) for k in (1, 2, 3)] == top.tolist()
        assert row["label_1"] == row["label"] and float(row["prob_1"]) == pytest.approx(p[top[0]], rel=1e-5)
        assert float(row["prob_1"]) >= float(row["prob_2"]) >= float(row["prob_3"])

    out = tmp_path / "rows.jsonl"  # format from the file name
    result = run_digits("classify", exported_onnx, array, "--top-k", "2", "--output", out)
    assert result.returncode == 0 and result.stdout == ""
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 6 and lines[0]["source"] == f"{array}#0"
    assert set(lines[0]) == {"source", "label", "confidence", "label_1", "prob_1", "label_2", "prob_2",
                             "digit_score", "not_digit"}
    assert [r["label"] for r in lines] == probs.argmax(axis=1).tolist()


def _bad_inputs(root, small):
    """Each kind of unreadable input, with the words its error row must carry."""
    good = root / "good.png"
    cv2.imwrite(str(good), small.x_test[0])
    (root / "empty.png").write_bytes(b"")
    (root / "truncated.png").write_bytes(good.read_bytes()[:50])
    (root / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is no jpeg \xff\xd9")
    os.symlink(root / "loop_b.png", root / "loop_a.png")
    os.symlink(root / "loop_a.png", root / "loop_b.png")
    np.save(root / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    np.save(root / "nan.npy", np.full((2, 28, 28), np.nan, np.float32))
    np.save(root / "range.npy", np.full((2, 784), 3.0))
    np.save(root / "shape.npy", np.zeros((2, 32, 32), np.uint8))
    np.save(root / "int32.npy", np.zeros((2, 28, 28), np.int32))
    np.save(root / "short.npy", small.x_test[:50])
    (root / "short.npy").write_bytes((root / "short.npy").read_bytes()[:-3000])
    return {
        "corrupt.jpg": "not a decodable image",
        "empty.png": "empty file",
        "int32.npy": "dtype int32",
        "loop_a.png": "symlink loop",
        "loop_b.png": "symlink loop",
        "nan.npy": "NaN",
        "objects.npy": "Python objects",
        "range.npy": "0..1",
        "shape.npy": "shape (2, 32, 32)",
        "short.npy": "truncated",
        "truncated.png": "not a decodable image",
    }


def test_bad_items_get_error_rows_and_exit_3(exported_onnx, small, tmp_path):
    expected = _bad_inputs(tmp_path, small)
    result = run_digits("classify", exported_onnx, tmp_path, tmp_path / "missing.png")
    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr
    rows = {os.path.basename(r["source"]): r for r in rows_of(result.stdout)}
    assert rows["good.png"]["label"] != "" and rows["good.png"]["error"] == ""
    assert rows["missing.png"]["error"] == "no such file or folder"
    for name, words in expected.items():
        assert rows[name]["label"] == "" and words in rows[name]["error"], (name, rows[name])
    assert f"{len(expected) + 2} items, 1 classified, {len(expected) + 1} failed" in result.stderr


def test_permission_denied_is_an_error_row(monkeypatch, tmp_path):
    from digits.batch import block

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "open", denied)  # root ignores chmod, so the refusal is simulated
    assert block.read_file(str(tmp_path / "x.png")) == "cannot read: Permission denied"


def test_inverted_large_digit_is_read_as_its_mnist_form(exported_onnx, small, tmp_path):
    mnist_form = small.x_test[:60]
    for i, digit in enumerate(mnist_form):
        big = cv2.resize(255 - digit, (64, 64), interpolation=cv2.INTER_CUBIC)
        cv2.imwrite(str(tmp_path / f"{i:02d}.png"), big)
    rows = rows_of(run_digits("classify", exported_onnx, tmp_path).stdout)
    agreement = np.mean([int(r["label"]) == lab for r, lab in zip(rows, onnx_labels(exported_onnx, mnist_form))])
    assert agreement >= 0.9, agreement


def _dense_layers(exported) -> list[tuple[np.ndarray, np.ndarray]]:
    """(weights, bias) of each Dense layer of an exported MLP, in graph order."""
    model = onnx.load(exported)
    init = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    matmuls = [n for n in model.graph.node if n.op_type == "MatMul"]
    adds = {n.input[0]: n for n in model.graph.node if n.op_type == "Add"}
    return [(init[m.input[1]], init[adds[m.output[0]].input[1]]) for m in matmuls]


def _float_onnx(exported, path, input_shape, logits=False):
    """The same MLP as a plain float ONNX classifier, as another converter would write it."""
    inits = [numpy_helper.from_array(np.array([-1, 784], np.int64), "flat")]
    nodes = [helper.make_node("Reshape", ["pixels", "flat"], ["h0"])]
    for i, (w, b) in enumerate(_dense_layers(exported)):
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(b, f"b{i}")]
        nodes += [helper.make_node("MatMul", [f"h{i}", f"w{i}"], [f"m{i}"]),
                  helper.make_node("Add", [f"m{i}", f"b{i}"], [f"a{i}"])]
        if i < 3:
            nodes.append(helper.make_node("Relu", [f"a{i}"], [f"h{i + 1}"]))
    nodes.append(helper.make_node("Identity" if logits else "Softmax", ["a3"], ["scores"]))
    graph = helper.make_graph(
        nodes, "plain", [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["N", *input_shape])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", 10])], inits)
    save_graph(graph, path)
    return path


@pytest.mark.parametrize("input_shape, logits", [([784], False), ([28, 28, 1], True)])
def test_plain_float_onnx_model(exported_onnx, small, tmp_path, input_shape, logits):
    model = _float_onnx(exported_onnx, tmp_path / "plain.onnx", input_shape, logits)
    array = tmp_path / "a.npy"
    np.save(array, small.x_test[:40])
    rows = rows_of(run_digits("classify", model, array).stdout)
    assert [int(r["label"]) for r in rows] == onnx_labels(exported_onnx, small.x_test[:40])
    assert all(0 < float(r["confidence"]) <= 1 for r in rows)  # logits are turned into probabilities


def test_unusable_model_and_output_are_fatal(exported_onnx, small, tmp_path):
    array = tmp_path / "a.npy"
    np.save(array, small.x_test[:3])
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 32, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3, 32, 32])])
    wrong = tmp_path / "cifar.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), wrong)
    assert_one_line_error(run_digits("classify", wrong, array), 1, "cifar.onnx",
                          "model takes x tensor(float) [N,3,32,32]")
    junk = tmp_path / "junk.onnx"
    junk.write_text("not onnx")
    assert_one_line_error(run_digits("classify", junk, array), 1, "junk.onnx", "not a loadable ONNX model")
    result = run_digits("classify", exported_onnx, array, "--output", tmp_path / "no" / "such" / "dir.csv")
    assert_one_line_error(result, 1, "dir.csv", "cannot write")
    assert run_digits("classify", exported_onnx).returncode == 2  # no INPUT: usage error


def interrupt_classify(*args, out, after_bytes: int) -> list[dict]:
    """Run `digits classify ARGS --output OUT`, press Ctrl-C (SIGINT to the process group, as a
    terminal does) once OUT holds `after_bytes`; check it stopped cleanly, return the rows written."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "digits", "classify", *map(str, args), "--output", out],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while (not out.exists() or out.stat().st_size < after_bytes) and time.monotonic() < deadline:
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "interrupted after" in stderr and "Traceback" not in stderr
    text = out.read_text()
    assert text.endswith("\n")
    return rows_of(text)


def test_interrupted_run_keeps_whole_rows(exported_onnx, small, tmp_path):
    array = tmp_path / "many.npy"
    np.save(array, np.resize(small.x_test, (20_000, 28, 28)))  # 16 MB: ~1,250 model calls at batch 16
    rows = interrupt_classify(exported_onnx, array, "--batch-size", "16", out=tmp_path / "rows.csv", after_bytes=20_000)
    assert 0 < len(rows) < 20_000
    assert all(r["source"] == f"{array}#{i}" and r["label"] != "" for i, r in enumerate(rows))


def test_classify_imports_no_tensorflow(exported_onnx, digit_folder):
    stdout, heavy = run_fresh(["classify", exported_onnx, digit_folder, "--quiet"])
    assert heavy == {"onnxruntime", "cv2"}
    assert len(rows_of(stdout)) == 12


def test_classify_help_imports_nothing_heavy():
    stdout, heavy = run_fresh(["classify", "--help"])
    assert heavy == set()
    assert "--top-k" in stdout and "Exit codes" in stdout


def test_csv_round_trips_names_with_commas_quotes_and_newlines(exported_onnx, small, tmp_path):
    names = ["plain.png", "a,b.png", 'say "hi".png', "two\nlines.png", "both, \"and\"\r\n.png"]
    for name, digit in zip(names, small.x_test):
        cv2.imwrite(str(tmp_path / "x.png"), digit)
        os.rename(tmp_path / "x.png", tmp_path / name)
    np.save(tmp_path / "odd, name.npy", small.x_test[:2])
    out = tmp_path.with_name(tmp_path.name + "-rows.csv")
    result = run_digits("classify", exported_onnx, tmp_path, "--top-k", "2", "--output", out)
    assert result.returncode == 0, result.stderr
    with open(out, newline="") as f:  # newline="": a \r\n inside a quoted field is data
        rows = list(csv.DictReader(f))
    expected = []
    for name in sorted([*names, "odd, name.npy"]):  # the folder's sorted order
        path = str(tmp_path / name)
        expected += [f"{path}#0", f"{path}#1"] if name.endswith(".npy") else [path]
    assert [r["source"] for r in rows] == expected
    by_source = {r["source"]: r for r in rows}
    for name, digit in zip(names, small.x_test):
        assert int(by_source[str(tmp_path / name)]["label"]) == onnx_labels(exported_onnx, digit[None])[0]
    assert all(r["error"] == "" and r["label_2"] != "" for r in rows)


def test_jsonl_error_rows(exported_onnx, small, tmp_path):
    cv2.imwrite(str(tmp_path / "good.png"), small.x_test[0])
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    np.save(tmp_path / "wide.npy", np.zeros((2, 30, 30), np.uint8))
    out = tmp_path / "rows.jsonl"
    result = run_digits("classify", exported_onnx, tmp_path / "good.png", tmp_path / "bad.png",
                        tmp_path / "wide.npy", tmp_path / "gone.png", "--output", out)
    assert result.returncode == 3, result.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [os.path.basename(r["source"]) for r in rows] == ["good.png", "bad.png", "wide.npy", "gone.png"]
    assert rows[0]["label"] == onnx_labels(exported_onnx, small.x_test[:1])[0] and "error" not in rows[0]
    for row, words in zip(rows[1:], ["not a decodable image", "shape (2, 30, 30)", "no such file or folder"]):
        assert row["label"] is None and row["confidence"] is None and words in row["error"], row


def _linked_pngs(folder, small, count: int, distinct: int = 50, size: int = 0):
    """`count` PNG files in sorted order, file i holding digit i % distinct (hard links keep it fast)."""
    folder.mkdir()
    originals = []
    for i in range(distinct):
        digit = small.x_test[i] if not size else cv2.resize(small.x_test[i], (size, size))
        originals.append(folder / f"original-{i:02d}.bin")
        cv2.imwrite(str(folder / "tmp.png"), digit)
        os.rename(folder / "tmp.png", originals[-1])
    paths = [folder / f"{i:06d}.png" for i in range(count)]
    for i, path in enumerate(paths):
        os.link(originals[i % distinct], path)
    return paths


@pytest.mark.parametrize("images, workers", [(768, 0), (769, 2)])
def test_workers_start_at_four_blocks(exported_onnx, small, tmp_path, images, workers):
    """docs/classify.md: 768 images (3 blocks of 256) stay in the run's own process; 769 make a
    fourth block and start the workers."""
    _linked_pngs(tmp_path / "many", small, images)
    summary = tmp_path / "summary.json"
    result = run_digits("classify", exported_onnx, tmp_path / "many", "--workers", "2", "-q",
                        "--summary-json", summary)
    assert result.returncode == 0, result.stderr
    assert json.loads(summary.read_text())["workers"] == workers


def test_worker_pool_keeps_input_order(exported_onnx, small, tmp_path):
    """With enough images, worker processes read, decode and classify; the rows still come in input order."""
    paths = _linked_pngs(tmp_path / "many", small, 3000)
    result = run_digits("classify", exported_onnx, tmp_path / "many")
    assert result.returncode == 0, result.stderr
    rows = rows_of(result.stdout)
    assert [r["source"] for r in rows] == [str(p) for p in paths]
    expected = onnx_labels(exported_onnx, small.x_test[:50])
    assert [int(r["label"]) for r in rows] == [expected[i % 50] for i in range(3000)]
    assert "3,000 items, 3,000 classified, 0 failed, 50 skipped" in result.stderr


@pytest.mark.slow
def test_interrupted_worker_pool_keeps_whole_rows_in_order(exported_onnx, small, tmp_path):
    paths = _linked_pngs(tmp_path / "many", small, 30_000, size=160)  # large: decoding takes a while
    rows = interrupt_classify(exported_onnx, tmp_path / "many", out=tmp_path / "rows.csv", after_bytes=50_000)
    assert 0 < len(rows) < 30_000
    assert [r["source"] for r in rows] == [str(p) for p in paths[: len(rows)]]
    assert all(r["label"] != "" for r in rows)


def test_empty_folder_is_said_in_the_summary(exported_onnx, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no digits here")
    result = run_digits("classify", exported_onnx, tmp_path / "empty")
    assert result.returncode == 0, result.stderr
    assert rows_of(result.stdout) == []
    assert f"note: {tmp_path / 'empty'}: no image or .npy files to classify" in result.stderr
    assert "0 items, 0 classified, 0 failed, 1 skipped" in result.stderr


POOL = ("from digits.batch.workers import WorkerPool\nfrom digits.batch.formats import RowFormat\n"
        "new_pool = lambda: WorkerPool(2, 'tests/data/mlp.onnx', 'auto', RowFormat())\n")


def test_a_worker_pool_left_open_does_not_hang_the_program_at_exit(tmp_path):
    """A program that starts the pool and never closes it (an embedding script, or a bug
    in ours) still ends: the workers ignore SIGTERM, which multiprocessing's exit sends."""
    script = POOL + "pool = new_pool()\nprint('started')\n"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30,
                            cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "started\n"


def test_a_path_too_long_to_open_is_an_error_row_among_pooled_images(exported_onnx, small, tmp_path):
    """Paths reach the worker processes through shared memory; one longer than the OS
    allows (PATH_MAX) gets the OS's reason in its row, and the rest of its block is read."""
    paths = _linked_pngs(tmp_path / "many", small, 1100)
    too_long = str(tmp_path) + ("/" + "x" * 250) * 20 + "/digit.png"  # ~5,000 bytes
    listed = [str(p) for p in paths[:500]] + [too_long] + [str(p) for p in paths[500:]]
    result = run_digits("classify", exported_onnx, "-", stdin="\n".join(listed) + "\n")
    assert result.returncode == 3, result.stderr
    rows = rows_of(result.stdout)
    assert [r["source"] for r in rows] == listed
    assert rows[500]["error"] == "is a name too long for the system, not a regular file"
    assert all(r["error"] == "" for i, r in enumerate(rows) if i != 500)


def test_worker_pool_gives_each_block_back_in_order_with_its_errors(exported_onnx, small, tmp_path):
    """The pool on its own: blocks come back in submission order whichever worker took them,
    as the rows classify_block makes in this process; a path too long for the OS gets the
    OS's reason."""
    from digits.batch.block import classify_block
    from digits.batch.formats import RowFormat
    from digits.batch.model import OnnxClassifier
    from digits.batch.workers import WorkerPool

    paths = [str(p) for p in _linked_pngs(tmp_path / "many", small, 600)]
    too_long = str(tmp_path) + ("/" + "x" * 250) * 20 + "/digit.png"
    blocks = [paths[i : i + 100] for i in range(0, 600, 100)]
    blocks[2] = blocks[2][:50] + [too_long] + blocks[2][50:]
    here = OnnxClassifier(exported_onnx)
    with contextlib.closing(WorkerPool(2, exported_onnx, "auto", RowFormat(top_k=2))) as pool:
        for block in blocks:
            pool.submit(block)
        for i, block in enumerate(blocks):
            got_paths, rows = pool.take()
            assert got_paths == block
            expected = classify_block(block, "auto", here, RowFormat(top_k=2))
            assert rows.text == expected.text and rows.per_label.tolist() == expected.per_label.tolist()
            assert rows.failed == (1 if i == 2 else 0)
            if i == 2:
                assert rows_of("source,label,confidence,label_1,prob_1,label_2,prob_2,error\n"
                               + rows.text)[50]["error"] == "cannot read: File name too long"


def test_a_worker_pool_closes_promptly_while_a_second_pool_is_open(exported_onnx, small, tmp_path):
    """An embedding program with two pools open: closing the first must not wait for the
    second pool's workers (forked later, they held the first pool's task pipe open, so the
    first pool's workers never saw end-of-file and were killed after 5 s each)."""
    from digits.batch.formats import RowFormat
    from digits.batch.workers import WorkerPool

    paths = [str(p) for p in _linked_pngs(tmp_path / "many", small, 256)]
    first = WorkerPool(2, exported_onnx, "auto", RowFormat())
    second = WorkerPool(2, exported_onnx, "auto", RowFormat())
    try:
        for pool in (first, second):
            pool.submit(paths)
            assert pool.take()[1].failed == 0
        started = time.monotonic()
        first.close()
        assert time.monotonic() - started < 3
        assert [p.exitcode for p in first._processes] == [0, 0]  # ended on their own, not killed
    finally:
        second.close()
        first.close()


def test_a_closed_worker_pool_leaves_files_opened_after_it_alone(tmp_path):
    """close() then the program's exit: the exit hook must not close the pool's pipe a second
    time, by then the number of a file the program opened (its rows were lost)."""
    script = (POOL + "pool = new_pool()\npool.close()\n"
              f"files = [open(f'{tmp_path}/{{i}}.txt', 'w') for i in range(8)]\n"
              "for f in files: f.write('rows\\n')\n")  # left for the interpreter to flush at exit
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert [(tmp_path / f"{i}.txt").read_text() for i in range(8)] == ["rows\n"] * 8


def test_a_run_stopped_early_as_a_library_call_writes_an_in_order_prefix(exported_onnx, small, tmp_path):
    """batch.api.classify with a stop callable: the run ends early, says so, and what it
    wrote is whole rows, a prefix of the uninterrupted run's, in input order."""
    from digits.batch.api import ClassifyOptions, classify

    _linked_pngs(tmp_path / "many", small, 3000)
    whole = classify(exported_onnx, [str(tmp_path / "many")], ClassifyOptions(output=tmp_path / "all.csv"))
    asked = iter(range(10**9))
    part = classify(exported_onnx, [str(tmp_path / "many")], ClassifyOptions(output=tmp_path / "part.csv"),
                    stop=lambda: next(asked) > 6)
    assert not whole.interrupted and whole.classified == 3000
    assert part.interrupted and part.classified < 3000
    done, partial = (tmp_path / "all.csv").read_text(), (tmp_path / "part.csv").read_text()
    assert partial.endswith("\n") and done.startswith(partial)
    assert len(rows_of(partial)) == part.classified


def test_workers_that_cannot_start_for_want_of_files_say_so_and_the_program_ends():
    """Under a low open-file limit (ulimit -n), at whichever step the pool runs out, the
    program gets one clear error, and ends: a worker already started used to keep it
    waiting at exit forever."""
    script = POOL + """
import os, resource
from digits.batch.workers import WorkersNotStarted
free = os.open(os.devnull, os.O_RDONLY); os.close(free)
hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
said = set()
for room in range(40, -1, -1):  # from room enough down to none
    resource.setrlimit(resource.RLIMIT_NOFILE, (free + room, hard))
    try:
        new_pool().close()
        said.add("started")
    except WorkersNotStarted as e:
        said.add(str(e))
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
print(sorted(said))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "['cannot start the worker processes: Too many open files', 'started']\n"


@pytest.fixture(scope="module")
def mixed_folder(small, tmp_path_factory):
    """Good and bad files mixed, enough images to start the workers: 2,600 PNGs in two
    folders (some 64x64 and inverted: the general decode path), corrupt, empty and
    truncated files, a FIFO, an array in between and a text file."""
    root = tmp_path_factory.mktemp("mixed")
    for folder in ("a", "b"):
        (root / folder).mkdir()
    for i in range(2600):
        digit = small.x_test[i % 200]
        if i % 7 == 3:
            digit = cv2.resize(255 - digit, (64, 64))
        cv2.imwrite(str(root / ("a" if i < 1500 else "b") / f"{i:05d}.png"), digit)
    (root / "a" / "00100.png").write_bytes(b"not a png")
    (root / "a" / "00200.png").write_bytes(b"")
    (root / "b" / "01600.png").write_bytes((root / "b" / "01601.png").read_bytes()[:40])
    (root / "b" / "01700.png").unlink()
    os.mkfifo(root / "b" / "01700.png")
    np.save(root / "a" / "00750.npy", small.x_test[:30])
    (root / "b" / "notes.txt").write_text("skip")
    return root


def test_rows_are_byte_identical_for_any_number_of_workers(exported_onnx, mixed_folder, tmp_path):
    """The run's own process (--workers 1), two workers and the default: the same bytes, in
    input order, errors included; and the summaries agree."""
    outputs, summaries = [], []
    for workers in (["--workers", "1"], ["--workers", "2"], []):
        out, summary = tmp_path / f"rows{len(outputs)}.csv", tmp_path / f"summary{len(outputs)}.json"
        result = run_digits("classify", exported_onnx, mixed_folder, "--output", out, "--summary-json", summary,
                            "--top-k", "2", *workers)
        assert result.returncode == 3, result.stderr
        outputs.append(out.read_bytes())
        summaries.append(json.loads(summary.read_text()))
    assert outputs[0] == outputs[1] == outputs[2]
    rows = rows_of(outputs[0].decode())
    assert len(rows) == 2600 + 30 and sum(r["error"] != "" for r in rows) == 4
    assert [s["workers"] for s in summaries[:2]] == [0, 2]
    not_digits = sum(r["not_digit"] == "1" for r in rows)
    assert 0 < not_digits < 30  # real digits: this model doubts a few (its threshold keeps 99% of them)
    for s in summaries:
        assert (s["items"], s["classified"], s["not_digits"] + s["blank"], s["failed"], s["skipped"]) == \
            (2630, 2626 - not_digits, not_digits, 4, 1)
        assert sum(s["per_label"].values()) == 2626 - not_digits and not s["interrupted"]


def test_summary_json_holds_what_the_summary_line_says(exported_onnx, digit_folder, tmp_path):
    summary = tmp_path / "summary.json"
    result = run_digits("classify", exported_onnx, digit_folder, "--summary-json", summary)
    assert result.returncode == 0, result.stderr
    written = json.loads(summary.read_text())
    assert {k: written[k] for k in ("items", "classified", "failed", "skipped", "kept")} == \
        {"items": 12, "classified": 12, "failed": 0, "skipped": 1, "kept": 0}
    assert f"({written['digits_per_second']:,.0f} digits/s)" in result.stderr
    per_label = "  ".join(f"{label}: {count:,}" for label, count in written["per_label"].items())
    assert f"per label: {per_label}" in result.stderr


def test_review_below_marks_rows_under_the_threshold_as_written(exported_onnx, small, tmp_path):
    """A review column: 1 where the written confidence is under P, else 0; an error row leaves
    it empty; the summary counts them. In jsonl, true/false."""
    array = tmp_path / "a.npy"
    np.save(array, small.x_test[:200])
    (tmp_path / "bad.png").write_bytes(b"junk")
    result = run_digits("classify", exported_onnx, array, tmp_path / "bad.png", "--review-below", "0.9",
                        "--summary-json", tmp_path / "s.json")
    assert result.returncode == 3, result.stderr
    rows = rows_of(result.stdout)
    assert list(rows[0]) == ["source", "label", "confidence", "review", "digit_score", "not_digit", "error"]
    assert all(r["review"] == ("1" if float(r["confidence"]) < 0.9 else "0") for r in rows[:200])
    # A not-digit row keeps its review column, but is counted as not a digit, not as to review.
    under = sum(r["review"] == "1" and r["not_digit"] == "0" for r in rows[:200])
    assert 0 < under < 200  # this model is unsure of some of these digits, sure of most
    assert rows[200]["review"] == "" and rows[200]["error"]
    assert json.loads((tmp_path / "s.json").read_text())["review"] == under
    assert f"to review: {under:,} rows under the --review-below confidence" in result.stderr
    lines = run_digits("classify", exported_onnx, array, "--review-below", "0.9", "--format", "jsonl").stdout
    assert [json.loads(line)["review"] for line in lines.splitlines()] == [r["review"] == "1" for r in rows[:200]]


def test_review_below_outside_0_1_is_a_usage_error(exported_onnx, digit_folder):
    result = run_digits("classify", exported_onnx, digit_folder, "--review-below", "1.5")
    assert_one_line_error(result, 2, "--review-below 1.5")


def test_workers_default_to_the_usable_cores_and_a_quota_caps_them(monkeypatch):
    from digits.batch import cores

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5, 6, 7})
    monkeypatch.setattr(cores, "_cgroup_quota", lambda: None)
    assert cores.usable_cores() == 8
    monkeypatch.setattr(cores, "_cgroup_quota", lambda: 2.5)  # docker --cpus 2.5
    assert cores.usable_cores() == 3
    monkeypatch.setattr(cores, "_cgroup_quota", lambda: 0.2)
    assert cores.usable_cores() == 1


def test_a_slow_model_stops_within_a_second_or_two_on_sigterm(small, tmp_path):
    """onnxruntime holds the thread that calls it: a model that takes seconds per call must not
    hold up the stop. The run ends with exit 130, whole rows, soon after the signal."""
    slow = tmp_path / "slow.onnx"
    _slow_model(slow, seconds=20)
    array = tmp_path / "a.npy"
    np.save(array, small.x_test[:4])
    proc = subprocess.Popen([sys.executable, "-m", "digits", "classify", str(slow), str(array), "--batch-size", "1"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(3)  # started, and inside the model's first call
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    assert time.monotonic() - sent < 3, "the stop waited for the model"
    assert "Traceback" not in stderr


def _slow_model(path, seconds: float) -> None:
    """A uint8 [N,28,28] -> [N,10] model that spins for about `seconds` per real digit (a Loop
    of many tiny steps, so onnxruntime is busy in C the whole time), and not at all on the
    blank digits the load probe runs: its step count is proportional to the ink."""
    per_ink = seconds * 2_600_000 / (100 * 255)  # ~2.6M steps a second; ~100 pixels of full ink a digit
    body = helper.make_graph(
        [helper.make_node("Identity", ["acc_in"], ["acc_out"]),
         helper.make_node("Identity", ["cond_in"], ["cond_out"])],
        "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("acc_in", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("acc_out", TensorProto.FLOAT, None)],
    )
    nodes = [
        helper.make_node("Cast", ["image"], ["pixels"], to=TensorProto.FLOAT),
        helper.make_node("Reshape", ["pixels", "flat"], ["rows"]),
        helper.make_node("MatMul", ["rows", "weights"], ["scores"]),
        helper.make_node("ReduceSum", ["pixels"], ["ink"], keepdims=0),
        helper.make_node("Mul", ["ink", "per_ink"], ["scaled"]),
        helper.make_node("Cast", ["scaled"], ["steps"], to=TensorProto.INT64),
        helper.make_node("Loop", ["steps", "", "scores"], ["spun"], body=body),
        helper.make_node("Softmax", ["spun"], ["probabilities"], axis=1),
    ]
    graph = helper.make_graph(
        nodes, "slow",
        [helper.make_tensor_value_info("image", TensorProto.UINT8, ["batch", 28, 28])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 10])],
        [numpy_helper.from_array(np.array([-1, 784], np.int64), "flat"),
         numpy_helper.from_array(np.full((784, 10), 1e-4, np.float32), "weights"),
         numpy_helper.from_array(np.array(per_ink, np.float32), "per_ink")],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
