"""The bundled models (make pretrained): a name where a model path goes, `digits models`,
and a wheel that carries them, so an install classifies with no training."""

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import cv2
import pytest

from digits.core.bundled import FOLDER, NAMES, listing, model_path
from tests.conftest import ROOT, run_digits


@pytest.fixture
def scans(tmp_path, small):
    folder = tmp_path / "scans"
    folder.mkdir()
    for i in range(20):
        cv2.imwrite(str(folder / f"{i:02}.png"), small.x_test[i])
    return folder


def _not_strict(constant):
    raise AssertionError(f"{constant} in metrics.json: not strict JSON (Node's JSON.parse refuses it)")


def test_every_bundled_model_is_whole_and_says_how_it_was_made():
    import hashlib

    present = [m["name"] for m in listing()]
    assert "mlp" in present and set(present) <= set(NAMES)
    for name in present:
        provenance = json.loads((FOLDER / name / "provenance.json").read_text())
        assert provenance["seed"] == 0 and provenance["data"]["files"] and provenance["commands"]
        metrics = json.loads((FOLDER / name / "metrics.json").read_text(), parse_constant=_not_strict)
        assert provenance["test_accuracy"] == metrics["test_accuracy"] >= 0.978
        for file, facts in provenance["files"].items():
            data = (FOLDER / name / file).read_bytes()
            assert hashlib.sha256(data).hexdigest() == facts["sha256"] and len(data) == facts["bytes"], file


def test_a_name_is_a_bundled_model_unless_a_path_of_that_name_exists(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert model_path("mlp") == FOLDER / "mlp" / "model.onnx"
    assert model_path("mlp.int8") == FOLDER / "mlp" / "model.int8.onnx"
    assert model_path("resnet").name == "resnet"  # not bundled: left for the loader to refuse
    assert model_path("x" * 5000) == Path("x" * 5000)  # a name too long to stat: left to the loader too
    (tmp_path / "mlp").write_bytes(b"mine")
    assert model_path("mlp") == tmp_path.joinpath("mlp").relative_to(tmp_path)


def test_classify_and_evaluate_take_a_bundled_name(scans, small, tmp_path, small_npz):
    result = run_digits("classify", "mlp", scans, "--output", tmp_path / "rows.csv", "--quiet")
    assert result.returncode == 0, result.stderr
    rows = (tmp_path / "rows.csv").read_text().splitlines()[1:]
    right = sum(int(r.split(",")[1]) == y for r, y in zip(rows, small.y_test[:20]))
    assert len(rows) == 20 and right >= 18
    result = run_digits("evaluate", "mlp.int8", "--data", small_npz, "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["model"].endswith("model.int8.onnx")


def test_digits_models_lists_accuracy_and_size():
    result = run_digits("models")
    assert result.returncode == 0, result.stderr
    header, *lines = result.stdout.splitlines()
    assert "test accuracy" in header and any(line.startswith("mlp ") and " MB" in line for line in lines)
    listed = json.loads(run_digits("models", "--json").stdout)
    assert {m["name"] for m in listed} == {m["name"] for m in listing()}


@pytest.mark.slow
@pytest.mark.tf  # builds the wheel with --no-build-isolation: the setuptools of the full install (.venv-core has none)
def test_the_wheel_carries_the_models_and_classifies_with_them(tmp_path, scans):
    """`pip install .` then `digits classify mlp <folder>`: the wheel, unpacked as pip
    installs it, run from another folder with no checkout on the path."""
    import shutil
    import tomllib

    pytest.importorskip("setuptools", reason="builds the wheel with this environment's setuptools")

    # Built from a copy: setuptools builds in the tree it is given (build/, *.egg-info).
    source = tmp_path / "source"
    setup = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    for folder in {"digits", *setup["package-dir"].values()}:
        shutil.copytree(ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    for file in ("pyproject.toml", "README.md"):
        shutil.copyfile(ROOT / file, source / file)
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                            "-w", tmp_path / "dist", source], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-2000:]
    wheel = next((tmp_path / "dist").glob("digits-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for name in listing():
        assert f"digits/models/{name['name']}/model.onnx" in names
    assert not any(n.startswith(("tests/", "runs/", "data/")) for n in names)
    # Under the project's name only: no top-level core/ or batch/ beside other packages' modules.
    assert {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")} == {"digits"}
    zipfile.ZipFile(wheel).extractall(tmp_path / "site")
    env = {"PYTHONPATH": str(tmp_path / "site"), "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-m", "digits", "classify", "mlp", scans, "--quiet"],
                            capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 21
    print(f"wheel: {wheel.name}, {wheel.stat().st_size / 1e6:.2f} MB")
