"""onnxruntime-node, as the Node example ships it, against the Python runner on real digits."""

import csv
import io
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import run_digits
from tests.edge.conftest import NODE_EXAMPLE, parse_rows, python_rows, require

pytestmark = pytest.mark.slow


def node_classify(*args) -> subprocess.CompletedProcess:
    require(NODE_EXAMPLE / "node_modules" / "onnxruntime-node", "run `make node-deps` (npm ci in examples/node)")
    return subprocess.run(["node", str(NODE_EXAMPLE / "classify.js"), *map(str, args)],
                          capture_output=True, text=True, timeout=300)


def comparable(node_text: str, python_text: str) -> tuple[list[list[str]], list[list[str]]]:
    """Both CSVs' rows (header first) over the columns both print, in Node's order. Node prints the
    model's digit_score; `digits classify` prints it too where its digit_score column has landed, and
    a not_digit column (--not-digits mark, its default) that the Node example does not."""
    node, python = (list(csv.reader(io.StringIO(text))) for text in (node_text, python_text))
    shared = [c for c in node[0] if c in python[0]]
    assert set(node[0]) - set(shared) <= {"digit_score"} and set(python[0]) - set(shared) <= {"not_digit"}

    def pick(rows):
        return [[row[rows[0].index(c)] for c in shared] for row in rows]

    return pick(node), pick(python)


def python_digit_scores(model: Path, digits: np.ndarray) -> np.ndarray:
    """The model's digit_score output, float32 [N], in Python's onnxruntime."""
    import onnxruntime as ort

    return ort.InferenceSession(str(model)).run(["digit_score"], {"image": digits})[0]


@pytest.mark.parametrize("variant", ["onnx", "int8", "ort"])
def test_node_gives_the_python_runners_rows(variant, any_edge_models, edge_digits):
    npy, digits, _ = edge_digits
    edge_models = any_edge_models
    node = node_classify(edge_models[variant], npy, "--top-k", "10")
    assert node.returncode == 0, node.stderr
    python = python_rows(edge_models[variant], npy)
    node_sources, node_labels, node_probs = parse_rows(node.stdout)
    py_sources, py_labels, py_probs = parse_rows(python)
    assert node_sources == py_sources == [f"{npy}#{i}" for i in range(2000)]
    np.testing.assert_array_equal(node_labels, py_labels)
    np.testing.assert_allclose(node_probs, py_probs, atol=1e-5, rtol=0)
    # Same columns, same number formatting: the header and the plain rows match as text.
    node_table, python_table = comparable(node.stdout, python)
    assert node_table[0] == python_table[0]
    # digit_score: Python's, within the parity tolerance (and printed as `digits classify` prints it).
    scores = np.array([float(r["digit_score"]) for r in csv.DictReader(io.StringIO(node.stdout))])
    np.testing.assert_allclose(scores, python_digit_scores(edge_models[variant], digits), atol=1e-5, rtol=0)
    if "digit_score" in python.splitlines()[0].split(","):
        assert [r[node_table[0].index("digit_score")] for r in node_table] == [
            r[python_table[0].index("digit_score")] for r in python_table]
    plain = node_classify(edge_models[variant], npy)
    assert plain.stdout.splitlines()[0] == "source,label,confidence,digit_score,error"
    assert [line.split(",")[:2] for line in plain.stdout.splitlines()[1:]] == [
        [f"{npy}#{i}", str(label)] for i, label in enumerate(py_labels)]


def test_node_reads_flat_and_float_arrays_and_reports_bad_ones(edge_models, edge_digits, tmp_path):
    _, digits, _ = edge_digits
    flat, floats, bad = tmp_path / "flat.npy", tmp_path / "floats.npy", tmp_path / "bad.npy"
    np.save(flat, digits[:40].reshape(40, 784))
    np.save(floats, (digits[:40] / 255.0).astype(np.float32))
    np.save(bad, np.zeros((3, 32, 32), np.uint8))
    node = node_classify(edge_models["onnx"], flat, floats, bad)
    expected = run_digits("classify", edge_models["onnx"], flat, floats, bad, "--quiet")
    assert node.returncode == expected.returncode == 3, node.stderr
    node_table, python_table = comparable(node.stdout, expected.stdout)
    assert node_table == python_table
    assert node.stdout.splitlines()[-1] == f'{bad},,,,"shape (3, 32, 32): expected (N, 28, 28) or (N, 784)"'


