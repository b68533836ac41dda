"""One export, start to finish: nothing lands at --out unless every check passed.

Every file is written beside its destination under a temporary name, checked,
and only then moved into place, so a failed or interrupted export leaves no
model a user could mistake for a verified one.
"""

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from digits.files import check_target, refuse_overwriting, temp_beside, write_error, writing
from exporter.convert import (
    DEFAULT_OPSET,
    as_probabilities,
    check_classifier,
    keras_to_onnx,
    with_temperature,
)
from exporter.metadata import export_metadata, set_metadata, training_temperature
from exporter.parity import DEFAULT_ATOL, DEFAULT_RTOL, ParityError, check_parity

PARITY_DIGITS = 2000  # real digits compared on every export (test digits first)
# The int8 model's accuracy is measured on the test digits alone.


@dataclass
class Exported:
    """Where everything went: the model, its report, and any variants."""

    model: Path
    report: Path
    parity: dict
    variants: dict[str, Path] = field(default_factory=dict)


def sibling(out: Path, suffix: str) -> Path:
    """model.onnx -> model.int8.onnx, model.parity.json, model.ort ..."""
    return out.with_name(out.name.removesuffix(".onnx") + suffix)


def export(
    keras_path: Path,
    out: Path,
    data: Path | None = None,
    opset: int = DEFAULT_OPSET,
    atol: float = DEFAULT_ATOL,
    rtol: float = DEFAULT_RTOL,
    int8: bool = False,
    ort: bool = False,
    log=print,
) -> Exported:
    """Convert, prove parity, optionally quantize / convert to .ort, then move into place.

    Raises ModelError (bad input model), DataError (bad --data), ParityError
    (the checks failed; the report is still written) or DigitsError (unwritable).
    """
    import onnx

    from trainer.data import load_mnist
    from trainer.model import load_keras_model, predict_keras

    targets = {"model": out, "report": sibling(out, ".parity.json")}
    if int8:
        targets["int8"] = sibling(out, ".int8.onnx")
    if ort:
        targets["ort"] = sibling(out, ".ort")
    _check_targets(targets, keras_path, data)  # before any work: a bad --out costs nothing

    model = load_keras_model(keras_path)
    input_shape = check_classifier(model, str(keras_path))
    dataset = load_mnist(data, notice=log)
    digits = np.concatenate([dataset.x_test, dataset.x_train])[:PARITY_DIGITS]
    model, softmax_added = as_probabilities(model, predict_keras(model, digits), str(keras_path))
    if softmax_added:
        log(f"{keras_path}: the model gives logits, not probabilities: the export adds a softmax")
    temperature = training_temperature(keras_path)
    if temperature is not None and temperature != 1.0:
        model = with_temperature(model, temperature)
        log(f"{keras_path}: temperature {temperature:g} from metrics.json: the graph gives calibrated probabilities")

    onnx_model = keras_to_onnx(model, input_shape, opset)
    metadata = export_metadata(keras_path)
    if softmax_added:
        metadata["softmax_added"] = "the Keras model gives logits; probabilities = softmax(logits), added by digits export"
    if temperature is not None:
        metadata["temperature"] = repr(temperature)
    set_metadata(onnx_model, metadata)
    onnx.checker.check_model(onnx_model, full_check=True)

    # Hidden names that keep the suffix: onnxruntime tells .ort from .onnx by it.
    temps = {key: temp_beside(path) for key, path in targets.items()}
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        onnx.save(onnx_model, temps["model"])
        report = check_parity(model, temps["model"], digits, atol, rtol)
        report.context.update(data_source=dataset.source, opset=opset)
        if report.passed and int8:
            from exporter.quantize import QUANTIZATION, calibration_digits, check_int8, quantize_int8

            # Calibrated on training digits; checked on the test digits and the parity digits.
            quantize_int8(temps["model"], temps["int8"], calibration_digits(dataset.x_train))
            int8_model = onnx.load(temps["int8"])
            set_metadata(int8_model, {**metadata, "quantization": QUANTIZATION})
            onnx.save(int8_model, temps["int8"])
            report.checks["int8"] = check_int8(
                temps["model"], temps["int8"], dataset.x_test, dataset.y_test, real=digits, atol=atol, rtol=rtol
            )
        if report.passed and ort:
            from exporter.ort_format import check_ort, convert_to_ort

            convert_to_ort(temps["model"], temps["ort"])
            report.checks["ort"] = check_ort(temps["model"], temps["ort"], digits)

        log(report.table())
        for name, check in report.checks.items():
            log(_variant_line(name, check))
        # The report is evidence either way: it lands even when the check failed.
        temps["report"].write_text(json.dumps(report.to_json(), indent=2) + "\n")
        _move_into_place(temps["report"], targets["report"])
        if not report.passed:
            raise ParityError(report, str(out))
        for key in ("model", "int8", "ort"):
            if key in temps:
                _move_into_place(temps[key], targets[key])
    except OSError as e:  # a full disk while writing a variant or the report
        raise write_error(out, e) from e
    finally:
        for path in temps.values():
            path.unlink(missing_ok=True)

    return Exported(
        model=out,
        report=targets["report"],
        parity=report.to_json(),
        variants={k: v for k, v in targets.items() if k in ("int8", "ort")},
    )


def _check_targets(targets: dict[str, Path], keras_path: Path, data: Path | None) -> None:
    """OutputError when a file to be written is a folder or a device, or is one of the inputs."""
    for target in targets.values():
        check_target(target)
        refuse_overwriting(target, [keras_path, *([data] if data else [])], what="export")


def _move_into_place(temp: Path, target: Path) -> None:
    with writing(target):
        fd = os.open(temp, os.O_RDONLY)
        try:
            os.fsync(fd)  # on disk before the rename makes it the real file
        finally:
            os.close(fd)
        os.replace(temp, target)


def _variant_line(name: str, check: dict) -> str:
    mark = "✓" if check["passed"] else "✗"
    if name == "int8":
        return (
            f"[{mark}] int8: labels agree {check['label_agreement']:.2%}, accuracy {check['float_accuracy']:.4f} -> "
            f"{check['int8_accuracy']:.4f}, weights {check['weight_ratio']:.0%} of float (file {check['size_ratio']:.0%}); alone vs in a batch: "
            f"{check['batch_max_abs_diff']:.2e}, onnxruntime vs reference: {check['reference_max_abs_diff']:.2e}"
        )
    return f"[{mark}] ort: labels agree {check['label_agreement']:.2%} with the .onnx model"
