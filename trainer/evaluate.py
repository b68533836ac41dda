"""Scoring a saved model (.keras, .onnx or .tflite) on a data set's test digits."""

import json
from pathlib import Path

import numpy as np

from digits.core.errors import ModelError, require_extra
from digits.core.terminal import LINE_LIMIT, printable


def predict_file(model_path: Path, digits: np.ndarray) -> np.ndarray:
    """Probabilities float32 [N, 10] from a .keras, .onnx or .tflite model; TensorFlow is imported for .keras alone."""
    suffix = model_path.suffix.lower()
    if suffix in (".onnx", ".tflite"):
        from digits.batch.model import load_classifier

        return load_classifier(model_path).predict(digits)
    if suffix == ".keras":
        from digits.batch.scores import probabilities_from
        from digits.trainer.model import check_classifier, load_keras_model, predict_keras

        require_extra("train", "evaluating a .keras model", ("tensorflow", "keras"))
        model = load_keras_model(model_path)
        check_classifier(model, str(model_path))  # what export refuses, evaluate refuses too
        # Logits are scored as their softmax, as `digits export` ships them and classify reads them.
        return probabilities_from(predict_keras(model, digits))
    raise ModelError(f"{model_path}: unknown model type '{suffix}'; give a .keras, .onnx or .tflite file")


SAMPLE_SOURCE = "bundled sample"  # how trainer/data/sample.py's source begins


def seen_test_digits_warning(model_path: Path, data_source: str) -> str | None:
    """One line when the test digits are the bundled sample's and the model was trained on
    other data: the sample's 1,000 test digits are MNIST *training* digits, which a model
    trained on full MNIST has seen, so its score on them overstates it. Where the model was trained is
    what an .onnx model's metadata or the metrics.json beside a .keras records."""
    if not data_source.startswith(SAMPLE_SOURCE):
        return None
    try:
        if model_path.suffix.lower() == ".onnx":
            import onnx

            meta = {p.key: p.value for p in onnx.load(model_path, load_external_data=False).metadata_props}
            trained_on = meta.get("data_source")
        else:
            trained_on = json.loads((model_path.parent / "metrics.json").read_text()).get("data_source")
    except Exception:  # unrecorded is unknown: the score itself is still right
        return None
    trained_on = "" if trained_on is None else str(trained_on)  # a metrics.json someone else wrote may hold anything
    if not trained_on or trained_on.startswith(SAMPLE_SOURCE):
        return None
    model_path, trained_on = printable(model_path, LINE_LIMIT), printable(trained_on)  # from the model: untrusted
    return (
        f"warning: {model_path} was trained on {trained_on}; the bundled sample's test digits are MNIST "
        f"training digits, which a model trained on MNIST has seen: this score overstates it (use the genuine "
        f"test set, `make mnist` then --data data/mnist)"
    )
