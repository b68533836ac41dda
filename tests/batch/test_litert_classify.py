"""`digits classify model.tflite` (and inspect, evaluate): LiteRT only when asked, and one line when it cannot be.

The rows themselves are compared with the ONNX model's in tests/exporter/test_litert.py
(they need an exported .tflite, so TensorFlow). These run in both tiers: where the
[litert] extra is installed its absence is simulated as in tests/test_core_install.py.
"""

import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import ROOT, assert_one_line_error, run_digits

HIDE_LITERT = (
    "import sys\n"
    "sys.modules['ai_edge_litert'] = None\n"
    "sys.argv = ['digits', *sys.argv[1:]]\n"
    "from digits.cli import main\n"
    "main()\n"
)

WATCH_IMPORTS = (
    "import sys\n"
    "sys.argv = ['digits', *sys.argv[1:]]\n"
    "from digits.cli import main\n"
    "try:\n"
    "    main()\n"
    "finally:\n"
    "    print('litert imported:', any(m.split('.')[0] in ('ai_edge_litert', 'tflite_micro') for m in sys.modules))\n"
)


@pytest.fixture()
def digits_npy(small, tmp_path):
    np.save(tmp_path / "d.npy", small.x_test[:5])
    return tmp_path / "d.npy"


@pytest.mark.parametrize("command", ["classify", "inspect", "evaluate"])
def test_without_the_extra_one_line_names_it(command, digits_npy, small_npz, tmp_path):
    model = tmp_path / "model.tflite"
    model.write_bytes(b"not read: the extra is missing first")
    more = {"classify": [digits_npy], "inspect": [], "evaluate": ["--data", small_npz]}[command]
    result = subprocess.run([sys.executable, "-c", HIDE_LITERT, command, model, *more],
                            capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert_one_line_error(result, 1, str(model), "pip install -c constraints.txt '.[litert]'")
    assert result.stdout == ""


def test_an_onnx_model_never_imports_litert(exported_onnx, digits_npy):
    result = subprocess.run([sys.executable, "-c", WATCH_IMPORTS, "classify", exported_onnx, digits_npy],
                            capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "litert imported: False"


def test_unusable_tflite_files_are_refused_in_one_line(exported_onnx, digits_npy, tmp_path):
    pytest.importorskip("ai_edge_litert")
    garbage = tmp_path / "garbage.tflite"
    garbage.write_bytes(b"\x00" * 64 + b"not a flatbuffer" * 10)
    renamed = tmp_path / "renamed.tflite"  # an ONNX model under the wrong name
    renamed.write_bytes(exported_onnx.read_bytes())
    for model, message in ((tmp_path / "missing.tflite", "no such model file"),
                           (garbage, "not a loadable LiteRT model"),
                           (renamed, "not a loadable LiteRT model"),
                           (tmp_path, "model file")):
        result = run_digits("classify", model, digits_npy)
        assert_one_line_error(result, 1, str(model), message)
        assert result.stdout == ""
