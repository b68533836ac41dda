"""One export, start to finish: export() plans the files, converts, then runs the variants in order,
each writing its temporary file and giving its check; nothing lands at --out unless every check passed.
"""

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from digits.core.atomic import atomic_folder_files, atomic_path, check_target, json_text
from digits.core.errors import DataError, UsageError
from digits.core.files import refuse_overwriting, write_error, writing
from digits.exporter.convert import DEFAULT_OPSET, as_probabilities, keras_to_onnx, with_temperature
from digits.exporter.metadata import SUFFIXES, export_metadata, sha256_of, training_temperature
from digits.exporter.parity import DEFAULT_ATOL, DEFAULT_RTOL, ParityError, check_parity, keras_answers, table

PARITY_DIGITS = 2000  # real digits compared on every export (test digits first)
MICRO_CHECK_DIGITS = 1000  # TFLite Micro against LiteRT: at least this many of the parity digits


@dataclass
class Exported:
    """Where everything went: the model, its report (and its JSON), and any variants."""

    model: Path
    report: Path
    parity: dict
    variants: dict[str, Path] = field(default_factory=dict)


@dataclass
class Job:
    """What the variants share, made once per export: the parity digits and Keras's answers on them
    (parity.keras_answers), the converted files, and where each file goes."""

    onnx_model: object
    metadata: dict
    dataset: object
    digits: np.ndarray  # the real digits, the parity's first case
    answers: list
    atol: float
    rtol: float
    targets: dict[str, Path]
    litert: dict[str, bytes] = field(default_factory=dict)  # exporter.litert.convert_all's files
    temps: dict[str, Path] = field(default_factory=dict)


def sibling(out: Path, suffix: str) -> Path:
    """model.onnx -> model.int8.onnx, model.parity.json, model.ort ..."""
    return out.with_name(out.name.removesuffix(".onnx") + suffix)


def plan(out: Path, int8: bool, ort: bool, tflite: bool, micro: bool) -> dict[str, Path]:
    """The files an export writes, by key (SUFFIXES), the report last."""
    wanted = {"int8": int8, "ort": ort, "tflite": tflite, "int8_tflite": tflite and int8,
              "micro": micro, "micro_cc": micro, "micro_h": micro}
    return {key: out if key == "model" else sibling(out, suffix) for key, suffix in SUFFIXES.items()
            if wanted.get(key, True)}


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
    """Convert, prove parity, write the variants asked for (`digits export`'s flags), then move into place.

    Raises UsageError (micro without tflite and int8), ModelError (bad input model, or an op
    TFLite Micro lacks), DataError (bad --data), ParityError (a check failed; the report is
    still written) or DigitsError (unwritable).
    """
    if micro and not (tflite and int8):
        raise UsageError("--micro needs --tflite and --int8: the micro model is checked against MODEL.int8.tflite")
    targets = plan(out, int8, ort, tflite, micro)
    reads = [keras_path, keras_path.parent / "metrics.json", *([data] if data else [])]
    for target in targets.values():  # before any work: a bad --out costs nothing
        check_target(target)
        refuse_overwriting(target, reads, what="export")
    job = _convert(keras_path, data, opset, atol, rtol, targets, log)

    with writing(out):
        out.parent.mkdir(parents=True, exist_ok=True)
    # The files land when the block ends, and only if it ends without an exception, the report
    # last; their temporary names keep the suffix (onnxruntime tells .ort from .onnx by it).
    with atomic_folder_files(targets) as job.temps:
        checks = {}
        try:
            for key, variant in VARIANTS.items():  # a variant is made only while every check before it passed
                if key in targets:
                    checks[key] = variant(job)
                    if not checks[key].passed:
                        break
        except OSError as e:  # a full disk while writing a model: named by --out, the export's name
            raise write_error(out, e) from e
        parity = checks.pop("model")
        log(table(parity))
        for check in checks.values():
            log(check.line())
        report = {**parity.to_json(), **{key: check.to_json() for key, check in checks.items()},
                  "data_source": job.dataset.source, "opset": opset}
        failed = next((check for check in (parity, *checks.values()) if not check.passed), None)
        report["passed"] = failed is None
        if failed:  # the report is evidence: it lands alone, no model with it
            with atomic_path(targets["report"]) as report_temp:
                report_temp.write_text(json_text(report))
            raise ParityError(failed, str(out))
        report["files_sha256"] = {path.name: sha256_of(job.temps[key]) for key, path in targets.items()
                                  if key != "report"}
        with writing(targets["report"]):
            job.temps["report"].write_text(json_text(report))
    variants = {key: path for key, path in targets.items() if key not in ("model", "report")}
    return Exported(model=out, report=targets["report"], parity=report, variants=variants)


