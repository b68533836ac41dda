"""onnxruntime-node, as the Node example ships it, against the Python runner on real digits."""

import os
import subprocess

import numpy as np
import pytest

from tests.conftest import run_digits
from tests.edge.conftest import NODE_EXAMPLE, parse_rows, python_rows, require

pytestmark = pytest.mark.slow


def node_classify(*args) -> subprocess.CompletedProcess:
    require(NODE_EXAMPLE / "node_modules" / "onnxruntime-node", "run `make node-deps` (npm ci in examples/node)")
    return subprocess.run(["node", str(NODE_EXAMPLE / "classify.js"), *map(str, args)],
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("variant", ["onnx", "int8", "ort"])
def test_node_gives_the_python_runners_rows(variant, any_edge_models, edge_digits):
    npy, _, _ = edge_digits
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
    assert node.stdout.splitlines()[0] == python.splitlines()[0]
    plain = node_classify(edge_models[variant], npy)
    assert plain.stdout.splitlines()[0] == "source,label,confidence,error"
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
    assert node.stdout == expected.stdout
    assert node.stdout.splitlines()[-1] == f'{bad},,,"shape (3, 32, 32): expected (N, 28, 28) or (N, 784)"'


def test_node_refuses_a_bad_model_in_one_line(edge_digits, tmp_path):
    npy, _, _ = edge_digits
    junk = tmp_path / "junk.onnx"
    junk.write_text("not a model")
    result = node_classify(junk, npy)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith(f"digits-node: error: {junk}: not a loadable ONNX model")
    assert len(result.stderr.strip().splitlines()) == 1


def test_the_readmes_node_example_runs(edge_models, tmp_path):
    import re

    from tests.conftest import ROOT

    (example,) = re.findall(r"```js\n(const ort = require.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    (tmp_path / "model.onnx").symlink_to(edge_models["onnx"])
    (tmp_path / "example.js").write_text(example)
    require(NODE_EXAMPLE / "node_modules" / "onnxruntime-node", "run `make node-deps` (npm ci in examples/node)")
    result = subprocess.run(["node", "example.js"], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "NODE_PATH": str(NODE_EXAMPLE / "node_modules")})
    assert result.returncode == 0, result.stderr
    label, probabilities = result.stdout.split(" ", 1)
    assert label.isdigit() and "[" in probabilities
