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
    assert json.loads((tmp_path / "s.json").read_text())["classified"] == 4


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

