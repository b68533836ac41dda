"""Hostile and careless input, round three (issue 27), one section per class.

Each test failed before its fix. Real processes, pipes, links and files throughout.
"""

import json
import os

import numpy as np
import pytest

from tests.conftest import assert_one_line_error, run_digits


def _arrays(folder, *names) -> None:
    for name in names:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, np.zeros((2, 28, 28), np.uint8))


# 2. No output is ever one of the run's inputs, however either was named ---------------------


def test_output_named_only_on_stdin_is_refused_before_truncating(exported_onnx, tmp_path):
    _arrays(tmp_path, "data.npy")
    before = (tmp_path / "data.npy").read_bytes()
    result = run_digits("classify", exported_onnx, "-", "-o", "data.npy", stdin="data.npy\n", cwd=tmp_path)
    assert_one_line_error(result, 1, "data.npy", "overwrite an input")
    assert (tmp_path / "data.npy").read_bytes() == before


@pytest.mark.parametrize("summary", ["rows.csv", "./sub/../rows.csv"])
def test_summary_json_and_output_naming_one_file_are_refused(exported_onnx, tmp_path, summary):
    _arrays(tmp_path, "data.npy")
    (tmp_path / "sub").mkdir()
    result = run_digits("classify", exported_onnx, "data.npy", "-o", "rows.csv", "--summary-json", summary,
                        cwd=tmp_path)
    assert_one_line_error(result, 1, "--output and --summary-json name the same file")
    assert not (tmp_path / "rows.csv").exists()


@pytest.mark.parametrize("how", ["named", "stdin", "walked", "walked via stdin"])
def test_summary_json_over_an_input_is_refused(exported_onnx, tmp_path, how):
    _arrays(tmp_path, "scans/digits.npy")
    before = (tmp_path / "scans" / "digits.npy").read_bytes()
    arg, stdin = {"named": ("scans/digits.npy", None), "stdin": ("-", "scans/digits.npy\n"),
                  "walked": ("scans", None), "walked via stdin": ("-", "scans\n")}[how]
    result = run_digits("classify", exported_onnx, arg, "-o", "rows.csv", "--summary-json", "scans/digits.npy",
                        stdin=stdin, cwd=tmp_path)
    assert_one_line_error(result, 1, "--summary-json would overwrite an input")
    assert (tmp_path / "scans" / "digits.npy").read_bytes() == before
    assert not (tmp_path / "rows.csv").exists()  # refused before anything was written


def test_output_through_a_symlink_to_a_stdin_input_is_refused(exported_onnx, tmp_path):
    _arrays(tmp_path, "data.npy")
    os.symlink("data.npy", tmp_path / "link.npy")
    result = run_digits("classify", exported_onnx, "-", "-o", "link.npy", stdin="data.npy\n", cwd=tmp_path)
    assert_one_line_error(result, 1, "overwrite an input")


def test_stdin_list_still_classifies_and_summary_lands(exported_onnx, tmp_path):
    _arrays(tmp_path, "a.npy", "b.npy")
    result = run_digits("classify", exported_onnx, "-", "-o", "rows.csv", "--summary-json", "s.json", "-q",
                        stdin="a.npy\nb.npy\n", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "s.json").read_text())["blank"] == 4  # _arrays' digits are zeros


@pytest.mark.slow
@pytest.mark.ray
def test_ray_engine_compares_stdin_inputs_with_every_output(exported_onnx, tmp_path):
    _arrays(tmp_path, "data.npy")
    before = (tmp_path / "data.npy").read_bytes()
    for extra in (["-o", "data.npy"], ["-o", "rows.csv", "--summary-json", "data.npy"]):
        result = run_digits("classify", exported_onnx, "-", "--engine", "ray", *extra, stdin="data.npy\n",
                            cwd=tmp_path)
        assert_one_line_error(result, 1, "overwrite an input")
        assert (tmp_path / "data.npy").read_bytes() == before


