"""One export, start to finish: nothing lands at --out unless every check passed.

Every file is written beside its destination under a temporary name, checked,
and only then moved into place (core.atomic.atomic_folder_files), so a failed
export leaves no model a user could mistake for a verified one. They land in a fixed
order, the parity report last: it names each file's sha256, so a file beside a report
that does not name it (Ctrl-C between two renames) is told (`digits inspect` says it).
A failed check's report is evidence: it lands alone (core.atomic.atomic_path).
"""

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.atomic import atomic_folder_files, atomic_path, check_target, json_text
from core.errors import DataError, UsageError
from core.files import (
    refuse_overwriting,
    write_error,
    writing,
)
from exporter.convert import (
    DEFAULT_OPSET,
    as_probabilities,
    check_classifier,
    keras_to_onnx,
    with_temperature,
)
from exporter.metadata import export_metadata, set_metadata, sha256_of, training_temperature
from exporter.parity import DEFAULT_ATOL, DEFAULT_RTOL, ParityError, check_parity

VARIANTS = ("int8", "ort", "tflite", "int8_tflite", "micro_tflite", "micro_cc", "micro_h")
PARITY_DIGITS = 2000  # real digits compared on every export (test digits first)
MICRO_CHECK_DIGITS = 1000  # TFLite Micro against LiteRT: at least this many of the parity digits
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
    tflite: bool = False,
    micro: bool = False,
    log=print,
) -> Exported:
    """Convert, prove parity, optionally quantize / convert to .ort / .tflite, then move into place.

    `tflite` writes MODEL.tflite (and MODEL.int8.tflite with `int8`); `micro`, which
    needs both (its check compares against MODEL.int8.tflite), writes MODEL.micro.tflite,
    .micro.cc and .micro.h. Raises UsageError (micro without tflite and int8), ModelError
    (bad input model, or an op TFLite Micro lacks), DataError (bad --data), ParityError
    (the checks failed; the report is still written) or DigitsError (unwritable).
    """
    import onnx

    if micro and not (tflite and int8):
        raise UsageError("--micro needs --tflite and --int8: the micro model is checked against MODEL.int8.tflite")

    from trainer.data import load_mnist
    from trainer.model import load_keras_model, predict_keras

    targets = {"model": out, "report": sibling(out, ".parity.json")}
    if int8:
        targets["int8"] = sibling(out, ".int8.onnx")
    if ort:
        targets["ort"] = sibling(out, ".ort")
    if tflite:
        targets["tflite"] = sibling(out, ".tflite")
        if int8:
            targets["int8_tflite"] = sibling(out, ".int8.tflite")
    if micro:
        for key, suffix in (("micro_tflite", ".micro.tflite"), ("micro_cc", ".micro.cc"), ("micro_h", ".micro.h")):
            targets[key] = sibling(out, suffix)
    _check_targets(targets, keras_path, data)  # before any work: a bad --out costs nothing

    model = load_keras_model(keras_path)
    input_shape = check_classifier(model, str(keras_path))
    dataset = load_mnist(data, notice=log)
    digits = np.concatenate([dataset.x_test, dataset.x_train])[:PARITY_DIGITS]
    if micro and len(digits) < MICRO_CHECK_DIGITS:
        raise DataError(f"{dataset.source}: {len(digits):,} digits; the --micro check needs at least "
                        f"{MICRO_CHECK_DIGITS:,} (test and training digits together)")
    model, softmax_added = as_probabilities(model, predict_keras(model, digits), str(keras_path))
    if softmax_added:
        log(f"{keras_path}: the model gives logits, not probabilities: the export adds a softmax")
    temperature = training_temperature(keras_path)
    if temperature is None and (keras_path.parent / "metrics.json").is_file():
        log(f"{keras_path}: the metrics.json beside it names no temperature for this very file "
            "(another model's, or a train cut short): exported without one")
    if temperature is not None and temperature != 1.0:
        model = with_temperature(model, temperature)
        log(f"{keras_path}: temperature {temperature:g} from metrics.json: the graph gives calibrated probabilities")

    onnx_model = keras_to_onnx(model, input_shape, opset)
    metadata = export_metadata(keras_path)
    if softmax_added:
        metadata["softmax_added"] = (
            "the Keras model gives logits; probabilities = softmax(logits), added by digits export")
    if temperature is not None:
        metadata["temperature"] = repr(temperature)
    set_metadata(onnx_model, metadata)
    onnx.checker.check_model(onnx_model, full_check=True)
    if tflite:
        from exporter.litert import convert_all

        # Converted before any check: a model the converter or TFLite Micro refuses costs no check time.
        litert_files = convert_all(model, input_shape, dataset.x_train, metadata, int8, micro, str(keras_path))

    with writing(out):
        out.parent.mkdir(parents=True, exist_ok=True)
    # The files land when the block ends, and only if it ends without an exception, the
    # report last (it names each file's sha256: the set's manifest); their temporary names
    # keep the suffix (onnxruntime tells .ort from .onnx by it).
    models = {key: path for key, path in targets.items() if key != "report"}
    with atomic_folder_files({**models, "report": targets["report"]}) as temps:
        try:
            # A variant is made only while every check before it passed: a failed export stops early.
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
            if report.passed and tflite:
                from exporter.litert import check_all

                check_all(litert_files, temps, model, dataset, digits, atol, rtol, report,
                          header_name=targets["micro_h"].name if micro else "")
        except OSError as e:  # a full disk while writing a model: named by --out, the export's name
            raise write_error(out, e) from e
        log(report.table())
        for name, check in report.checks.items():
            log(_variant_line(name, check))
        if not report.passed:  # the report is evidence: it lands alone, no model with it
            with atomic_path(targets["report"]) as report_temp:
                report_temp.write_text(json_text(report.to_json()))
            raise ParityError(report, str(out))
        report.context["files_sha256"] = {path.name: sha256_of(temps[key]) for key, path in models.items()}
        with writing(targets["report"]):
            temps["report"].write_text(json_text(report.to_json()))

    return Exported(
        model=out,
        report=targets["report"],
        parity=report.to_json(),
        variants={k: v for k, v in targets.items() if k in VARIANTS},
    )


def _check_targets(targets: dict[str, Path], keras_path: Path, data: Path | None) -> None:
    """OutputError when a file to be written is a folder or a device, or is one of the inputs
    (the model, the metrics.json beside it, --data), by what each names."""
    reads = [keras_path, keras_path.parent / "metrics.json", *([data] if data else [])]
    for target in targets.values():
        check_target(target)
        refuse_overwriting(target, reads, what="export")


def _variant_line(name: str, check: dict) -> str:
    mark = "✓" if check["passed"] else "✗"
    if name in ("tflite", "int8_tflite", "micro"):
        from exporter.litert import variant_line

        return variant_line(name, check)
    if name == "int8":
        return (
            f"[{mark}] int8: labels agree {check['label_agreement']:.2%}, accuracy {check['float_accuracy']:.4f} -> "
            f"{check['int8_accuracy']:.4f}, weights {check['weight_ratio']:.0%} of float "
            f"(file {check['size_ratio']:.0%}); alone vs in a batch: "
            f"{check['batch_max_abs_diff']:.2e}, onnxruntime vs reference: {check['reference_max_abs_diff']:.2e}"
        )
    return f"[{mark}] ort: labels agree {check['label_agreement']:.2%} with the .onnx model"
