"""Digits per second of exported models (and Keras, for comparison), measured side by side."""

import statistics
import time
from pathlib import Path

import numpy as np

from digits.core.contract import IMAGE_SIZE

BATCH_SIZES = (1, 64, 1024, 8192)
MIN_SECONDS = 0.3  # per model and batch size: enough repeats for a stable median
MIN_REPEATS = 5
MAX_REPEATS = 2000


def _median_seconds(run) -> float:
    run()  # warm-up: first-call allocations are not throughput
    times: list[float] = []
    while len(times) < MIN_REPEATS or (sum(times) < MIN_SECONDS and len(times) < MAX_REPEATS):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def models_to_bench(paths: list[Path]) -> tuple[dict[str, Path], Path | None]:
    """({name: ONNX model}, the Keras model or None) from the user's list; a model's .int8.onnx
    beside it joins the comparison without being named."""
    from digits.core.errors import ModelError
    from digits.core.files import require_file
    from digits.exporter.export import sibling

    onnx_models: dict[str, Path] = {}
    keras_path = None
    for path in paths:
        require_file(path, "model file", ModelError)
        if path.suffix == ".keras":
            keras_path = path
        elif path.suffix in (".onnx", ".ort"):
            onnx_models[path.name] = path
            int8 = sibling(path, ".int8.onnx")
            if path.suffix == ".onnx" and not path.name.endswith(".int8.onnx") and int8.is_file():
                onnx_models[int8.name] = int8
        else:
            raise ModelError(f"{path}: not an .onnx, .ort or .keras model")
    if not onnx_models:
        raise ModelError("bench needs at least one .onnx model")
    return onnx_models, keras_path


def measure(models: dict[str, Path], keras_path: Path | None, batch_sizes=BATCH_SIZES, seed: int = 0) -> dict:
    """{model name: {batch size: digits/s}} for each ONNX model and, given, the Keras model."""
    from digits.batch.model import OnnxClassifier

    rng = np.random.default_rng(seed)
    digits = rng.integers(0, 256, size=(max(batch_sizes), IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    results: dict[str, dict[int, float]] = {}
    for name, path in models.items():
        # The classifier `digits classify` uses: it takes every model classify takes
        # (plain float ones too) and refuses the others with one line, at load.
        classifier = OnnxClassifier(path)
        results[name] = {
            b: b / _median_seconds(lambda b=b, c=classifier: c.predict(digits[:b]))
            for b in batch_sizes
        }
    if keras_path is not None:
        from digits.core.errors import require_extra
        from digits.trainer.model import check_classifier, load_keras_model, model_input

        require_extra("train", "benchmarking a .keras model", ("tensorflow", "keras"))
        model = load_keras_model(keras_path)
        check_classifier(model, str(keras_path))
        pixels = model_input(digits, tuple(model.inputs[0].shape))
        results["keras predict"] = {
            b: b / _median_seconds(lambda b=b: model.predict(pixels[:b], batch_size=b, verbose=0))
            for b in batch_sizes
        }
    return results


def format_table(results: dict) -> str:
    names = list(results)
    batch_sizes = list(next(iter(results.values())))
    width = max(16, *(len(n) + 2 for n in names))
    lines = [f"{'batch':>7}" + "".join(f"{n + ' d/s':>{width + 4}}" for n in names)]
    keras = results.get("keras predict")
    if keras:
        lines[0] += "".join(f"{n + ' / keras':>{width + 8}}" for n in names if n != "keras predict")
    for b in batch_sizes:
        row = f"{b:>7}" + "".join(f"{results[n][b]:>{width + 4},.0f}" for n in names)
        if keras:
            row += "".join(f"{results[n][b] / keras[b]:>{width + 7}.1f}x" for n in names if n != "keras predict")
        lines.append(row)
    return "\n".join(lines)
