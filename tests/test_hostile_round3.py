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