def test_node_refuses_a_bad_model_in_one_line(edge_digits, tmp_path):
    npy, _, _ = edge_digits
    junk = tmp_path / "junk.onnx"
    junk.write_text("not a model")
    result = node_classify(junk, npy)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith(f"digits-node: error: {junk}: not a loadable ONNX model")
    assert len(result.stderr.strip().splitlines()) == 1


def test_the_docs_node_example_runs(edge_models, tmp_path):
    import re

    from tests.conftest import ROOT

    (example,) = re.findall(r"```js\n(const ort = require.*?)```", (ROOT / "docs" / "export.md").read_text(),
                            flags=re.S)
    (tmp_path / "model.onnx").symlink_to(edge_models["onnx"])
    (tmp_path / "example.js").write_text(example)
    require(NODE_EXAMPLE / "node_modules" / "onnxruntime-node", "run `make node-deps` (npm ci in examples/node)")
    result = subprocess.run(["node", "example.js"], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "NODE_PATH": str(NODE_EXAMPLE / "node_modules")})
    assert result.returncode == 0, result.stderr
    label, probabilities = result.stdout.split(" ", 1)
    assert label.isdigit() and "[" in probabilities


# Issue 21, classes 8, 16, 21 and 24: hostile and unusual arrays. The Node example accepts an array
# exactly when the Python runner (numpy's header reader) does, and gives it the same rows.


def _raw_npy(path, header: str, data: bytes = b"", version=(1, 0), length: int | None = None):
    """An .npy file with this header text as written (padded to 64 bytes, newline-ended, as numpy pads)."""
    text = header.encode("latin1")
    size = 4 if version[0] >= 2 else 2
    text += b" " * (-(8 + size + len(text) + 1) % 64) + b"\n"
    length = len(text) if length is None else length
    path.write_bytes(b"\x93NUMPY" + bytes(version) + length.to_bytes(size, "little") + text + data)
    return path


