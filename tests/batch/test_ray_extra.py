"""`--engine ray` as a user meets it without a cluster: the local engine never imports Ray,
Ray's options need `--engine ray`, and a missing [ray] extra is named in one line.
These run in both tiers; tests/batch/test_ray.py runs the engine on a real cluster."""

import csv
import io
import subprocess
import sys

import numpy as np

import tests.conftest as conftest
from tests.conftest import ROOT, assert_one_line_error, run_digits, run_fresh


def rows_of(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


def test_local_engine_imports_no_ray(exported_onnx, sample, tmp_path, monkeypatch):
    array = tmp_path / "a.npy"
    np.save(array, sample.x_test[:5])
    monkeypatch.setattr(conftest, "HEAVY_MODULES", (*conftest.HEAVY_MODULES, "ray", "pyarrow"))
    out, heavy = run_fresh(["classify", exported_onnx, array])
    assert len(rows_of(out)) == 5
    assert "ray" not in heavy and "pyarrow" not in heavy


def test_engine_ray_without_the_extra_names_it(exported_onnx, sample, tmp_path):
    array = tmp_path / "a.npy"
    np.save(array, sample.x_test[:5])
    # As without the extra: `import ray` fails.
    code = ("import sys\nsys.modules['ray'] = None\nfrom digits.cli import main\n"
            f"sys.argv = ['digits', 'classify', {str(exported_onnx)!r}, {str(array)!r}, '--engine', 'ray']\n"
            "main()\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert_one_line_error(result, 1, "--engine ray", "pip install -c constraints.txt '.[ray]'")
    assert result.stdout == ""


def test_ray_options_need_engine_ray(exported_onnx, tmp_path):
    result = run_digits("classify", exported_onnx, tmp_path, "--output-dir", tmp_path / "shards")
    assert result.returncode == 2 and "--engine ray" in result.stderr
    result = run_digits("classify", exported_onnx, tmp_path, "--engine", "ray", "--format", "parquet")
    assert result.returncode == 2 and "--output-dir" in result.stderr


def test_workers_with_engine_ray_is_refused(exported_onnx, tmp_path):
    # --workers was silently ignored by the Ray engine, whose actors are set by --concurrency.
    result = run_digits("classify", exported_onnx, tmp_path, "--engine", "ray", "--workers", "2")
    assert_one_line_error(result, 2, "--workers", "--concurrency")
