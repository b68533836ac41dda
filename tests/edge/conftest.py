"""Fixtures for the edge runtimes: real digits, the three model files, the runtimes' installs.

The models are built from `exported_onnx` (the float MLP) and from tests/data/cnn.onnx (a
small CNN, `digits train --model cnn`) with the exporter's own int8 and .ort steps, so
these tests run what `digits export --int8 --ort` ships.
"""

import csv
import io
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import COMMITTED_CNN, ROOT, run_digits

EDGE_DIGITS = 2000
NODE_EXAMPLE = ROOT / "examples" / "node"
WEB = ROOT / "web"
CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="session")
def edge_digits(sample, tmp_path_factory) -> tuple[Path, np.ndarray, np.ndarray]:
    """2,000 real digits (the sample's 1,000 test digits first) as an .npy: (path, digits, labels)."""
    digits = np.concatenate([sample.x_test, sample.x_train])[:EDGE_DIGITS]
    labels = np.concatenate([sample.y_test, sample.y_train])[:EDGE_DIGITS]
    path = tmp_path_factory.mktemp("edge-digits") / "digits.npy"
    np.save(path, digits)
    return path, digits, labels


def with_variants(float_model: Path, sample, folder: Path) -> dict[str, Path]:
    """{"onnx", "int8", "ort"}: the exported float model and its two variants, made as the export makes them."""
    from digits.exporter.ort_format import convert_to_ort
    from digits.exporter.quantize import calibration_digits, quantize_int8

    models = {"onnx": folder / "model.onnx", "int8": folder / "model.int8.onnx", "ort": folder / "model.ort"}
    shutil.copyfile(float_model, models["onnx"])
    quantize_int8(models["onnx"], models["int8"], calibration_digits(sample.x_train))
    convert_to_ort(models["onnx"], models["ort"])
    return models


@pytest.fixture(scope="session")
def edge_models(exported_onnx, sample, tmp_path_factory) -> dict[str, Path]:
    """The seed's MLP and its variants."""
    return with_variants(exported_onnx, sample, tmp_path_factory.mktemp("edge-models"))


@pytest.fixture(scope="session")
def cnn_edge_models(sample, tmp_path_factory) -> dict[str, Path]:
    """The committed small CNN and its variants: convolutions, int8 convolutions, a temperature."""
    assert COMMITTED_CNN.is_file(), COMMITTED_CNN
    return with_variants(COMMITTED_CNN, sample, tmp_path_factory.mktemp("edge-cnn-models"))


@pytest.fixture(params=["mlp", "cnn"])
def any_edge_models(request) -> dict[str, Path]:
    """Each model kind in turn, for the tests that hold every runtime to Python's answers."""
    return request.getfixturevalue("edge_models" if request.param == "mlp" else "cnn_edge_models")


def parse_rows(text: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """`digits classify --top-k 10` CSV -> (sources, labels int [N], probabilities float64 [N, 10] by class)."""
    rows = list(csv.DictReader(io.StringIO(text)))
    labels = np.array([int(r["label"]) for r in rows])
    probs = np.zeros((len(rows), 10))
    for i, r in enumerate(rows):
        for k in range(1, 11):
            probs[i, int(r[f"label_{k}"])] = float(r[f"prob_{k}"])
    return [r["source"] for r in rows], labels, probs


def python_rows(model: Path, *inputs) -> str:
    """What `digits classify MODEL INPUTS --top-k 10` prints."""
    result = run_digits("classify", model, *inputs, "--top-k", "10", "--quiet")
    assert result.returncode == 0, result.stderr
    return result.stdout


def require(path: Path, how: str) -> None:
    """The edge tests run the real runtimes; a missing install fails (never skips) and says how to get it."""
    if not path.exists():
        pytest.fail(f"{path} is missing: {how}", pytrace=False)


CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="session")
def web_server(edge_models):
    """web/serve.py, started as `make web` starts it, with the float model as the demo's model."""
    import subprocess
    import sys

    require(WEB / "node_modules" / "onnxruntime-web", "run `make web-deps` (npm ci in web/)")
    server = subprocess.Popen([sys.executable, str(WEB / "serve.py"), "--port", "0",
                               "--model", str(edge_models["onnx"])], stdout=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline()
        assert "http://127.0.0.1:" in line, line
        yield line.split()[-1]
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture(scope="session")
def browser():
    """Debian's chromium, driven by playwright; never a downloaded browser."""
    require(CHROMIUM, "install Debian's chromium: `make chromium` (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, web_server):
    """The page, opened fresh; files under /fixtures/NAME are served from the test's `fixtures` dict."""
    context = browser.new_context(accept_downloads=True, viewport={"width": 1200, "height": 900})
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.fixtures = {}

    def serve_fixture(route):
        name = route.request.url.split("/fixtures/", 1)[1]
        path = page.fixtures.get(name)
        if path is None:
            route.fulfill(status=404)
        else:
            route.fulfill(path=str(path), headers={"Content-Type": "application/octet-stream"})

    page.route("**/fixtures/**", serve_fixture)
    page.goto(web_server)
    page.wait_for_function("window.digitsPage !== undefined")
    yield page
    context.close()
    assert not errors, errors