def _hostile_arrays(folder, digits) -> list:
    """(name, file) pairs: arrays both runners must classify alike, and headers both must refuse."""
    three = np.ascontiguousarray(digits[:3])
    u8 = three.tobytes()
    files = []

    def raw(name, header, data=u8, **kw):
        files.append(_raw_npy(folder / f"{name}.npy", header, data, **kw))

    def save(name, array, **kw):
        path = folder / f"{name}.npy"
        with open(path, "wb") as f:
            np.lib.format.write_array(f, array, **kw)
        files.append(path)

    shape = "'shape': (3, 28, 28)"
    # Accepted by numpy: other dtype spellings, byte orders and float widths, odd literals.
    raw("B", f"{{'descr': 'B', 'fortran_order': False, {shape}, }}")
    raw("uint8-name", f"{{'descr': 'uint8', 'fortran_order': False, {shape}}}")
    raw("big-endian-u1", f"{{'descr': '>u1', 'fortran_order': False, {shape}}}")
    raw("subarray-of-nothing", f"{{'descr': ('|u1', ()), 'fortran_order': False, {shape}}}")
    raw("python2-longs", "{'descr': '|u1', 'fortran_order': False, 'shape': (3L, 28L, 28L), }")
    raw("hex-and-underscores", "{'descr': '|u1', 'fortran_order': False, 'shape': (0x3, 2_8, +28,), }")
    raw("comments-quotes-concat",
        '{"descr": "|" \'u1\',  # a comment\n "fortran_order": False, "shape": ((3), 28, 28)}')
    raw("duplicate-key", f"{{'descr': '<f8', 'descr': '|u1', 'fortran_order': False, {shape}}}")
    raw("escapes", f"{{'descr': '\\x7cu\\061', 'fortran_order': False, {shape}}}")
    raw("version-2", f"{{'descr': '|u1', 'fortran_order': False, {shape}}}", version=(2, 0))
    floats = (three / 255.0)
    floats[0, 0, :8] = [0.5 / 255, 1.5 / 255, 2.5 / 255, 0.0, 1.0, 1e-30, 1 - 1e-9, 0.998]  # ties and edges of rint
    for dtype in (">f4", ">f8", "<f2", ">f2", np.longdouble, np.dtype(np.longdouble).newbyteorder(">")):
        save(f"float-{np.dtype(dtype).str}", floats.astype(dtype))
    save("flat-784", three.reshape(3, 784))
    save("empty", np.zeros((0, 28, 28), np.uint8))
    save("fortran-one-digit-c-bytes", np.asfortranarray(three[:1]))  # Python refuses: its bytes are transposed
    save("fortran", np.asfortranarray(three))
    # Refused by numpy's header reader or by the runner's checks.
    raw("extra-key", f"{{'descr': '|u1', 'fortran_order': False, {shape}, 'x': 1}}")
    raw("missing-key", f"{{'descr': '|u1', {shape}}}")
    raw("shape-list", "{'descr': '|u1', 'fortran_order': False, 'shape': [3, 28, 28]}")
    raw("shape-bool", "{'descr': '|u1', 'fortran_order': False, 'shape': (True, 28, 28)}")
    raw("shape-negative", "{'descr': '|u1', 'fortran_order': False, 'shape': (-3, 28, 28)}")
    raw("shape-float", "{'descr': '|u1', 'fortran_order': False, 'shape': (3.0, 28, 28)}")
    raw("shape-leading-zero", "{'descr': '|u1', 'fortran_order': False, 'shape': (03, 28, 28)}")
    raw("fortran-int", f"{{'descr': '|u1', 'fortran_order': 0, {shape}}}")
    raw("descr-unknown", f"{{'descr': 'xyz', 'fortran_order': False, {shape}}}")
    raw("descr-int16", f"{{'descr': '<i2', 'fortran_order': False, {shape}}}")
    raw("descr-bytes", f"{{'descr': b'|u1', 'fortran_order': False, {shape}}}")
    raw("descr-structured", f"{{'descr': [('a', '|u1')], 'fortran_order': False, {shape}}}")
    raw("descr-subarray", f"{{'descr': ('|u1', (1,)), 'fortran_order': False, {shape}}}")
    raw("descr-one-tuple", f"{{'descr': ('|u1',), 'fortran_order': False, {shape}}}")  # was a Python traceback
    raw("not-a-dict", "('|u1', False, (3, 28, 28))")
    raw("trailing-garbage", f"{{'descr': '|u1', 'fortran_order': False, {shape}}} x")
    raw("unterminated", f"{{'descr': '|u1, 'fortran_order': False, {shape}}}")
    raw("nul-byte", f"{{'descr': '|u1', 'fortran_order': False,\x00 {shape}}}")
    raw("longs-in-version-3", "{'descr': '|u1', 'fortran_order': False, 'shape': (3L, 28L, 28L), }", version=(3, 0))
    raw("longs-lower-case", "{'descr': '|u1', 'fortran_order': False, 'shape': (3l, 28, 28), }")
    raw("version-4", f"{{'descr': '|u1', 'fortran_order': False, {shape}}}", version=(4, 0))
    raw("header-past-the-end", f"{{'descr': '|u1', 'fortran_order': False, {shape}}}", data=b"", version=(2, 0),
        length=0xFFFFFFF0)
    raw("header-too-long", "{'descr': '|u1', 'fortran_order': False, " + " " * 10_000 + f"{shape}}}")
    raw("truncated-data", f"{{'descr': '|u1', 'fortran_order': False, {shape}}}", data=u8[:-1])
    raw("float-above-1", f"{{'descr': '<f4', 'fortran_order': False, {shape}}}",
        data=np.full((3, 28, 28), np.nextafter(np.float32(1), np.float32(2))).tobytes())
    raw("float-nan", f"{{'descr': '<f2', 'fortran_order': False, {shape}}}",
        data=np.full((3, 28, 28), np.nan, np.float16).tobytes())
    (folder / "short.npy").write_bytes(b"\x93NUM")
    os.mkfifo(folder / "fifo.npy")
    (folder / "loop.npy").symlink_to("loop.npy")
    (folder / "broken.npy").symlink_to("nowhere.npy")
    files += [folder / "short.npy", folder / "fifo.npy", folder / "loop.npy", folder / "broken.npy",
              folder / "missing.npy", folder / ("long" * 80 + ".npy"), Path("/dev/null")]
    return files


def test_node_accepts_and_refuses_the_arrays_python_does(edge_digits, tmp_path):
    from tests.conftest import COMMITTED_MODEL

    _, digits, _ = edge_digits
    files = _hostile_arrays(tmp_path, digits)
    node = node_classify(COMMITTED_MODEL, *files, "--top-k", "3", "--batch-size", "2")
    python = run_digits("classify", COMMITTED_MODEL, *files, "--top-k", "3", "--batch-size", "2", "--quiet")
    assert node.returncode == python.returncode == 3, node.stderr + python.stderr
    assert "Traceback" not in python.stderr and node.stderr == ""
    node_rows, python_rows_ = comparable(node.stdout, python.stdout)
    assert [r[0] for r in node_rows] == [r[0] for r in python_rows_]  # same digits, same failures, same order
    worded_by_numpy = ("not a readable .npy file (", "dtype ")
    for n, p in zip(node_rows, python_rows_):
        if n[-1] != p[-1] and p[-1].startswith(worded_by_numpy):
            # numpy's own parse errors and dtype names are worded by numpy; that both refuse must agree
            assert n[:-1] == p[:-1] and n[-1].startswith(worded_by_numpy), (n, p)
        else:
            assert n == p
    accepted = {r[0].split("#")[0] for r in python_rows_[1:] if r[1]}
    assert {f"{tmp_path}/{name}.npy" for name in ["B", "python2-longs", "escapes", "float-<f16", "float->f2",
                                                   "subarray-of-nothing", "duplicate-key"]} <= accepted


