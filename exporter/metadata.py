"""What a deployer reads from an exported file's metadata_props."""

import hashlib
import json
import re
from datetime import UTC, datetime
from pathlib import Path

from digits.core.contract import CLASS_LABELS, IMAGE_SIZE, INPUT_NAME, LABEL, NUM_CLASSES, PROBABILITIES

# LeCun's recipe, as batch/decode.py applies it to an image of any size.
DIGIT_FORM = (
    "one MNIST-style digit per row: white (255) ink on black (0), fit into 20x20 keeping its "
    f"aspect ratio and placed so that its centre of mass lies at the centre of the {IMAGE_SIZE}x{IMAGE_SIZE} "
    "field; no preprocessing needed."
)
INPUT_CONTRACT = (
    f"{INPUT_NAME}: uint8 [batch, {IMAGE_SIZE}, {IMAGE_SIZE}], {DIGIT_FORM} "
    f"Outputs: {PROBABILITIES} float32 [batch, {NUM_CLASSES}] (softmax), {LABEL} int64 [batch] (argmax)."
)
# Each file an export may write, in the order they are made and land: its key names its target,
# its temporary file and its check in MODEL.parity.json ("model": the parity check, the report's head).
SUFFIXES = {"model": ".onnx", "int8": ".int8.onnx", "ort": ".ort", "tflite": ".tflite", "int8_tflite": ".int8.tflite",
            "micro": ".micro.tflite", "micro_cc": ".micro.cc", "micro_h": ".micro.h", "report": ".parity.json"}


def sha256_of(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


# A word holding a "/name": a path. A shipped model records what data it was trained on, not where
# it lay on someone's disk: each path (/home/..., ~/..., data/mnist.npz) is cut to its last name.
_PATH = re.compile(r"(?<![^\s(])[^\s(),/]*(?:/[^\s(),/]+)+/?")


def training_metrics(keras_path: Path) -> dict:
    """test_accuracy and data_source from the trainer's metrics.json beside the model, if any."""
    try:
        metrics = json.loads((keras_path.parent / "metrics.json").read_text())
    except (OSError, ValueError):
        return {}
    found = {k: str(metrics[k]) for k in ("test_accuracy", "data_source") if k in metrics}
    if "data_source" in found:  # a metrics.json written before sources named files, not paths
        found["data_source"] = _PATH.sub(lambda m: Path(m.group()).name or m.group(), found["data_source"])
    return found


def _own_metrics(keras_path: Path, key: str) -> dict:
    """metrics.json's `key` section (beside the model), if that metrics.json names this very file
    (its model_sha256), else {}: a model copied over another run's keeps what it was trained to give."""
    try:
        metrics = json.loads((keras_path.parent / "metrics.json").read_text())
        section = metrics[key]
        if metrics["model_sha256"] != sha256_of(keras_path):
            return {}
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    return section if isinstance(section, dict) else {}


def training_temperature(keras_path: Path) -> float | None:
    """The temperature `digits train` fitted, from the metrics.json that names this very file."""
    value = _own_metrics(keras_path, "calibration").get("temperature")
    return float(value) if isinstance(value, (int, float)) and value > 0 else None


def training_digit_threshold(keras_path: Path) -> dict[str, str]:
    """`digit_score_method` and `digit_score_threshold` (the score at which `digits train` kept
    99% of the validation digits), from the metrics.json that names this very file; else {}."""
    scored = _own_metrics(keras_path, "digit_score")
    threshold, method = scored.get("threshold"), scored.get("method")
    if not isinstance(threshold, (int, float)) or not 0 <= threshold <= 1 or method is None:
        return {}
    return {"digit_score_method": str(method), "digit_score_threshold": repr(float(threshold))}


def export_metadata(keras_path: Path) -> dict[str, str]:
    import keras
    import onnx
    import tensorflow as tf
    import tf2onnx

    return {
        "class_labels": json.dumps(list(CLASS_LABELS)),
        "input_contract": INPUT_CONTRACT,
        **training_metrics(keras_path),
        **training_digit_threshold(keras_path),
        "source_model": keras_path.name,
        "source_sha256": sha256_of(keras_path),
        "keras_version": keras.__version__,
        "tensorflow_version": tf.__version__,
        "tf2onnx_version": tf2onnx.__version__,
        "onnx_version": onnx.__version__,
        "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "exported_by": "digits export",
    }

