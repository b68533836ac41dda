"""Scoring a saved model (.keras or .onnx) on a data set's test digits."""

from pathlib import Path

import numpy as np

from core.errors import ModelError


def predict_file(model_path: Path, digits: np.ndarray) -> np.ndarray:
    """Probabilities float32 [N, 10] from a .keras model (TensorFlow), an .onnx model
    (onnxruntime only) or a .tflite model (LiteRT only); TensorFlow is imported for .keras alone."""
    suffix = model_path.suffix.lower()
    if suffix in (".onnx", ".tflite"):
        from batch.model import load_classifier

        return load_classifier(model_path).predict(digits)
    if suffix == ".keras":
        from batch.scores import as_probabilities
        from trainer.backend import require_train_extra
        from trainer.model import check_classifier, load_keras_model, predict_keras

        require_train_extra("evaluating a .keras model")

        model = load_keras_model(model_path)
        check_classifier(model, str(model_path))  # what export refuses, evaluate refuses too
        # Logits are scored as their softmax, as `digits export` ships them and classify reads them.
        return as_probabilities(predict_keras(model, digits))
    raise ModelError(f"{model_path}: unknown model type '{suffix}'; give a .keras, .onnx or .tflite file")
