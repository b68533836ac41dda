"""The models that come inside the package (`make pretrained`): digits/models/<name>/ holds
model.onnx, model.int8.onnx, metrics.json, model.parity.json and provenance.json. Only the
folder's place is known here, never the `digits` package imported: the floor stays a floor.
"""

import json
import os
from pathlib import Path

_ABOVE = Path(__file__).resolve().parent.parent  # installed: the digits package; in a clone: the clone
FOLDER = _ABOVE / "models" if (_ABOVE / "models").is_dir() else _ABOVE / "digits" / "models"
NAMES = ("cnn", "mlp")
INT8 = ".int8"  # `mlp.int8`: the bundled model's int8 variant


def model_path(text: str | Path) -> Path:
    """A model argument as a path: `text` itself when something of that name exists, else the
    bundled model it names (`cnn`: model.onnx; `cnn.int8`: model.int8.onnx), else `text` as
    given, for the loader to say what is wrong with it."""
    path = Path(text)
    if os.path.lexists(path):  # false too for a name that cannot be looked up: the loader says why
        return path
    name, int8 = (str(text)[: -len(INT8)], True) if str(text).endswith(INT8) else (str(text), False)
    bundled = FOLDER / name / ("model.int8.onnx" if int8 else "model.onnx")
    return bundled if name in NAMES and bundled.is_file() else path


def listing() -> list[dict]:
    """Each bundled model that is present: name, test accuracy (float and int8, from its
    parity report), the two files' sizes in bytes, and its folder."""
    models = []
    for name in NAMES:
        folder = FOLDER / name
        if not (folder / "provenance.json").is_file():
            continue
        provenance = json.loads((folder / "provenance.json").read_text())
        int8 = json.loads((folder / "model.parity.json").read_text()).get("int8", {})
        models.append({"name": name, "test_accuracy": provenance["test_accuracy"],
                       "int8_test_accuracy": int8.get("int8_accuracy"),
                       "bytes": (folder / "model.onnx").stat().st_size,
                       "int8_bytes": (folder / "model.int8.onnx").stat().st_size,
                       "folder": str(folder)})
    return models
