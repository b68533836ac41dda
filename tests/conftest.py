"""Shared fixtures: small real digits, and running the `digits` program."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from trainer.data import Mnist
from trainer.data.sample import load_sample

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def sample() -> Mnist:
    """The bundled 5,000 real MNIST digits (4,000 train / 1,000 test)."""
    return load_sample()


@pytest.fixture(scope="session")
def small(sample) -> Mnist:
    """600 train and 200 test real digits: enough to train a few epochs in seconds."""
    return Mnist(sample.x_train[:600], sample.y_train[:600], sample.x_test[:200], sample.y_test[:200], "small")


@pytest.fixture(scope="session")
def small_npz(small, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "mnist.npz"
    np.savez(path, x_train=small.x_train, y_train=small.y_train, x_test=small.x_test, y_test=small.y_test)
    return path


def run_digits(*args: str, stdin: str | None = None, env: dict | None = None, cwd=None) -> subprocess.CompletedProcess:
    """Run the installed program as a user would, capturing its output."""
    return subprocess.run(
        [sys.executable, "-m", "digits", *map(str, args)],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=cwd or ROOT,
        env={**os.environ, **(env or {})},
        timeout=600,
    )


HEAVY_MODULES = ("tensorflow", "keras", "onnxruntime", "cv2")


def run_fresh(argv: list) -> tuple[str, set[str]]:
    """Run `digits ARGV` in a fresh interpreter: (its stdout, the heavy modules it imported)."""
    marker = "--- heavy modules:"
    code = (
        "import sys\nfrom digits.cli import app\n"
        f"try:\n    app({[str(a) for a in argv]!r})\nexcept SystemExit:\n    pass\n"
        f"print({marker!r}, *sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY_MODULES!r})))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    stdout, _, heavy = result.stdout.rpartition(marker)
    assert _, result.stdout + result.stderr
    return stdout, set(heavy.split())


def assert_one_line_error(result: subprocess.CompletedProcess, code: int, *fragments: str) -> None:
    """A user error ends in exit `code` and one stderr line naming what and where; no traceback."""
    assert result.returncode == code, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("digits: error:")]
    assert len(errors) == 1, result.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


def run_main(argv: list, capsys) -> tuple[int, str, str]:
    """Run `digits` in this process (so tests can patch it): (exit code, stdout, stderr)."""
    from digits.cli import main

    old = sys.argv
    sys.argv = ["digits", *map(str, argv)]
    try:
        main()
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        sys.argv = old
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="session")
def trained_mlp(small, tmp_path_factory) -> Path:
    """A seed MLP trained 3 epochs on the small real digits, saved with a metrics.json beside it."""
    import json

    from trainer.fit import Recipe, train

    folder = tmp_path_factory.mktemp("mlp")
    trained = train(small, Recipe(epochs=3, batch_size=64), verbose=0, summary=lambda _: None)
    trained.model.save(folder / "model.keras")
    (folder / "metrics.json").write_text(json.dumps({"test_accuracy": 0.9, "data_source": "small test set"}))
    return folder / "model.keras"


@pytest.fixture(scope="session")
def exported_onnx(trained_mlp, small_npz, tmp_path_factory) -> Path:
    """The trained MLP exported (parity-checked) to ONNX."""
    from exporter.export import export

    out = tmp_path_factory.mktemp("onnx") / "model.onnx"
    export(trained_mlp, out, data=small_npz, log=lambda _: None)
    return out