# 3. --resume reads `#<digits>` back as an array's row only for an array --------------------


def test_resume_keeps_images_whose_names_end_in_hash_digits(exported_onnx, tmp_path, sample):
    import cv2

    names = ["scan#1", "page.png#2", "a.npy#3", "plain.png"]
    for i, name in enumerate(names):
        ok, png = cv2.imencode(".png", sample.x_test[i])
        (tmp_path / name).write_bytes(png.tobytes())
    _arrays(tmp_path, "d.npy")
    args = ("classify", exported_onnx, *names, "d.npy", "-o", "rows.csv", "-q")
    first = run_digits(*args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    written = (tmp_path / "rows.csv").read_text()
    assert written.count("\n") == 1 + len(names) + 2
    for _ in range(2):
        again = run_digits(*args, "--resume", cwd=tmp_path)
        assert again.returncode == 0, again.stderr
        assert (tmp_path / "rows.csv").read_text() == written  # nothing classified or appended again


# 4. Atomic writes go through symlinks and stream into special files ------------------------


def test_atomic_write_through_a_symlink_keeps_the_link(tmp_path):
    from digits.core.atomic import atomic_folder_files, atomic_path

    (tmp_path / "real").mkdir()
    os.symlink("real/a.json", tmp_path / "a.json")
    os.symlink("real/b.json", tmp_path / "b.json")  # broken until written
    (tmp_path / "real" / "a.json").write_text("old")
    with atomic_path(tmp_path / "a.json") as temp:
        temp.write_text("new")
    with atomic_folder_files({"b": tmp_path / "b.json"}) as temps:
        temps["b"].write_text("set")
    assert os.path.islink(tmp_path / "a.json") and os.path.islink(tmp_path / "b.json")
    assert (tmp_path / "real" / "a.json").read_text() == "new"
    assert (tmp_path / "real" / "b.json").read_text() == "set"
    assert sorted(os.listdir(tmp_path / "real")) == ["a.json", "b.json"]  # no temporary left


def test_atomic_write_to_a_fifo_streams_into_it(tmp_path):
    import threading

    from digits.core.atomic import atomic_path

    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_text()))
    reader.start()
    with atomic_path(fifo) as temp:
        temp.write_text("streamed")
    reader.join(timeout=10)
    assert got == ["streamed"] and fifo.is_fifo()
    assert os.listdir(tmp_path) == ["pipe.json"]


@pytest.mark.parametrize("form", ["/dev/fd/{}", "/proc/self/fd/{}"])
def test_atomic_write_to_our_own_descriptor_writes_to_it(form, tmp_path):
    from digits.core.atomic import atomic_path

    read, write = os.pipe()
    try:
        with atomic_path(form.format(write)) as temp:
            temp.write_text("through the descriptor")
        os.close(write)
        assert os.read(read, 100) == b"through the descriptor"
    finally:
        os.close(read)