def _convert(keras_path: Path, data: Path | None, opset: int, atol: float, rtol: float,
             targets: dict[str, Path], log) -> Job:
    """Load the model and the digits, make it give (calibrated) probabilities, convert it to
    ONNX (and LiteRT with --tflite), and take Keras's answers on the parity digits."""
    import onnx

    from digits.trainer.data import load_mnist
    from digits.trainer.model import check_classifier, load_keras_model, predict_keras

    model = load_keras_model(keras_path)
    input_shape = check_classifier(model, str(keras_path))
    dataset = load_mnist(data, notice=log)
    digits = np.concatenate([dataset.x_test, dataset.x_train])[:PARITY_DIGITS]
    if "micro" in targets and len(digits) < MICRO_CHECK_DIGITS:
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
        metadata["softmax_added"] = ("the Keras model gives logits; probabilities = softmax(logits), "
                                     "added by digits export")
    if temperature is not None:
        metadata["temperature"] = repr(temperature)
    onnx.helper.set_model_props(onnx_model, metadata)
    onnx.checker.check_model(onnx_model, full_check=True)
    job = Job(onnx_model, metadata, dataset, digits, [], atol, rtol, targets)
    if "tflite" in targets:
        from digits.exporter.litert import convert_all

        # Converted before any check: a model the converter or TFLite Micro refuses costs no check time.
        job.litert = convert_all(model, input_shape, dataset.x_train, metadata, "int8_tflite" in targets,
                                 "micro" in targets, str(keras_path))
    job.answers = keras_answers(model, digits)
    return job


def _model(job: Job):
    import onnx

    onnx.save(job.onnx_model, job.temps["model"])
    return check_parity(job.answers, job.temps["model"], job.atol, job.rtol)


def _int8(job: Job):
    import onnx

    from digits.exporter.quantize import QUANTIZATION, calibration_digits, check_int8, quantize_int8

    temps = job.temps  # calibrated on training digits; checked on the test digits and the parity digits
    quantize_int8(temps["model"], temps["int8"], calibration_digits(job.dataset.x_train))
    int8_model = onnx.load(temps["int8"])
    onnx.helper.set_model_props(int8_model, {**job.metadata, "quantization": QUANTIZATION})
    onnx.save(int8_model, temps["int8"])
    return check_int8(temps["model"], temps["int8"], job.dataset.x_test, job.dataset.y_test,
                      real=job.digits, atol=job.atol, rtol=job.rtol)


def _ort(job: Job):
    from digits.exporter.ort_format import check_ort, convert_to_ort

    convert_to_ort(job.temps["model"], job.temps["ort"])
    return check_ort(job.temps["model"], job.temps["ort"], job.digits)


def _tflite(job: Job):
    from digits.exporter.litert import check_tflite

    job.temps["tflite"].write_bytes(job.litert["float"])
    return check_tflite(job.answers, job.temps["tflite"], job.atol, job.rtol)


def _int8_tflite(job: Job):
    from digits.exporter.litert import check_tflite_int8

    temps = job.temps
    temps["int8_tflite"].write_bytes(job.litert["int8"])
    return check_tflite_int8(temps["tflite"], temps["int8_tflite"], job.dataset.x_test, job.dataset.y_test,
                             job.digits, job.atol, job.rtol)


def _micro(job: Job):
    """The micro file, checked in TFLite Micro, and its C source (.micro.cc includes .micro.h by its final name)."""
    from digits.exporter.micro import c_source, check_micro, measure_arena

    content, temps = job.litert["micro"], job.temps
    temps["micro"].write_bytes(content)
    arena = measure_arena(content, job.digits[0])
    source, header = c_source(content, job.targets["micro_h"].name, arena, job.metadata.get("digit_score_threshold"))
    temps["micro_cc"].write_text(source)
    temps["micro_h"].write_text(header)
    return check_micro(temps["micro"], temps["int8_tflite"], job.digits, arena)


# The checked files, in the order they are made: each writes its temporary file(s) and gives its check.
VARIANTS = {"model": _model, "int8": _int8, "ort": _ort, "tflite": _tflite, "int8_tflite": _int8_tflite,
            "micro": _micro}
