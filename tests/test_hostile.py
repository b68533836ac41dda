"""Hostile and careless input (issue 12): every failure gets a clear answer.

One section per class of defect. Real files throughout: FIFOs from os.mkfifo,
/dev/full for a device that is always full, a 64 KiB tmpfs for a full disk
(mounted when the test may, skipped otherwise), names that are bytes.
"""

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.conftest import ROOT, assert_one_line_error, run_digits, run_main, save_graph


def rows_of(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


def _png(path, digit) -> None:
    with open(path, "wb") as f:  # `path` may be bytes: a name that is not UTF-8
        f.write(cv2.imencode(".png", digit)[1].tobytes())


@pytest.fixture
def tiny_disk(tmp_path):
    """A 64 KiB tmpfs: a disk that fills up. Needs root (and a kernel that allows it)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=True)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if ".partial" in p.name)


# 1. Write errors: one clear line, no torn files ------------------------------------------


def test_output_to_a_full_device_is_one_line(exported_onnx, small, tmp_path):
    array = tmp_path / "a.npy"
    np.save(array, small.x_test[:50])
    assert_one_line_error(run_digits("classify", exported_onnx, array, "--output", "/dev/full"), 1,
                          "/dev/full", "no space left")
    with open("/dev/full", "w") as full:  # rows on stdout, stdout full
        result = subprocess.run([sys.executable, "-m", "digits", "classify", str(exported_onnx), str(array)],
                                stdout=full, stderr=subprocess.PIPE, text=True, cwd=ROOT, timeout=120)
    assert_one_line_error(result, 1, "standard output", "no space left")
    assert "Exception ignored" not in result.stderr


def test_full_disk_keeps_whole_rows(exported_onnx, small, tiny_disk, tmp_path):
    array = tmp_path / "many.npy"
    np.save(array, np.tile(small.x_test, (20, 1, 1)))  # 4,000 rows: more than 64 KiB of csv
    out = tiny_disk / "rows.csv"
    assert_one_line_error(run_digits("classify", exported_onnx, array, "--output", out, "-q", "--batch-size", "64"), 1,
                          "rows.csv", "no space left")
    text = out.read_text()
    assert text.endswith("\n") and len(text.splitlines()) > 100
    assert all(len(row) == 6 for row in csv.reader(io.StringIO(text)))  # no line cut in half


@pytest.mark.tf
def test_train_and_export_on_a_full_disk_leave_nothing_behind(trained_mlp, small_npz, tiny_disk):
    result = run_digits("train", "--data", small_npz, "--epochs", "1", "--out", tiny_disk / "run", "-q")
    assert_one_line_error(result, 1, "no space left")
    assert not (tiny_disk / "run" / "model.keras").exists() and _leftovers(tiny_disk) == []
    result = run_digits("export", trained_mlp, "--out", tiny_disk / "m.onnx", "--data", small_npz, "--int8")
    assert_one_line_error(result, 1, "m.onnx", "no space left")
    assert sorted(p.name for p in tiny_disk.iterdir()) == ["run"]
    result = run_digits("demo", "--out", tiny_disk / "demo", "--data", small_npz, "--epochs", "1")
    assert_one_line_error(result, 1, "demo step failed", "no space left")
    assert _leftovers(tiny_disk) == [] and not (tiny_disk / "demo" / "train" / "model.keras").exists()


@pytest.mark.tf
def test_export_out_is_checked_before_any_work(trained_mlp, small_npz, tmp_path):
    (tmp_path / "folder").mkdir()
    start = time.perf_counter()
    assert_one_line_error(run_digits("export", trained_mlp, "--out", tmp_path / "folder"), 1,
                          "folder", "is a folder")
    assert time.perf_counter() - start < 20  # refused before Keras and the parity check


def test_atomic_path_leaves_the_old_file_or_the_new_one(tmp_path):
    from digits.core.atomic import atomic_path
    from digits.core.files import OutputError

    target = tmp_path / "model.onnx"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_path(target) as temp:
        temp.write_bytes(b"half")
        raise RuntimeError("crash mid-write")
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["model.onnx"]
    with atomic_path(target) as temp:
        temp.write_bytes(b"new")
    assert target.read_bytes() == b"new" and os.listdir(tmp_path) == ["model.onnx"]
    with pytest.raises(OutputError, match="is a folder"), atomic_path(tmp_path):
        pass


def test_closed_standard_streams(exported_onnx, small, tmp_path):
    np.save(tmp_path / "a.npy", small.x_test[:2])
    for inputs, words in (("- <&-", "standard input, which is closed"),
                          (f"{tmp_path / 'a.npy'} >&-", "standard output is closed")):
        command = f"exec {sys.executable} -m digits classify {exported_onnx} {inputs}"
        result = subprocess.run(["sh", "-c", command], capture_output=True, text=True, cwd=ROOT, timeout=120)
        assert_one_line_error(result, 2, words)


# 2. Non-regular files: FIFOs never block -------------------------------------------------


def test_fifos_are_error_rows_not_hangs(exported_onnx, small, tmp_path):
    walked = tmp_path / "walked"
    walked.mkdir()
    _png(walked / "good.png", small.x_test[0])
    os.mkfifo(walked / "pipe.png")
    os.mkfifo(tmp_path / "named.png")
    os.mkfifo(tmp_path / "named.npy")
    result = run_digits("classify", exported_onnx, tmp_path / "named.png", tmp_path / "named.npy", walked)
    assert result.returncode == 3, result.stderr
    rows = {os.path.basename(r["source"]): r for r in rows_of(result.stdout)}
    for name in ("named.png", "named.npy", "pipe.png"):
        assert "FIFO" in rows[name]["error"], rows[name]
    assert rows["good.png"]["error"] == ""


def test_fifo_as_data_or_model_is_refused(exported_onnx, tmp_path):
    os.mkfifo(tmp_path / "mnist.npz")
    os.mkfifo(tmp_path / "model.onnx")
    assert_one_line_error(run_digits("evaluate", exported_onnx, "--data", tmp_path / "mnist.npz"), 1, "FIFO")
    assert_one_line_error(run_digits("classify", tmp_path / "model.onnx", tmp_path), 1, "FIFO")


# 3. File names are bytes -----------------------------------------------------------------


def test_names_that_are_not_utf8_keep_their_block(exported_onnx, small, tmp_path):
    folder = os.fsencode(tmp_path)
    for i in range(3):
        _png(os.path.join(folder, b"ok%d.png" % i), small.x_test[i])
    _png(os.path.join(folder, b"bad\xff\xfe.png"), small.x_test[3])
    result = subprocess.run([sys.executable, "-m", "digits", "classify", str(exported_onnx), str(tmp_path)],
                            capture_output=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()[1:]
    assert len(lines) == 4
    assert any(b"bad\xff\xfe.png," in line for line in lines)  # the name's own bytes

    _png(tmp_path / "七.png", small.x_test[4])  # rows are UTF-8 whatever the locale says
    result = run_digits("classify", exported_onnx, tmp_path / "七.png", env={"PYTHONIOENCODING": "ascii"})
    assert result.returncode == 0 and "七.png" in result.stdout, result.stderr


def test_stdin_lists_keep_spaces_and_take_nul_separators(exported_onnx, small, tmp_path):
    spaced = tmp_path / " spaced name .png"
    _png(spaced, small.x_test[0])
    _png(tmp_path / "plain.png", small.x_test[1])
    result = run_digits("classify", exported_onnx, "-", stdin=f"{spaced}\n")
    assert result.returncode == 0, result.stderr
    assert [r["source"] for r in rows_of(result.stdout)] == [str(spaced)]

    listing = f"{spaced}\0{tmp_path / 'plain.png'}\0"
    for flag in ("-0", "--null"):
        result = run_digits("classify", exported_onnx, "-", flag, stdin=listing)
        assert result.returncode == 0, result.stderr
        assert len(rows_of(result.stdout)) == 2
    assert_one_line_error(run_digits("classify", exported_onnx, "-", stdin=listing), 2, "-0/--null")


# 4. .npy headers -------------------------------------------------------------------------


def _npy_bytes(array, version=(1, 0)) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, version=version)
    return buffer.getvalue()


def test_npy_headers(exported_onnx, small, tmp_path):
    digit = small.x_test[:1]
    (tmp_path / "v3.npy").write_bytes(_npy_bytes(digit, (3, 0)))
    (tmp_path / "negative.npy").write_bytes(_npy_bytes(small.x_test[:2]).replace(b"(2, 28, 28)", b"(-1, 28, 28)"))
    np.save(tmp_path / "fortran.npy", np.asfortranarray(digit))
    np.save(tmp_path / "c.npy", digit)
    result = run_digits("classify", exported_onnx, tmp_path)
    assert result.returncode == 3 and "Traceback" not in result.stderr, result.stderr
    rows = {os.path.basename(r["source"]): r for r in rows_of(result.stdout)}
    assert rows["v3.npy#0"]["label"] == rows["c.npy#0"]["label"] != ""
    assert "dimensions must be whole numbers" in rows["negative.npy"]["error"]
    assert "Fortran" in rows["fortran.npy"]["error"]  # never read transposed


# 5. Outputs over inputs ------------------------------------------------------------------


def test_outputs_never_overwrite_inputs(exported_onnx, small, tmp_path):
    array = tmp_path / "a.npy"
    np.save(array, small.x_test[:5])
    before = array.read_bytes()
    assert_one_line_error(run_digits("classify", exported_onnx, array, "--output", array), 1, "overwrite an input")
    os.link(array, tmp_path / "hard.csv")  # another name for the same file
    hard = tmp_path / "hard.csv"
    assert_one_line_error(run_digits("classify", exported_onnx, hard, "--output", hard), 1, "overwrite an input")
    assert array.read_bytes() == before


@pytest.mark.tf
def test_export_never_overwrites_its_input(trained_mlp, tmp_path):
    keras = tmp_path / "x.keras"
    keras.write_bytes(trained_mlp.read_bytes())
    assert_one_line_error(run_digits("export", keras, "--out", keras), 1, "overwrite an input")
    assert keras.read_bytes() == trained_mlp.read_bytes()


def test_a_second_run_on_the_same_output_is_refused(exported_onnx, small, tmp_path):
    from digits.core.files import open_output

    array = tmp_path / "a.npy"
    np.save(array, small.x_test[:5])
    out = tmp_path / "rows.csv"
    with open_output(out) as first:  # a run in progress holds the file
        first.write("source,label,confidence,error\nx,1,1,\n")
        first.flush()
        assert_one_line_error(run_digits("classify", exported_onnx, array, "--output", out), 1, "another run")
        assert out.read_text().endswith("x,1,1,\n")  # the first run's rows untouched
    assert run_digits("classify", exported_onnx, array, "--output", out).returncode == 0


@pytest.mark.tf
def test_a_second_train_into_the_same_folder_is_refused(small_npz, tmp_path):
    from digits.core.files import lock_folder

    lock = lock_folder(tmp_path)  # a training run in progress
    result = run_digits("train", "--data", small_npz, "--epochs", "1", "--out", tmp_path)
    assert_one_line_error(result, 1, "another run")
    lock.release()
    assert os.listdir(tmp_path) == []


# 6. Models accepted at load work at run time ---------------------------------------------


def _float_model(path, batch, logits=False, seed=0):
    """A plain float classifier (pixels/255 as [batch, 784]) with random weights."""
    weights = np.random.default_rng(seed).normal(size=(784, 10)).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["pixels", "w"], ["scores" if logits else "z"])]
    if not logits:
        nodes.append(helper.make_node("Softmax", ["z"], ["scores"]))
    graph = helper.make_graph(nodes, "plain",
                              [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, [batch, 784])],
                              [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [batch, 10])],
                              [numpy_helper.from_array(weights, "w")])
    save_graph(graph, path)
    return weights


def test_fixed_batch_and_plain_float_models_run(small, tmp_path):
    array = tmp_path / "a.npy"
    np.save(array, small.x_test[:7])
    weights = _float_model(tmp_path / "batch1.onnx", 1)
    expected = ((small.x_test[:7].reshape(7, 784) / 255.0) @ weights).argmax(axis=1).tolist()
    for command in (["classify", tmp_path / "batch1.onnx", array],
                    ["classify", tmp_path / "batch1.onnx", array, "--batch-size", "3"]):
        result = run_digits(*command)
        assert result.returncode == 0, result.stderr
        assert [int(r["label"]) for r in rows_of(result.stdout)] == expected
    _float_model(tmp_path / "plain.onnx", "N")
    result = run_digits("bench", tmp_path / "plain.onnx", "--json")
    assert result.returncode == 0, result.stderr
    assert all(rate > 0 for rate in json.loads(result.stdout)["plain.onnx"].values())


def test_a_model_that_fails_when_run_is_refused_at_load(small, tmp_path):
    # Loads (shapes check out on paper), fails on any real batch: reshapes 784 values to 3x3.
    shape = numpy_helper.from_array(np.array([-1, 3, 3], np.int64), "shape")
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["pixels", "shape"], ["r"]),
         helper.make_node("ReduceMean", ["r"], ["scores"], axes=[2], keepdims=0)], "broken",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["N", 784])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", 10])], [shape])
    save_graph(graph, tmp_path / "broken.onnx")
    np.save(tmp_path / "a.npy", small.x_test[:3])
    for command in (["classify", tmp_path / "broken.onnx", tmp_path / "a.npy"], ["bench", tmp_path / "broken.onnx"]):
        assert_one_line_error(run_digits(*command), 1, "broken.onnx")


def _keras_model(path, last_activation):
    from digits.trainer.backend import import_keras

    keras = import_keras()
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input(shape=(784,)), keras.layers.Dense(10, activation=last_activation)])
    model.save(path)
    return path


@pytest.mark.tf
def test_logits_get_a_softmax_and_sigmoids_are_refused(small, small_npz, tmp_path):
    import onnxruntime as ort

    logits = _keras_model(tmp_path / "logits.keras", None)
    result = run_digits("export", logits, "--out", tmp_path / "logits.onnx", "--data", small_npz)
    assert result.returncode == 0, result.stderr
    assert "adds a softmax" in result.stderr
    session = ort.InferenceSession(str(tmp_path / "logits.onnx"))
    probabilities, labels = session.run(["probabilities", "label"], {"image": small.x_test[:50]})
    assert np.allclose(probabilities.sum(axis=1), 1, atol=1e-5) and probabilities.min() >= 0
    assert (probabilities.argmax(axis=1) == labels).all()
    metadata = {p.key: p.value for p in onnx.load(tmp_path / "logits.onnx").metadata_props}
    assert "softmax" in metadata["softmax_added"]

    sigmoid = _keras_model(tmp_path / "sigmoid.keras", "sigmoid")
    assert_one_line_error(run_digits("export", sigmoid, "--out", tmp_path / "sigmoid.onnx", "--data", small_npz),
                          1, "do not sum to 1")
    assert not (tmp_path / "sigmoid.onnx").exists()


# 7. Early signals ------------------------------------------------------------------------


# Python's own start-up (site) comes before any of our code: the program is started
# after a line that says the interpreter is up, as the console script starts it.
START = ("import sys; print('up', flush=True); sys.argv = ['digits', *sys.argv[1:]]; "
         "from digits.cli import start; start()")


# A signal whose handler runs inside a weakref callback (an import cleaning up its module
# lock, as CI once caught it): Python swallows what the handler raises there, printing
# "Exception ignored in ..." and a traceback, and the run went on to the end (exit 0).
IN_A_CALLBACK = (
    "import signal, sys, weakref\n"
    "sys.argv = ['digits', *sys.argv[1:]]\n"
    "import digits.cli as cli\n"
    "build_app = cli.build_app\n"
    "class Lock: pass\n"
    "def cleaned_up(ref):\n"
    "    signal.raise_signal(signal.SIGINT)\n"
    "    return ref  # the handler runs here, inside the callback\n"
    "def building(only=None):\n"
    "    lock = Lock(); ref = weakref.ref(lock, cleaned_up); del lock\n"
    "    return build_app(only)\n"
    "cli.build_app = building\n"
    "cli.main()\n"
)


@pytest.mark.parametrize("command", ["classify", "inspect"])
def test_ctrl_c_inside_a_weakref_callback_still_stops_the_program(exported_onnx, small, tmp_path, command):
    np.save(tmp_path / "a.npy", np.resize(small.x_test, (60_000, 28, 28)))
    extra = [str(tmp_path / "a.npy"), "--batch-size", "1"] if command == "classify" else []
    result = subprocess.run([sys.executable, "-c", IN_A_CALLBACK, command, str(exported_onnx), *extra],
                            capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 130, result.stderr
    # Stopped at once: by the check after the command's imports, or by the run before its first block.
    assert result.stderr in ("digits: interrupted\n",) or result.stderr.startswith("interrupted after 0 items"), \
        result.stderr
    assert result.stdout == ""  # no row, no report


@pytest.mark.tf
def test_ctrl_c_inside_a_weakref_callback_stops_training_before_it_starts(small_npz, tmp_path):
    start = time.monotonic()
    result = subprocess.run([sys.executable, "-c", IN_A_CALLBACK, "train", "--data", str(small_npz), "--epochs", "50",
                             "--out", str(tmp_path / "run")], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert result.returncode == 130, result.stderr
    assert result.stderr.strip().splitlines()[-1] == "digits: interrupted"
    assert "Exception" not in result.stderr and "Traceback" not in result.stderr
    assert "Epoch 1/" not in result.stderr + result.stdout  # not one epoch was fitted
    assert time.monotonic() - start < 60


@pytest.mark.parametrize("delay", [0.03, 0.1, 0.2, 0.35, 0.5, 0.8])
def test_ctrl_c_at_any_moment_of_start_up(exported_onnx, small, tmp_path, delay):
    # 60,000 digits one at a time: seconds of work, so the signal always comes before the end.
    np.save(tmp_path / "a.npy", np.resize(small.x_test, (60_000, 28, 28)))
    process = subprocess.Popen([sys.executable, "-c", START, "classify", str(exported_onnx), str(tmp_path / "a.npy"),
                                "--batch-size", "1"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    assert process.stdout.readline() == "up\n"
    time.sleep(delay)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert "Traceback" not in stderr, stderr
    assert process.returncode == 130, (process.returncode, stderr)
    assert stderr.strip().splitlines()[-1].startswith("digits: interrupted") or "interrupted after" in stderr
    assert stdout.endswith("\n") or stdout == ""


def test_ctrl_c_while_the_list_on_stdin_is_awaited(exported_onnx):
    # The handler only records; a read of `-` that waits on its writer cannot ask, so it is interrupted.
    process = subprocess.Popen([sys.executable, "-m", "digits", "classify", str(exported_onnx), "-"], cwd=ROOT,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(3)  # started, and waiting for the list
    process.send_signal(signal.SIGINT)
    try:
        code = process.wait(timeout=10)  # the list is never ended: stdin stays open
    finally:
        process.kill()
        stdout, stderr = process.communicate()
    assert code == 130 and stderr == "digits: interrupted\n" and stdout == "", stderr


def test_sigterm_to_the_group_while_workers_decode(exported_onnx, small, tmp_path):
    for i in range(3000):  # enough images for the worker pool
        _png(tmp_path / f"{i:05d}.png", small.x_test[i % len(small.x_test)])
    for _ in range(3):
        process = subprocess.Popen([sys.executable, "-m", "digits", "classify", str(exported_onnx), str(tmp_path)],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, start_new_session=True)
        first_row = process.stdout.readline() + process.stdout.readline()  # header, then a row: workers run
        assert first_row
        os.killpg(process.pid, signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=60)
        assert b"Traceback" not in stderr and process.returncode == 130, stderr
        assert (first_row + stdout).endswith(b"\n")


@pytest.mark.tf
def test_sigterm_while_training_leaves_nothing_half_written(small_npz, tmp_path):
    out = tmp_path / "run"
    process = subprocess.Popen([sys.executable, "-m", "digits", "train", "--data", small_npz, "--epochs", "200",
                                "--out", out], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    for line in process.stderr:  # training has begun once an epoch is reported
        if line.startswith("Epoch 2"):
            break
    process.terminate()
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130 and "Traceback" not in stderr, stderr
    assert stderr.strip().endswith("digits: interrupted")
    assert os.listdir(out) == []


# 8. Walking folders ----------------------------------------------------------------------


def test_deep_folders_and_symlinks_to_siblings(exported_onnx, small, tmp_path):
    deep = tmp_path / "deep"
    path = os.fspath(deep)
    os.mkdir(path)
    for _ in range(1100):  # os.makedirs itself recurses too deep for this
        path = os.path.join(path, "d")
        os.mkdir(path)
    _png(os.path.join(path, "bottom.png"), small.x_test[0])
    try:
        result = run_digits("classify", exported_onnx, deep)
    finally:  # pytest's clean-up (shutil.rmtree) recurses too deep for this too
        os.unlink(os.path.join(path, "bottom.png"))
        while path != os.fspath(deep):
            os.rmdir(path)
            path = os.path.dirname(path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert [os.path.basename(r["source"]) for r in rows_of(result.stdout)] == ["bottom.png"]

    runs = tmp_path / "runs"
    (runs / "2024").mkdir(parents=True)
    _png(runs / "2024" / "a.png", small.x_test[1])
    (runs / "latest").symlink_to("2024")  # a sibling, not a loop
    (runs / "2024" / "back").symlink_to("..")  # a real loop
    result = run_digits("classify", exported_onnx, runs)
    rows = rows_of(result.stdout)
    sources = [os.path.relpath(r["source"], runs) for r in rows if not r["error"]]
    assert sources == ["2024/a.png", "latest/a.png"]
    loops = [r for r in rows if r["error"]]
    assert [os.path.basename(r["source"]) for r in loops] == ["back", "back"]
    assert all("symlink loop" in r["error"] for r in loops) and result.returncode == 3


# 9. Data edge cases ----------------------------------------------------------------------


def test_data_files_that_lie(exported_onnx, small, tmp_path):
    assert_one_line_error(run_digits("evaluate", exported_onnx, "--data", _no_test_digits(small, tmp_path)), 1,
                          "no test digits")

    for claimed, words in ((b"(1000000000000, 28, 28)", "more than 4 GiB"), (b"(100000, 28, 28)", "header says")):
        lying = tmp_path / "lying.npz"  # x_train's header claims far more digits than it stores
        with zipfile.ZipFile(lying, "w") as archive:
            for key, array in (("x_train", small.x_train[:10]), ("y_train", small.y_train[:10]),
                               ("x_test", small.x_test[:10]), ("y_test", small.y_test[:10])):
                data = _npy_bytes(array)
                archive.writestr(f"{key}.npy", data.replace(b"(10, 28, 28)", claimed) if key == "x_train" else data)
        assert_one_line_error(run_digits("evaluate", exported_onnx, "--data", lying), 1, "x_train", words)

    npy = tmp_path / "renamed.npz"
    np.save(tmp_path / "renamed.npy", small.x_test[:3])
    os.rename(tmp_path / "renamed.npy", npy)
    assert_one_line_error(run_digits("evaluate", exported_onnx, "--data", npy), 1, "an .npy array, not an .npz")
    noise = tmp_path / "noise.npz"
    noise.write_bytes(np.random.default_rng(0).bytes(4096))
    result = run_digits("evaluate", exported_onnx, "--data", noise)
    assert_one_line_error(result, 1, "not an .npz (zip) archive")
    assert "pickle" not in result.stderr

    idx = tmp_path / "idx"
    idx.mkdir()
    # 2**32-1 cubed overflows int64: the size check must still say "truncated".
    (idx / "train-images-idx3-ubyte").write_bytes(b"\0\0\x08\x03" + b"\xff\xff\xff\xff" * 3)
    for name in ("train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (idx / name).write_bytes(b"\0\0\x08\x01\0\0\0\0")
    assert_one_line_error(run_digits("evaluate", exported_onnx, "--data", idx), 1, "train-images", "truncated")


def _no_test_digits(small, folder: Path) -> Path:
    path = folder / "no-test.npz"
    np.savez(path, x_train=small.x_train[:50], y_train=small.y_train[:50],
             x_test=small.x_test[:0], y_test=small.y_test[:0])
    return path


@pytest.mark.tf
def test_train_refuses_data_without_test_digits_before_training(small, tmp_path):
    result = run_digits("train", "--data", _no_test_digits(small, tmp_path), "--epochs", "1", "--out", tmp_path / "r")
    assert_one_line_error(result, 1, "no test digits")
    assert not (tmp_path / "r" / "model.keras").exists()


def test_image_folder_with_a_misnamed_class(exported_onnx, small, tmp_path):
    for label in range(10):
        (tmp_path / str(label)).mkdir()
        _png(tmp_path / str(label) / "a.png", small.x_test[label])
    (tmp_path / "seven").mkdir()
    _png(tmp_path / "seven" / "b.png", small.x_test[0])
    assert_one_line_error(run_digits("evaluate", exported_onnx, "--data", tmp_path), 1, "seven/", "0..9")


@pytest.mark.tf
@pytest.mark.parametrize("shape, classes, outputs", [((28, 28, 3), 10, 1), ((784,), 5, 1), ((784,), 10, 2)])
def test_evaluate_refuses_what_export_refuses(small_npz, tmp_path, shape, classes, outputs):
    from digits.trainer.backend import import_keras

    keras = import_keras()
    inputs = keras.Input(shape=shape)
    flat = keras.layers.Flatten()(inputs)
    heads = [keras.layers.Dense(classes, activation="softmax")(flat) for _ in range(outputs)]
    keras.Model(inputs, heads if outputs > 1 else heads[0]).save(tmp_path / "odd.keras")
    assert_one_line_error(run_digits("evaluate", tmp_path / "odd.keras", "--data", small_npz), 1, "odd.keras")


# 10. Small ones --------------------------------------------------------------------------


def test_progress_bar_never_lands_in_the_rows(exported_onnx, small, tmp_path):
    np.save(tmp_path / "a.npy", small.x_test[:20])
    result = run_digits("classify", exported_onnx, tmp_path / "a.npy", "--progress")
    assert result.returncode == 0
    assert result.stdout.splitlines() == [line for line in result.stdout.splitlines() if line and "\x1b" not in line]
    assert len(rows_of(result.stdout)) == 20 and not result.stdout.endswith("\n\n")


def test_help_keeps_brackets():
    result = run_digits("classify", "--help", env={"COLUMNS": "200"})
    assert "[batch,784]" in result.stdout and "[batch,28,28(,1)]" in result.stdout


def test_typer_does_not_pre_check_model_files(exported_onnx, small, tmp_path, monkeypatch, capsys):
    # Root reads any file, so an unreadable model is simulated where Typer used to look:
    # os.access. The command's own check decides (exit 1 with its reason), not a usage error.
    np.save(tmp_path / "a.npy", small.x_test[:2])
    monkeypatch.setattr(os, "access", lambda *args, **kwargs: False)
    code, out, err = run_main(["classify", exported_onnx, tmp_path / "a.npy"], capsys)
    assert code == 0, err
    code, out, err = run_main(["classify", tmp_path, tmp_path / "a.npy"], capsys)
    assert code == 1 and "is a folder, not a model file" in err


def test_jpeg_with_data_after_its_end(exported_onnx, small, tmp_path):
    digit = cv2.resize(small.x_test[0], (112, 112))
    jpeg = cv2.imencode(".jpg", digit)[1].tobytes()
    (tmp_path / "motion.jpg").write_bytes(jpeg + b"\0\0\0\x18ftypmp42" + bytes(range(256)) * 64)
    (tmp_path / "plain.jpg").write_bytes(jpeg)
    (tmp_path / "cut.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    result = run_digits("classify", exported_onnx, tmp_path)
    rows = {os.path.basename(r["source"]): r for r in rows_of(result.stdout)}
    assert rows["motion.jpg"]["error"] == "" and rows["motion.jpg"]["label"] == rows["plain.jpg"]["label"]
    assert "truncated JPEG" in rows["cut.jpg"]["error"]