def test_node_survives_a_closed_pipe_and_a_fifo(edge_digits, tmp_path):
    from tests.conftest import COMMITTED_MODEL

    _, digits, _ = edge_digits
    folder = tmp_path / "folder.npy"
    folder.mkdir()  # the Python runner walks a folder; this example reads named arrays only
    many = tmp_path / "many.npy"
    np.save(many, np.tile(digits[:100], (200, 1, 1)))  # 20,000 rows: far more than a pipe holds
    head = subprocess.run(f"node {NODE_EXAMPLE / 'classify.js'} {COMMITTED_MODEL} {many} | head -1; "
                          "echo ${PIPESTATUS[0]} >&2", shell=True, executable="/bin/bash",
                          capture_output=True, text=True, timeout=120)
    assert head.stdout == "source,label,confidence,digit_score,error\n"
    message, code = head.stderr.strip().splitlines()
    assert message == "digits-node: error: standard output: cannot write (the reader closed it (broken pipe))"
    assert code == "1"
    fifo = tmp_path / "input.npy"
    os.mkfifo(fifo)
    node = node_classify(COMMITTED_MODEL, fifo, folder, many)  # its timeout fails the test if it blocks
    assert node.returncode == 3 and node.stderr == ""
    assert node.stdout.splitlines()[1:3] == [f'{fifo},,,,"is a FIFO (named pipe), not a regular file"',
                                             f'{folder},,,,"is a folder, not a regular file"']
    assert len(node.stdout.splitlines()) == 3 + 20_000


def test_node_formats_numbers_as_python(tmp_path):
    require(NODE_EXAMPLE / "rows.js", "the Node example")
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.random(2000, dtype=np.float32), np.float32(2.0) ** -rng.integers(1, 40, 500),
                             np.array([0.5078125, 0.0078125, 0.1234565, 0.9999995, 9.999995e-5, 1, 0.5], np.float32),
                             (np.arange(1, 2000) / 2048).astype(np.float32)]).astype(np.float64)
    script = ("const {g6, fixed6} = require(process.argv[1]); const xs = JSON.parse(require('fs').readFileSync(0));"
              "process.stdout.write(xs.map((x) => g6(x) + ' ' + fixed6(x)).join('\\n'))")
    result = subprocess.run(["node", "-e", script, str(NODE_EXAMPLE / "rows.js")], input=json.dumps(values.tolist()),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    from digits.batch.formats import _fixed6, _texts

    expected = [f"{x:.6g} {t}" for x, t in zip(values, _texts(_fixed6(values)))]
    assert result.stdout.splitlines() == expected


def test_node_reads_a_file_whose_name_is_not_utf8(edge_models, edge_digits, tmp_path):
    """Node decodes argv with U+FFFD for bytes that are not UTF-8; Python keeps them. Both classify the file."""
    _, digits, _ = edge_digits
    name = os.fsencode(tmp_path) + b"/caf\xe9.npy"
    np.save(os.fsdecode(name), digits[:20])
    require(NODE_EXAMPLE / "node_modules" / "onnxruntime-node", "run `make node-deps` (npm ci in examples/node)")
    node = subprocess.run([b"node", os.fsencode(NODE_EXAMPLE / "classify.js"), os.fsencode(edge_models["onnx"]), name,
                           b"--top-k", b"10"],
                          capture_output=True, timeout=300)
    assert node.returncode == 0, node.stderr
    _, labels, _ = parse_rows(node.stdout.decode("utf-8", "replace"))
    import sys

    from tests.conftest import ROOT

    python = subprocess.run([sys.executable, "-m", "digits", "classify", edge_models["onnx"], os.fsdecode(name),
                             "--top-k", "10", "-q"], capture_output=True, cwd=ROOT, timeout=300)
    assert python.returncode == 0, python.stderr
    _, python_labels, _ = parse_rows(python.stdout.decode("utf-8", "replace"))
    assert len(labels) == 20
    np.testing.assert_array_equal(labels, python_labels)
