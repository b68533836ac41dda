"""Hostile and careless input, round two (issue 21): the batch runner's classes.

One section per class of the issue, numbered as there. Each test failed before
its fix. Real processes, pipes, signals and files throughout.
"""

import csv
import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from digits.core.errors import EXIT_INTERRUPTED
from tests.conftest import ROOT, assert_one_line_error, run_digits, save_graph


def rows_of(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


def _png(path, digit) -> None:
    cv2.imwrite(str(path), digit)


def _digits_process(*args, **popen) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "digits", *map(str, args)], cwd=ROOT, **popen)


# 1. A signal during a piped run loses no row -----------------------------------------------


def test_sigterm_while_rows_go_to_a_slow_pipe_loses_no_row(exported_onnx, tmp_path):
    """The reader takes 4 KiB every 5 ms, far slower than the rows come, so the
    signal lands while a block's write waits on the pipe: the write is cut short,
    and before the fix the rest of the block was dropped (rows missing, two rows
    glued into one line)."""
    array = tmp_path / "big.npy"
    np.save(array, np.random.default_rng(0).integers(0, 256, (100_000, 28, 28), dtype=np.uint8))
    process = _digits_process("classify", exported_onnx, array, "--batch-size", "4096", "-q",
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    chunks, start, sent = [], time.monotonic(), False
    while chunk := os.read(process.stdout.fileno(), 4096):
        chunks.append(chunk)
        time.sleep(0.005)
        if not sent and time.monotonic() - start > 1.5:
            process.send_signal(signal.SIGTERM)
            sent = True
    assert process.wait(timeout=60) == EXIT_INTERRUPTED, process.stderr.read()
    lines = b"".join(chunks).decode().splitlines()
    assert lines[0] == "source,label,confidence,digit_score,not_digit,error"
    rows = [line.split(",") for line in lines[1:]]
    assert rows and all(len(row) == 6 for row in rows)  # no two rows glued into one line
    numbers = [int(row[0].rpartition("#")[2]) for row in rows]
    assert numbers == list(range(len(numbers)))  # none missing from the middle


def test_a_second_signal_stops_a_write_that_waits_on_its_reader(exported_onnx, small, tmp_path):
    """The first signal is only recorded: the run stops after the block in hand, whose write
    waits on a reader that takes nothing. The second stops the program there, exit 130."""
    array = tmp_path / "big.npy"
    np.save(array, np.resize(small.x_test, (20_000, 28, 28)))
    process = _digits_process("classify", exported_onnx, array, "-q", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = process.stdout.read(100)  # rows come; then nothing is read, and the pipe fills
    time.sleep(3)
    process.send_signal(signal.SIGTERM)
    time.sleep(2)
    assert process.poll() is None  # recorded, the block's write still waits
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == EXIT_INTERRUPTED
    stderr = process.stderr.read().decode()
    assert first.startswith(b"source,") and stderr == "digits: interrupted\n", stderr


# 2 and 6. Every model output is checked, on the probe and on every call --------------------


def _uint8_model(path, tail, outputs, batch="N"):
    """A uint8 [batch, 28, 28] model: `z` = (pixels / 255) @ W (logits, [batch, 10]), then the
    nodes `tail` make the `outputs` ((name, elem type, shape) each) from it."""
    weights = np.random.default_rng(0).normal(size=(784, 10)).astype(np.float32)
    nodes = [helper.make_node("Cast", ["image"], ["f"], to=TensorProto.FLOAT),
             helper.make_node("Div", ["f", "scale"], ["g"]),
             helper.make_node("Reshape", ["g", "flat"], ["pixels"]),
             helper.make_node("MatMul", ["pixels", "w"], ["z"]), *tail]
    constants = [numpy_helper.from_array(weights, "w"), numpy_helper.from_array(np.float32(255), "scale"),
                 numpy_helper.from_array(np.array([-1, 784], np.int64), "flat"),
                 numpy_helper.from_array(np.array([0], np.int64), "zero"),
                 numpy_helper.from_array(np.array([8], np.int64), "eight"),
                 numpy_helper.from_array(np.float32(2), "two")]
    graph = helper.make_graph(nodes, "m", [helper.make_tensor_value_info("image", TensorProto.UINT8, [batch, 28, 28])],
                              [helper.make_tensor_value_info(n, t, s) for n, t, s in outputs], constants)
    save_graph(graph, path)
    return weights


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


FLOAT, INT64, STRING = TensorProto.FLOAT, TensorProto.INT64, TensorProto.STRING
SOFTMAX = helper.make_node("Softmax", ["z"], ["probabilities"])


def test_a_model_that_returns_fewer_rows_than_digits_is_refused(small, tmp_path):
    # Passes a probe of a few digits (it caps its answer at 8 rows), not a block of 200.
    _uint8_model(tmp_path / "capped.onnx", [helper.make_node("Softmax", ["z"], ["s"]),
                                            helper.make_node("Slice", ["s", "zero", "eight"], ["probabilities"])],
                 [("probabilities", FLOAT, ["M", 10])])
    np.save(tmp_path / "a.npy", small.x_test[:200])
    folder = tmp_path / "scans"
    folder.mkdir()
    for i, digit in enumerate(small.x_test[:20]):
        _png(folder / f"{i:03}.png", digit)
    for inputs in (tmp_path / "a.npy", folder):
        assert_one_line_error(run_digits("classify", tmp_path / "capped.onnx", inputs, "-q"), 1,
                              "capped.onnx", "[8, 10] for 20", "one row per digit")


@pytest.mark.parametrize("case", ["two outputs", "nan", "negative", "above one", "int64", "string", "logits named"])
def test_outputs_that_break_the_contract_are_refused(small, tmp_path, case):
    tails = {
        # Two [batch, 10] outputs, neither named probabilities: the first (logits) was taken.
        "two outputs": ([helper.make_node("Softmax", ["z"], ["p"]), helper.make_node("Identity", ["z"], ["q"])],
                        [("q", FLOAT, ["N", 10]), ("p", FLOAT, ["N", 10])], "several [batch,10] outputs (q, p)"),
        "nan": ([helper.make_node("Softmax", ["z"], ["s"]), helper.make_node("Log", ["s"], ["l"]),
                 helper.make_node("Sqrt", ["l"], ["probabilities"])],
                [("probabilities", FLOAT, ["N", 10])], "NaN"),
        "negative": ([helper.make_node("Softmax", ["z"], ["s"]), helper.make_node("Neg", ["s"], ["probabilities"])],
                     [("probabilities", FLOAT, ["N", 10])], "not a probability distribution"),
        "above one": ([helper.make_node("Softmax", ["z"], ["s"]),
                       helper.make_node("Mul", ["s", "two"], ["probabilities"])],
                      [("probabilities", FLOAT, ["N", 10])], "not a probability distribution"),
        "int64": ([helper.make_node("Cast", ["z"], ["probabilities"], to=INT64)],
                  [("probabilities", INT64, ["N", 10])], "must be float"),
        "string": ([helper.make_node("Cast", ["z"], ["probabilities"], to=STRING)],
                   [("probabilities", STRING, ["N", 10])], "must be float"),
        # An output named `probabilities` is held to its name: logits there are refused, not guessed at.
        "logits named": ([helper.make_node("Identity", ["z"], ["probabilities"])],
                         [("probabilities", FLOAT, ["N", 10])], "not a probability distribution"),
    }
    tail, outputs, words = tails[case]
    _uint8_model(tmp_path / "m.onnx", tail, outputs)
    np.save(tmp_path / "a.npy", small.x_test[:20])
    for command in (["classify", tmp_path / "m.onnx", tmp_path / "a.npy"], ["bench", tmp_path / "m.onnx"]):
        assert_one_line_error(run_digits(*command), 1, "m.onnx", words)


def test_an_output_is_picked_by_name_and_logits_get_a_softmax(small, tmp_path):
    np.save(tmp_path / "a.npy", small.x_test[:50])
    # Logits first, then `probabilities`: the name decides.
    weights = _uint8_model(tmp_path / "named.onnx", [helper.make_node("Identity", ["z"], ["logits"]), SOFTMAX],
                           [("logits", FLOAT, ["N", 10]), ("probabilities", FLOAT, ["N", 10])])
    expected = _softmax((small.x_test[:50].reshape(50, 784) / np.float32(255)) @ weights)
    # A uint8-input model whose one output is logits, not named `probabilities`: it gets a softmax.
    _uint8_model(tmp_path / "logits.onnx", [helper.make_node("Identity", ["z"], ["scores"])],
                 [("scores", FLOAT, ["N", 10])])
    for model in ("named.onnx", "logits.onnx"):
        result = run_digits("classify", tmp_path / model, tmp_path / "a.npy", "--top-k", "10", "-q")
        assert result.returncode == 0, result.stderr
        rows = rows_of(result.stdout)
        assert [int(r["label"]) for r in rows] == expected.argmax(axis=1).tolist()
        confidence = np.array([float(r["confidence"]) for r in rows])
        assert np.allclose(confidence, expected.max(axis=1), atol=2e-6)
        assert all(abs(sum(float(r[f"prob_{k}"]) for k in range(1, 11)) - 1) < 1e-4 for r in rows)


# 3. A .npy cut short while it is read keeps every row before the cut -----------------------


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_an_array_truncated_while_read_keeps_the_rows_before_the_cut(exported_onnx, small, tmp_path, dtype):
    """The file is whole when its header is checked, and cut to 5,000 rows just as the
    rows are read (the run asks `stop` before each chunk: that is where it is cut).
    Chunks already in the model (two calls side by side) lost their rows, up to
    2 x --batch-size, and the error row named another cut than the last row."""
    from digits.batch.formats import RowFormat
    from digits.batch.inputs import ArrayItem
    from digits.batch.model import OnnxClassifier
    from digits.batch.run import classify
    from digits.batch.writer import RowWriter

    array = tmp_path / "a.npy"
    digits = np.tile(small.x_test, (40, 1, 1))[:8000]
    np.save(array, digits if dtype == np.uint8 else digits.astype(dtype) / 255)
    header = array.stat().st_size - digits.size * np.dtype(dtype).itemsize
    asked = []

    def stop():
        asked.append(1)
        if len(asked) == 4:  # the third chunk is about to be read
            os.truncate(array, header + 5000 * 784 * np.dtype(dtype).itemsize)
        return False

    out = io.StringIO()
    summary = classify([ArrayItem(str(array))], OnnxClassifier(exported_onnx, threads=1), RowWriter(out, RowFormat()),
                       batch_size=1024, model_calls=2, stop=stop)
    rows = rows_of(out.getvalue())
    assert [r["source"] for r in rows[:-1]] == [f"{array}#{i}" for i in range(5000)]
    assert rows[-1]["source"] == str(array)
    assert rows[-1]["error"] == "truncated while being read: the file ends at row 5,000 of the header's 8,000"
    assert (summary.classified, summary.failed) == (5000, 1)


# 26. Messages that say what is so ----------------------------------------------------------


def test_a_float_just_above_one_is_not_shown_as_one(exported_onnx, tmp_path):
    values = np.zeros((2, 28, 28), np.float32)
    values[1, 3, 3] = np.nextafter(np.float32(1), np.float32(2))  # 1.0000001
    np.save(tmp_path / "f.npy", values)
    result = run_digits("classify", exported_onnx, tmp_path / "f.npy")
    assert result.returncode == 3
    assert "found 0.0..1.0000001192092896" in rows_of(result.stdout)[0]["error"]


# 4, 9, 15. --resume continues only its own file, matches what paths name, never blocks -----


@pytest.mark.parametrize("name, text", [("note.csv", "remember to back up the scans"),
                                        ("rows.jsonl", '{"job": 7, "state": "done"}'),
                                        ("other.csv", "id,value\n1,2\n3")])
def test_resume_leaves_a_file_it_did_not_write_untouched(exported_onnx, small, tmp_path, name, text):
    np.save(tmp_path / "a.npy", small.x_test[:5])
    out = tmp_path / name
    out.write_text(text)
    assert_one_line_error(run_digits("classify", exported_onnx, tmp_path / "a.npy", "-o", out, "--resume"), 1,
                          name, "cannot resume")
    assert out.read_text() == text


def test_resume_matches_what_paths_name_not_how_they_are_typed(exported_onnx, small, tmp_path):
    folder = tmp_path / "scans"
    folder.mkdir()
    for i, digit in enumerate(small.x_test[:30]):
        _png(folder / f"{i:02}.png", digit)
    np.save(folder / "more.npy", small.x_test[30:60])
    (tmp_path / "alias").symlink_to("scans")
    out = tmp_path / "rows.csv"
    assert run_digits("classify", exported_onnx, "scans", "-o", out, cwd=tmp_path).returncode == 0
    lines = out.read_text().splitlines(keepends=True)
    assert len(lines) == 61
    for typed in ("./scans/", str(folder), "alias", "scans//"):
        out.write_text("".join(lines[:11] + lines[35:45]))  # 10 images and 10 array rows done
        result = run_digits("classify", exported_onnx, typed, "-o", out, "--resume", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert "40 items" in result.stderr, (typed, result.stderr)
        assert len(out.read_text().splitlines()) == 61


def test_an_input_named_twice_resumes_to_the_rows_of_one_run(exported_onnx, small, tmp_path):
    np.save(tmp_path / "a.npy", small.x_test[:20])
    _png(tmp_path / "b.png", small.x_test[0])
    inputs = ["a.npy", "b.png", "./a.npy", "b.png"]
    out = tmp_path / "rows.csv"
    assert run_digits("classify", exported_onnx, *inputs, "-o", out, cwd=tmp_path).returncode == 0
    clean = out.read_text()
    lines = clean.splitlines(keepends=True)
    assert len(lines) == 1 + 42
    for cut in (5, 21, 22, 30):
        out.write_text("".join(lines[: 1 + cut]))
        result = run_digits("classify", exported_onnx, *inputs, "-o", out, "--resume", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert out.read_text() == clean, cut


def test_resume_into_a_fifo_is_refused_at_once(exported_onnx, small, tmp_path):
    np.save(tmp_path / "a.npy", small.x_test[:5])
    os.mkfifo(tmp_path / "rows.csv")
    assert_one_line_error(run_digits("classify", exported_onnx, tmp_path / "a.npy", "-o", tmp_path / "rows.csv",
                                     "--resume"), 1, "rows.csv", "cannot resume", "FIFO")


# 10. A run never reads its own output ------------------------------------------------------


@pytest.mark.parametrize("name", ["rows.png", "rows.npy", "deeper/rows.npy"])
def test_an_output_inside_an_input_folder_is_not_walked(exported_onnx, small, tmp_path, name):
    folder = tmp_path / "scans"
    (folder / "deeper").mkdir(parents=True)
    for i, digit in enumerate(small.x_test[:12]):
        _png(folder / f"{i:02}.png", digit)
    out = folder / name
    for _ in range(2):  # and again, over the first run's rows
        result = run_digits("classify", exported_onnx, "scans", "-o", out, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert [r["source"] for r in rows_of(out.read_text())] == [f"scans/{i:02}.png" for i in range(12)]
    # Through a symlinked folder too, and with --resume.
    (tmp_path / "alias").symlink_to("scans")
    result = run_digits("classify", exported_onnx, "scans", "-o", tmp_path / "alias" / name, "--resume", cwd=tmp_path)
    assert result.returncode == 0 and "0 items" in result.stderr, result.stderr


def test_an_array_where_the_output_would_go_is_not_written_over(exported_onnx, small, tmp_path):
    folder = tmp_path / "scans"
    folder.mkdir()
    np.save(folder / "keep.npy", small.x_test[:3])
    before = (folder / "keep.npy").read_bytes()
    assert_one_line_error(run_digits("classify", exported_onnx, folder, "-o", folder / "keep.npy"), 1,
                          "overwrite an input")
    assert (folder / "keep.npy").read_bytes() == before


# 17, 18, 19. Closed streams and tight limits: one line, the right exit code, every command --


def test_with_stderr_closed_rows_are_whole_and_nothing_else_lands_in_them(exported_onnx, small, tmp_path):
    np.save(tmp_path / "a.npy", small.x_test[:5])
    out = tmp_path / "rows.csv"
    out.write_text("old rows\n")

    def run(arguments: str) -> subprocess.CompletedProcess:
        command = f"exec {sys.executable} -m digits {arguments} 2>&-"
        return subprocess.run(["sh", "-c", command], capture_output=True, text=True, cwd=tmp_path, timeout=120)

    result = run(f"classify {exported_onnx} a.npy missing.png -o rows.csv")
    assert result.returncode == 3 and result.stdout == ""
    rows = rows_of(out.read_text())
    assert [r["source"] for r in rows] == [f"a.npy#{i}" for i in range(5)] + ["missing.png"]
    result = run(f"classify {exported_onnx} a.npy missing.png")  # rows on stdout: no message among them
    assert result.returncode == 3 and result.stdout == out.read_text()
    result = run(f"classify {tmp_path / 'nothing.onnx'} a.npy -o rows.csv")  # fatal: the output is left alone
    assert result.returncode == 1 and result.stdout == "" and rows_of(out.read_text())[-1]["source"] == "missing.png"


@pytest.mark.parametrize("command", ["evaluate", "evaluate --json", "inspect", "classify", "bench"])
def test_a_closed_pipe_on_stdout_is_one_line_in_every_command(exported_onnx, small_npz, small, tmp_path, command):
    np.save(tmp_path / "a.npy", small.x_test[:50])
    extra = {"evaluate": ["--data", small_npz], "evaluate --json": ["--data", small_npz, "--json"],
             "classify": [tmp_path / "a.npy"], "inspect": [], "bench": []}[command]
    # The reader is gone before the first write (`| head -0`): every write finds the pipe closed.
    process = _digits_process(*command.split()[:1], exported_onnx, *extra, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    process.stdout.close()
    stderr = process.stderr.read()
    assert process.wait(timeout=300) == 1, stderr
    assert stderr.splitlines() == ["digits: error: standard output: cannot write (the reader closed it (broken pipe))"]


# A C++ runtime that ends the process itself (docs/reliability.md's one exception): its own words, nothing of ours.
RUNTIME_ABORTS = {-signal.SIGABRT: ["terminate called after throwing an instance of 'std::bad_alloc'",
                                    "  what():  std::bad_alloc"],
                  127: ["cannot allocate memory for thread-local data: ABORT"]}


def test_a_tight_memory_limit_is_one_line_not_a_traceback(exported_onnx, small, tmp_path):
    import resource

    folder = tmp_path / "scans"
    folder.mkdir()
    for i, digit in enumerate(np.resize(small.x_test, (1200, 28, 28))):  # enough for decoder workers
        _png(folder / f"{i:04}.png", digit)
    np.save(tmp_path / "a.npy", np.resize(small.x_test, (20_000, 28, 28)))
    outcomes = {}
    for megabytes in (80, 120, 140, 180, 240, 300, 340, 360, 400, 500):
        limit = megabytes * 2**20
        result = subprocess.run(
            [sys.executable, "-m", "digits", "classify", exported_onnx, folder, tmp_path / "a.npy", "-q",
             "-o", tmp_path / "rows.csv"], capture_output=True, text=True, cwd=ROOT, timeout=300,
            preexec_fn=lambda limit=limit: resource.setrlimit(resource.RLIMIT_AS, (limit, limit)))
        outcomes[megabytes] = result.returncode
        if result.returncode in RUNTIME_ABORTS:
            lines = result.stderr.splitlines()
            assert len(lines) == len(RUNTIME_ABORTS[result.returncode]), result.stderr
            assert all(line.endswith(words) for line, words in zip(lines, RUNTIME_ABORTS[result.returncode])), \
                result.stderr
        elif result.returncode:
            assert_one_line_error(result, 1, "ulimit -v", f"{megabytes} MiB")
            assert result.stderr.count("\n") == 1, result.stderr
    assert outcomes[80] == 1  # under the floor: refused at start
    assert sum(code == 1 for code in outcomes.values()) > 3, outcomes  # the limits did bite, mostly in our words


# 25. No library noise on stderr ----------------------------------------------------------


def _corrupt_pngs(folder: Path) -> None:
    """PNGs with one byte flipped, or cut short, at every few bytes: libpng prints
    "libpng error: ..." for most of them."""
    image = cv2.imencode(".png", np.random.default_rng(0).integers(0, 256, (60, 60), dtype=np.uint8))[1].tobytes()
    for i in range(8, len(image), 11):
        flipped = bytearray(image)
        flipped[i] ^= 0x55
        (folder / f"c{i:05}.png").write_bytes(bytes(flipped))
    for n in range(20, len(image), 97):
        (folder / f"t{n:05}.png").write_bytes(image[:n])


@pytest.mark.parametrize("decoders", ["in process", "workers"])
def test_corrupt_pngs_give_error_rows_and_no_libpng_lines(exported_onnx, small, tmp_path, decoders):
    folder = tmp_path / "scans"
    folder.mkdir()
    _corrupt_pngs(folder)
    if decoders == "workers":  # enough images that the run starts decoder processes
        for i, digit in enumerate(np.resize(small.x_test, (1100, 28, 28))):
            _png(folder / f"g{i:04}.png", digit)
    result = run_digits("classify", exported_onnx, folder, "-q", "-o", tmp_path / "rows.csv")
    assert result.returncode == 3
    assert result.stderr == ""
    assert sum(1 for r in rows_of((tmp_path / "rows.csv").read_text()) if r["error"]) > 100


def test_onnxruntime_writes_nothing_under_home_and_says_nothing(exported_onnx, small, tmp_path):
    np.save(tmp_path / "a.npy", small.x_test[:5])
    home = tmp_path / "home"
    home.mkdir()
    result = run_digits("classify", exported_onnx, tmp_path / "a.npy", "-q", env={"HOME": str(home)})
    assert result.returncode == 0 and result.stderr == ""
    assert list(home.iterdir()) == []
    # A HOME nothing can be written under (even by root): no coloured telemetry warning.
    result = run_digits("classify", exported_onnx, tmp_path / "a.npy", "-q", env={"HOME": "/proc/self"})
    assert result.returncode == 0 and result.stderr == ""


def test_a_model_failing_at_run_time_is_our_one_line_only(small, tmp_path):
    # Loads, fails on any batch: gathers columns 990..999 of 784. onnxruntime logs that
    # failure itself, in red, before raising it.
    indices = numpy_helper.from_array(np.arange(990, 1000, dtype=np.int64), "indices")
    graph = helper.make_graph([helper.make_node("Gather", ["pixels", "indices"], ["scores"], axis=1)], "broken",
                              [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["N", 784])],
                              [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", 10])], [indices])
    save_graph(graph, tmp_path / "broken.onnx")
    np.save(tmp_path / "a.npy", small.x_test[:3])
    result = run_digits("classify", tmp_path / "broken.onnx", tmp_path / "a.npy")
    assert_one_line_error(result, 1, "broken.onnx", "out of data bounds")
    assert len(result.stderr.splitlines()) == 1, result.stderr  # no red [E:onnxruntime] line before ours


def _without_root_reads(command: list) -> list:
    """`command` run as root without the capabilities that let root read any file, so
    that a file's mode bites as it does for any user."""
    import shutil

    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv to take away root's reading of every file")
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search", *map(str, command)]


@pytest.mark.parametrize("command", ["classify", "inspect", "bench", "evaluate"])
def test_an_unreadable_model_says_permission_denied(exported_onnx, small, small_npz, tmp_path, command):
    model = tmp_path / "m.onnx"
    model.write_bytes(exported_onnx.read_bytes())
    model.chmod(0)
    np.save(tmp_path / "a.npy", small.x_test[:3])
    extra = {"classify": [tmp_path / "a.npy"], "evaluate": ["--data", small_npz]}.get(command, [])
    result = subprocess.run(_without_root_reads([sys.executable, "-m", "digits", command, model, *extra]),
                            capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert_one_line_error(result, 1, "m.onnx", "cannot read the model file (permission denied)")


@pytest.mark.parametrize("name", ["newdir/", "rows/", ".", "rows/.."])
def test_an_output_named_as_a_folder_is_refused(exported_onnx, small, tmp_path, name):
    np.save(tmp_path / "a.npy", small.x_test[:3])
    assert_one_line_error(run_digits("classify", exported_onnx, "a.npy", "-o", name, cwd=tmp_path), 1,
                          name, "names a folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npy"]
    assert_one_line_error(run_digits("export", "missing.keras", "--out", name, cwd=tmp_path), 1, "names a folder")
