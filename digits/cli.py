"""The `digits` program: each part's commands, and errors turned into exit codes.

Command modules import nothing heavy at the top: `digits --help` and
`digits classify` must never import TensorFlow.
"""

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from batch import cli as batch_cli
from digits.errors import DigitsError
from exporter import cli as exporter_cli
from trainer import cli as trainer_cli
from trainer.model import RECIPE

app = typer.Typer(
    name="digits",
    help="Train, export and run handwritten-digit classifiers (Keras -> ONNX -> onnxruntime).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command()(trainer_cli.train)
app.command()(trainer_cli.evaluate)
app.command()(exporter_cli.export)
app.command()(exporter_cli.inspect)
app.command()(exporter_cli.bench)
app.command()(batch_cli.classify)


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Folder for everything the demo makes.")] = Path("runs/demo"),
    data: Annotated[Optional[Path], typer.Option(help="MNIST in any `digits train --data` form (default: Keras's MNIST, else the bundled sample)")] = None,
    epochs: Annotated[int, typer.Option(min=1, help="Training epochs (default: the seed's recipe).")] = RECIPE.epochs,
    seed: Annotated[int, typer.Option(help="Seeds the training split, weights and dropout.")] = RECIPE.seed,
) -> None:
    """Run the whole job: train, export with parity and int8, classify a PNG folder and a .npy, report."""
    from digits.demo import run_demo
    from trainer.backend import require_train_extra

    require_train_extra("digits demo", ("tensorflow", "keras", "tf2onnx", "matplotlib"))

    print(run_demo(out, data, epochs, seed))


def main() -> None:
    """Entry point: the one place user errors become a line on stderr and an exit code."""
    try:
        app()
    except DigitsError as e:
        print(f"digits: error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