def test_summary_json_to_proc_self_stdout_lands_in_the_redirected_file(exported_onnx, tmp_path):
    """`--summary-json /dev/stdout > s.json`, with /proc/self/fd/1 for /dev/stdout: a rename
    there would have replaced s.json's inode and lost it from the shell's redirection."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    _arrays(tmp_path, "d.npy")
    with open(tmp_path / "s.json", "w") as out:
        result = subprocess.run([sys.executable, "-m", "digits", "classify", str(exported_onnx), "d.npy",
                                 "-o", "rows.csv", "-q", "--summary-json", "/proc/self/fd/1"],
                                cwd=tmp_path, stdout=out, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "s.json").read_text())["blank"] == 2


@pytest.mark.tf
def test_export_refuses_a_stream_out_before_any_work(trained_mlp, tmp_path):
    read, write = os.pipe()
    try:
        result = run_digits("export", trained_mlp, "--out", f"/proc/self/fd/{write}", cwd=tmp_path)
    finally:
        os.close(read)
        os.close(write)
    assert_one_line_error(result, 1, "give a file name")
    assert not list(tmp_path.iterdir())


# 6. Every numeric option refuses NaN and values out of range: exit 2, one line --------------


@pytest.mark.parametrize("args", [
    ("train", "--dropout", "nan"), ("train", "--dropout", "inf"), ("train", "--validation-split", "nan"),
    ("train", "--validation-split", "-0.1"), ("train", "--seed", "-1"), ("train", "--seed", str(2**64)),
    ("train", "--epochs", str(10**12)), ("train", "--batch-size", str(10**12)), ("train", "--early-stop", "-1"),
    ("export", "MODEL", "--atol", "nan"), ("export", "MODEL", "--rtol", "inf"), ("export", "MODEL", "--atol", "-1"),
    ("demo", "--seed", "-1"), ("classify", "MODEL", "x.npy", "--review-below", "nan"),
    ("classify", "MODEL", "x.npy", "--top-k", "11"), ("classify", "MODEL", "x.npy", "--workers", "0"),
])
def test_numeric_options_refuse_nan_and_out_of_range(args, exported_onnx, tmp_path):
    result = run_digits(*[str(exported_onnx) if a == "MODEL" else a for a in args], cwd=tmp_path)
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    assert not list(tmp_path.iterdir())  # refused before any work


# 9. The exit code says what happened to the rows, whatever stderr can take ----------------


@pytest.mark.parametrize("stderr", ["/dev/full", "closed pipe"])
@pytest.mark.parametrize("inputs, code", [(["d.npy"], 0), (["d.npy", "missing.png"], 3)])
def test_exit_code_tells_the_rows_when_stderr_cannot_be_written(exported_onnx, tmp_path, stderr, inputs, code):
    import subprocess
    import sys

    from tests.conftest import ROOT

    _arrays(tmp_path, "d.npy")
    if stderr == "/dev/full":
        sink, other = os.open("/dev/full", os.O_WRONLY), None
    else:
        other, sink = os.pipe()
        os.close(other)
    try:
        result = subprocess.run([sys.executable, "-m", "digits", "classify", str(exported_onnx), *inputs,
                                 "-o", "rows.csv"], cwd=tmp_path, stderr=sink, timeout=300,
                                env={**os.environ, "PYTHONPATH": str(ROOT)})
    finally:
        os.close(sink)
    assert result.returncode == code
    assert (tmp_path / "rows.csv").read_text().count("\n") == 1 + 2 + (code == 3)


# 5. Strings from a model, a data file or a path reach the terminal escaped and cut ---------

HOSTILE = "\x1b]0;owned\x07\x1b[31mred\x1b[2K\rFAKE: all checks passed\n\u202e"


def _hostile_model(path, input_name="image", metadata=None) -> None:
    from onnx import TensorProto, helper

    from tests.conftest import save_graph

    x = helper.make_tensor_value_info(input_name, TensorProto.FLOAT, [None, 5])
    y = helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 5])
    save_graph(helper.make_graph([helper.make_node("Identity", [input_name], ["probabilities"])], "g", [x], [y]),
               path)
    if metadata:
        import onnx

        model = onnx.load(path)
        for key, value in metadata.items():
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.save(model, path)


def test_printable_escapes_controls_and_cuts_long_values():
    from digits.core.terminal import printable

    shown = printable(HOSTILE + "x" * 500)
    assert not any(ord(c) < 32 or 0x7F <= ord(c) <= 0x9F or c == "\u202e" for c in shown)
    assert "\\x1b]0;owned\\x07" in shown and "\\r" in shown and "\\n" in shown
    assert shown.endswith("more characters)") and len(shown) < 300
    assert printable("plain text, ünïcode") == "plain text, ünïcode"


def test_inspect_escapes_metadata_and_cuts_a_huge_value_but_json_stays_exact(tmp_path):
    model = tmp_path / "m.onnx"
    _hostile_model(model, metadata={"note": HOSTILE, "huge": "y" * 5_000_000, HOSTILE: "key"})
    shown = run_digits("inspect", model)
    assert shown.returncode == 0, shown.stderr
    assert "\x1b" not in shown.stdout and "\r" not in shown.stdout and "\u202e" not in shown.stdout
    assert "FAKE" in shown.stdout and len(shown.stdout) < 10_000
    assert not any(line.startswith("FAKE") for line in shown.stdout.splitlines())
    exact = run_digits("inspect", model, "--json")
    metadata = json.loads(exact.stdout)["metadata"]
    assert metadata["note"] == HOSTILE and len(metadata["huge"]) == 5_000_000


def test_a_refused_models_input_name_stays_on_one_escaped_line(tmp_path):
    model = tmp_path / "m.onnx"
    _hostile_model(model, input_name="in\nput" + HOSTILE)
    _arrays(tmp_path, "d.npy")
    result = run_digits("classify", model, "d.npy", cwd=tmp_path)
    assert_one_line_error(result, 1, "in\\nput")
    assert "\x1b" not in result.stderr and "\r" not in result.stderr


def test_an_error_naming_a_path_with_a_newline_is_one_line(exported_onnx, tmp_path):
    folder = tmp_path / "two\nlines"
    folder.mkdir()
    result = run_digits("classify", exported_onnx, "x.npy", "-o", str(folder) + "/", cwd=tmp_path)
    assert_one_line_error(result, 1, "two\\nlines")


def test_evaluate_warning_shows_the_models_data_source_escaped(exported_onnx, sample, tmp_path):
    import onnx

    from digits.trainer.evaluate import seen_test_digits_warning

    model = onnx.load(exported_onnx)
    for prop in model.metadata_props:
        if prop.key == "data_source":
            prop.value = "IDX" + HOSTILE + "z" * 1000
    onnx.save(model, tmp_path / "m.onnx")
    warning = seen_test_digits_warning(tmp_path / "m.onnx", sample.source)
    assert "\x1b" not in warning and "\n" not in warning and "\r" not in warning
    assert "more characters" in warning


# 8. web/serve.py serves the page's files only; make web passes its variables as data ------


@pytest.fixture
def page_copy(tmp_path):
    """web/ copied, with a symlink out of it as one of the page's files and a secret beside them."""
    import shutil

    from tests.conftest import ROOT

    web = tmp_path / "web"
    web.mkdir()
    for name in ("serve.py", "index.html", "digits.js", "style.css"):
        shutil.copy(ROOT / "web" / name, web / name)
    (web / "node_modules").symlink_to((ROOT / "web" / "node_modules").resolve())
    (tmp_path / "secret.txt").write_text("secret")
    (web / "app.js").symlink_to(tmp_path / "secret.txt")
    (web / "notes.txt").write_text("not the page's")
    return web


