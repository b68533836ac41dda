"""A core install (no [train] extra) answers clearly when asked to train or export.

In `make test-core` TensorFlow is really absent. In the full tier the test hides
it: the child process marks tensorflow, keras and tf2onnx as not importable
before `digits` starts, which is what an install without them looks like to
`importlib` (find_spec gives None, import raises ImportError).
"""

import subprocess
import sys

import pytest

from tests.conftest import ROOT, assert_one_line_error

HIDE_TRAINING_STACK = (
    "import sys\n"
    "for name in ('tensorflow', 'keras', 'tf2onnx', 'matplotlib'):\n"
    "    sys.modules[name] = None\n"
    "sys.argv = ['digits', *sys.argv[1:]]\n"
    "from digits.cli import main\n"
    "main()\n"
)


def run_without_training_stack(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", HIDE_TRAINING_STACK, *map(str, args)],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)


@pytest.mark.parametrize("args, what", [
    (["train", "--epochs", "1"], "digits train"),
    (["export", "model.keras"], "digits export"),
    (["evaluate", "model.keras"], "evaluating a .keras model"),
    (["demo", "--epochs", "1"], "digits demo"),
])
def test_training_commands_name_the_extra(tmp_path, small_npz, args, what):
    (tmp_path / "model.keras").write_bytes(b"not checked: the extra is missing first")
    args = [tmp_path / a if a == "model.keras" else a for a in args]
    result = run_without_training_stack(*args, "--data", small_npz)
    assert_one_line_error(result, 1, what, "pip install -c constraints.txt '.[train]'")


def test_classify_needs_no_training_stack(exported_onnx, small, tmp_path):
    import numpy as np

    np.save(tmp_path / "d.npy", small.x_test[:5])
    result = run_without_training_stack("classify", exported_onnx, tmp_path / "d.npy")
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 6
