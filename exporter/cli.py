"""`digits export`, `digits inspect` and `digits bench`."""

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from digits.core.atomic import json_text
from digits.core.bundled import model_path
from digits.core.files import file_name
from digits.core.options import finite_number
from digits.core.terminal import LINE_LIMIT, printable, printable_lines
from digits.exporter.convert import DEFAULT_OPSET, MIN_OPSET
from digits.exporter.parity import DEFAULT_ATOL, DEFAULT_RTOL


# Long by design: Typer reads each option, its help and its check from this signature.
def export(
    model: Annotated[Path, typer.Argument(readable=False, help="The .keras model to export (loaded in safe mode).")],
    out: Annotated[Path, typer.Option(
        parser=file_name, metavar="FILE",
        help="Where to write the ONNX model.",
    )] = Path("model.onnx"),
    data: Annotated[Optional[Path], typer.Option(
        readable=False,
        help="Real digits for the parity check (any `digits train --data` form) (default: the trainer's default "
        "source)",
    )] = None,
    opset: Annotated[int, typer.Option(min=MIN_OPSET, max=DEFAULT_OPSET, help="ONNX opset.")] = DEFAULT_OPSET,
    atol: Annotated[float, typer.Option(
        parser=finite_number("--atol", 0.0, 1.0),
        help="Absolute tolerance on the probabilities.",
    )] = DEFAULT_ATOL,
    rtol: Annotated[float, typer.Option(
        parser=finite_number("--rtol", 0.0, 1.0),
        help="Relative tolerance on the probabilities.",
    )] = DEFAULT_RTOL,
    int8: Annotated[bool, typer.Option(
        "--int8",
        help="Also write MODEL.int8.onnx (static int8, calibrated on --data), checked against the float model, across "
        "batches and against the onnx reference.",
    )] = False,
    ort: Annotated[bool, typer.Option(
        "--ort",
        help="Also write MODEL.ort for ONNX Runtime Mobile, checked to give the same labels.",
    )] = False,
    tflite: Annotated[bool, typer.Option(
        "--tflite",
        help="Also write MODEL.tflite for LiteRT (and MODEL.int8.tflite with --int8), checked with LiteRT's "
        "interpreter. Needs the [litert] extra.",
    )] = False,
    micro: Annotated[bool, typer.Option(
        "--micro",
        help="Also write MODEL.micro.tflite, .micro.cc and .micro.h for TensorFlow Lite Micro (batch 1, int8), "
        "checked in TFLite Micro's interpreter against MODEL.int8.tflite. Needs --tflite --int8.",
    )] = False,
) -> None:
    """Export a Keras digit classifier to a self-contained ONNX model, proving parity with Keras.

    The model takes uint8 [batch, 28, 28] images and gives probabilities and label. Keras and
    onnxruntime are compared on real and edge-case digits; the model is written only if they
    agree (exit 4 otherwise, with MODEL.parity.json saying by how much).
    """
    from digits.core.errors import require_extra

    require_extra("train", "digits export", ("tensorflow", "keras", "tf2onnx"))
    if tflite or micro:
        require_extra("litert", "digits export --tflite", ("ai_edge_litert", "tflite_micro"))
    from digits.exporter.export import export as run_export

    def log(message: str) -> None:  # each line made safe: paths and the data source are in them
        print(printable_lines(message), file=sys.stderr)

    result = run_export(model, out, data, opset, atol, rtol, int8, ort, tflite, micro, log=log)
    written = [result.model, result.report, *result.variants.values()]
    print("wrote " + " ".join(printable(p, LINE_LIMIT) for p in written))


def inspect(
    model: Annotated[Path, typer.Argument(
        readable=False, parser=model_path,
        help="An .onnx or .tflite model (.tflite needs the [litert] extra), or a bundled model's name (cnn, mlp).",
    )],
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Show a model's inputs, outputs, opset (ONNX) or ops (LiteRT), size and metadata."""
    from digits.exporter.describe import describe, format_description

    info = describe(model)
    print(json_text(info).rstrip("\n") if as_json else format_description(info))


def bench(
    models: Annotated[list[Path], typer.Argument(
        readable=False, parser=model_path,
        help="An .onnx model or a bundled model's name (its .int8.onnx beside it is included), and optionally its "
        ".keras model for comparison.",
    )],
    as_json: Annotated[bool, typer.Option("--json", help="Print digits/s as JSON.")] = False,
) -> None:
    """Measure throughput (digits/s) at batch sizes 1, 64, 1,024 and 8,192, side by side."""
    from digits.exporter.throughput import format_table, measure, models_to_bench

    results = measure(*models_to_bench(models))
    print(json_text(results).rstrip("\n") if as_json else format_table(results))