def _serve(web, *args):
    import subprocess
    import sys

    return subprocess.Popen([sys.executable, str(web / "serve.py"), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_serve_answers_bad_requests_with_400_and_serves_only_the_page(page_copy):
    import http.client

    server = _serve(page_copy, "--port", "0")
    try:
        port = int(server.stdout.readline().strip().rstrip("/").rsplit(":", 1)[1])

        def status(path: str) -> int:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            connection.request("GET", path)
            return connection.getresponse().status

        assert status("/%00") == status("/%ff") == 400
        assert status("/") == status("/style.css") == status("/node_modules/onnxruntime-web/dist/ort.wasm.min.mjs") \
            == 200
        for path in ("/app.js", "/notes.txt", "/serve.py", "/node_modules/", "/node_modules/onnxruntime-web/",
                     "/node_modules/onnxruntime-web/dist/%2e%2e/package.json", "/model.onnx", "/../secret.txt"):
            assert status(path) == 404, path
    finally:
        server.terminate()
        _, stderr = server.communicate(timeout=10)
    assert "Traceback" not in stderr


def test_serve_on_a_busy_port_says_so_in_one_line(page_copy):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = _serve(page_copy, "--port", str(taken.getsockname()[1]))
        _, stderr = server.communicate(timeout=30)
    assert server.returncode == 1 and stderr.strip().count("\n") == 0 and "in use" in stderr


def test_make_web_passes_model_and_port_as_data(tmp_path):
    import subprocess
    import sys

    from tests.conftest import ROOT

    show = tmp_path / "show-args"
    show.write_text(f"#!{sys.executable}\nimport json, sys\nprint(json.dumps(sys.argv[1:]))\n")
    show.chmod(0o755)
    for model in ("my models/m.onnx", "/x; touch PWNED", "`touch PWNED`", "a'b\"c"):
        result = subprocess.run(["make", "-s", "-C", str(ROOT), "-o", "web-deps", "web", f"PYTHON={show}",
                                 f"MODEL={model}", "PORT=8123"], cwd=tmp_path, capture_output=True, text=True,
                                timeout=60)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout) == ["web/serve.py", "--port", "8123", "--model", model]
    assert not list(tmp_path.glob("PWNED*")) and not list(ROOT.glob("PWNED*"))


# 7. A set of artefacts lands in order, its manifest last --------------------------------------


def test_a_set_cut_short_between_renames_leaves_its_manifest_unlanded(tmp_path, monkeypatch):
    from digits.core import atomic as atomic_module
    from digits.core.atomic import atomic_folder_files

    targets = {name: tmp_path / name for name in ("model.onnx", "model.int8.onnx", "model.parity.json")}
    for path in targets.values():
        path.write_text("old")
    real_replace, renames = os.replace, []

    def replace_then_interrupt(source, target):
        if renames:
            raise KeyboardInterrupt  # Ctrl-C between the first rename and the second
        renames.append(target)
        real_replace(source, target)

    monkeypatch.setattr(atomic_module.os, "replace", replace_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        with atomic_folder_files(targets) as temps:
            for temp in temps.values():
                temp.write_text("new")
    assert [p.read_text() for p in targets.values()] == ["new", "old", "old"]  # the manifest is the old one
    assert sorted(os.listdir(tmp_path)) == sorted(targets)  # no temporary left


def test_train_lands_its_manifest_last():
    from digits.trainer.training import ARTEFACTS  # the order they land (test_trained_micro checks the hashes)

    assert ARTEFACTS[-1] == "metrics.json"


# 10. Smaller defects ----------------------------------------------------------------------


def _strict_json(text: str):
    def refuse(constant):
        raise ValueError(f"bare {constant} in JSON")

    return json.loads(text, parse_constant=refuse)


def test_json_text_writes_nan_and_infinity_as_null():
    from digits.core.atomic import json_text

    text = json_text({"bins": [float("nan"), 0.5], "inf": float("inf"), "nested": ({"x": float("-inf")},)})
    assert _strict_json(text) == {"bins": [None, 0.5], "inf": None, "nested": [{"x": None}]}


@pytest.mark.slow
@pytest.mark.tf
def test_training_on_one_class_warns_and_metrics_json_is_strict(small, tmp_path):
    """One class: every reliability bin but the top one is empty (NaN), and the model scores 1.0."""
    from digits.trainer.data import Mnist
    from tests.conftest import write_npz

    keep_train, keep_test = small.y_train == 3, small.y_test == 3
    data = write_npz(Mnist(small.x_train[keep_train], small.y_train[keep_train], small.x_test[keep_test],
                           small.y_test[keep_test], "threes"), tmp_path / "threes.npz")
    result = run_digits("train", "--data", data, "--out", tmp_path / "run", "--epochs", "1", "--quiet")
    assert result.returncode == 0, result.stderr
    assert "warning: the training digits hold no 0, 1, 2, 4, 5, 6, 7, 8, 9 (1 of 10 classes)" in result.stderr
    metrics = _strict_json((tmp_path / "run" / "metrics.json").read_text())
    assert None in metrics["calibration"]["reliability_before"]["confidence"]  # the empty bins, as null
    assert len(metrics["warnings"]) == 2


def test_a_npy_header_expression_gives_the_same_error_row_every_run(exported_onnx, tmp_path):
    np.save(tmp_path / "six.npy", np.zeros((6, 28, 28), np.uint8))
    raw = (tmp_path / "six.npy").read_bytes()
    header_length = int.from_bytes(raw[8:10], "little")
    header = raw[10:10 + header_length].replace(b"(6, 28, 28)", b"(2*3,28,28)")
    (tmp_path / "expr.npy").write_bytes(raw[:10] + header.ljust(header_length - 1) + b"\n" + raw[10 + header_length:])
    first, second = (run_digits("classify", exported_onnx, "expr.npy", "-q", cwd=tmp_path) for _ in range(2))
    assert first.returncode == 3 and first.stdout == second.stdout
    assert "object at 0x" not in first.stdout and "BinOp" in first.stdout


def test_workers_beyond_the_cap_are_a_usage_error_and_the_cap_runs(exported_onnx, tmp_path, sample):
    """--workers 99999 sized the workers' shared mapping for 99999 (100 GiB) and failed."""
    import cv2

    from digits.batch.cores import MAX_WORKERS

    result = run_digits("classify", exported_onnx, "x.npy", "--workers", "99999", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    for i in range(1100):  # enough images to start the pool (batch/run.py's POOL_THRESHOLD)
        cv2.imwrite(str(tmp_path / f"{i:04}.png"), sample.x_test[i % 100])
    result = run_digits("classify", exported_onnx, ".", "--workers", str(MAX_WORKERS), "-q", "-o", "rows.csv",
                        "--summary-json", "s.json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "rows.csv").read_text().count("\n") == 1101
    assert json.loads((tmp_path / "s.json").read_text())["workers"] > 1  # the pool ran


def test_a_cgroup_v1_quota_on_our_own_cgroup_is_read(tmp_path):
    from digits.batch.cores import _cgroup_quota

    own = tmp_path / "cgroup"
    own.write_text("12:pids:/user.slice\n4:cpu,cpuacct:/docker/abc\n0::/\n")
    folder = tmp_path / "fs" / "cpu,cpuacct" / "docker" / "abc"
    folder.mkdir(parents=True)
    (folder / "cpu.cfs_quota_us").write_text("150000\n")
    (folder / "cpu.cfs_period_us").write_text("100000\n")
    (tmp_path / "fs" / "cpu,cpuacct" / "cpu.cfs_quota_us").write_text("-1\n")  # the root: no cap
    (tmp_path / "fs" / "cpu,cpuacct" / "cpu.cfs_period_us").write_text("100000\n")
    assert _cgroup_quota(str(own), str(tmp_path / "fs")) == 1.5
    v2 = tmp_path / "v2"
    (v2 / "user.slice" / "run").mkdir(parents=True)
    (v2 / "user.slice" / "cpu.max").write_text("50000 100000\n")  # a parent's cap holds too
    (v2 / "user.slice" / "run" / "cpu.max").write_text("max 100000\n")
    own.write_text("0::/user.slice/run\n")
    assert _cgroup_quota(str(own), str(v2)) == 0.5


def test_stdin_that_is_a_folder_ends_before_anything_is_written_as_documented(exported_onnx, tmp_path):
    import subprocess
    import sys

    from tests.conftest import ROOT

    folder = os.open(tmp_path, os.O_RDONLY)
    try:
        result = subprocess.run([sys.executable, "-m", "digits", "classify", str(exported_onnx), "-", "-o", "rows.csv"],
                                stdin=folder, cwd=tmp_path, capture_output=True, text=True, timeout=60,
                                env={**os.environ, "PYTHONPATH": str(ROOT)})
    finally:
        os.close(folder)
    assert result.returncode == 1 and "<stdin> is a directory" in result.stderr  # README, "Standard streams"
    assert not (tmp_path / "rows.csv").exists()
