"""`digits models`: the bundled models (core/bundled.py), with their accuracy and size."""

from typing import Annotated

import typer

from digits.core.atomic import json_text
from digits.core.bundled import listing
from digits.core.terminal import LINE_LIMIT, printable


def models(as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False) -> None:
    """List the bundled models; a name goes where a model path goes (digits classify cnn scans/)."""
    found = listing()
    if as_json:
        print(json_text(found).rstrip("\n"))
        return
    print(f"{'name':<6}{'test accuracy':>15}{'int8':>8}{'model.onnx':>12}{'model.int8.onnx':>17}  folder")
    for m in found:
        int8 = "-" if m["int8_test_accuracy"] is None else f"{m['int8_test_accuracy']:.4f}"
        print(f"{m['name']:<6}{m['test_accuracy']:>15.4f}{int8:>8}{m['bytes'] / 1e6:>9.2f} MB"
              f"{m['int8_bytes'] / 1e6:>14.2f} MB  {printable(m['folder'], LINE_LIMIT)}")
