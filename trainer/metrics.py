"""Scores from predicted probabilities; numpy only, so ONNX models are scored alike."""

import numpy as np

from digits.core.contract import NUM_CLASSES

EPSILON = 1e-7  # Keras clips probabilities the same way in its cross-entropy


def score(probabilities: np.ndarray, labels: np.ndarray) -> dict:
    """Accuracy (0..1), cross-entropy loss, per-class accuracy and the confusion matrix."""
    predicted = probabilities.argmax(axis=1)
    # rows: true labels, columns: predicted labels
    matrix = np.bincount(labels * NUM_CLASSES + predicted, minlength=NUM_CLASSES**2).reshape(NUM_CLASSES, NUM_CLASSES)
    counts = matrix.sum(axis=1)
    # A class with no test digits has no accuracy (null in metrics.json), not 0.0.
    per_class = [float(right) / count if count else None for right, count in zip(matrix.diagonal(), counts)]
    chosen = np.clip(probabilities[np.arange(len(labels)), labels], EPSILON, 1.0)
    return {
        "test_accuracy": float((predicted == labels).mean()),
        "test_loss": float(-np.log(chosen).mean()),
        "test_size": int(len(labels)),
        "per_class_accuracy": {str(c): None if a is None else round(a, 6) for c, a in enumerate(per_class)},
        "confusion_matrix": matrix.tolist(),
    }
