"""The ONNX Runtime Mobile variant (.ort), through onnxruntime's own converter."""

import contextlib
import io
import logging
import shutil
import tempfile
from pathlib import Path

import numpy as np

from digits.exporter.parity import Check


def convert_to_ort(onnx_path: Path, ort_path: Path) -> None:
    from onnxruntime.tools.convert_onnx_models_to_ort import OptimizationStyle, convert_onnx_models_to_ort

    # The converter works on folders of *.onnx and names its output after the input.
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp, "model.onnx")
        shutil.copyfile(onnx_path, source)
        logging.getLogger("ort_format_model.utils").setLevel(logging.WARNING)
        with contextlib.redirect_stdout(io.StringIO()):  # it narrates each step on stdout
            convert_onnx_models_to_ort(source, output_dir=Path(tmp, "out"),
                                       optimization_styles=[OptimizationStyle.Fixed])
        shutil.move(Path(tmp, "out", "model.ort"), ort_path)


def check_ort(onnx_path: Path, ort_path: Path, digits: np.ndarray) -> Check:
    """The .ort file must load and give the .onnx model's labels."""
    from digits.batch.model import OnnxClassifier

    agreement = float((OnnxClassifier(onnx_path).labels(digits) == OnnxClassifier(ort_path).labels(digits)).mean())
    failures = [] if agreement == 1.0 else [f"labels agree with the .onnx model on {agreement:.2%}"]
    return Check("ort", {"samples": int(len(digits)), "label_agreement": agreement}, failures,
                 f"labels agree {agreement:.2%} with the .onnx model")
