"""The `digits` program: each part's commands, and errors turned into exit codes.

Command modules import nothing heavy at the top: `digits --help` and
`digits classify` must never import TensorFlow.
"""

import signal
import sys

from digits import install_early_interrupt

# Again for `python -m digits`: while runpy imported the package, argv[0] was "-m".
install_early_interrupt()

from pathlib import Path  # noqa: E402
from typing import Annotated, Optional  # noqa: E402

import typer  # noqa: E402

from batch import cli as batch_cli  # noqa: E402
from digits.errors import EXIT_INTERRUPTED, DigitsError  # noqa: E402
from exporter import cli as exporter_cli  # noqa: E402
from trainer import cli as trainer_cli  # noqa: E402
from trainer.model import RECIPE  # noqa: E402

app = typer.Typer(
    name="digits",
    help="Train, export and run handwritten-digit classifiers (Keras -> ONNX -> onnxruntime).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Help texts are plain text: "[batch,784]" is a shape, not Rich markup to swallow.
    rich_markup_mode=None,
)
app.command()(trainer_cli.train)
app.command()(trainer_cli.evaluate)
app.command()(exporter_cli.export)
app.command()(exporter_cli.inspect)
app.command()(exporter_cli.bench)
app.command()(batch_cli.classify)


@app.command()
def demo(
    out: Annotated[Path, typer.Option(readable=False, help="Folder for everything the demo makes.")] = Path("runs/demo"),
    data: Annotated[Optional[Path], typer.Option(readable=False, help="MNIST in any `digits train --data` form (default: Keras's MNIST, else the bundled sample)")] = None,
    epochs: Annotated[int, typer.Option(min=1, help="Training epochs (default: the seed's recipe).")] = RECIPE.epochs,
    seed: Annotated[int, typer.Option(help="Seeds the training split, weights and dropout.")] = RECIPE.seed,
) -> None:
    """Run the whole job: train, export with parity and int8, classify a PNG folder and a .npy, report."""
    from digits.demo import run_demo
    from trainer.backend import require_train_extra

    require_train_extra("digits demo", ("tensorflow", "keras", "tf2onnx", "matplotlib"))

    print(run_demo(out, data, epochs, seed))


class Interrupted(BaseException):
    """Ctrl-C or SIGTERM. A BaseException of our own, so that no library's `except
    Exception` (nor Typer's KeyboardInterrupt handling) swallows it on the way out;
    `finally` blocks, such as the cleanup of half-written files, still run."""


_signals: list[int] = []


def _interrupt(signum, frame) -> None:
    _signals.append(signum)
    raise Interrupted()


def main() -> None:
    """Entry point: the one place user errors become a line on stderr and an exit code."""
    previous = {signum: signal.signal(signum, _interrupt) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        app()
    except DigitsError as e:
        print(f"digits: error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    except SystemExit:
        raise
    except BaseException:
        # Interrupted, or whatever an interrupt left behind (a module cut in half
        # raising ImportError later): the user asked to stop, so stop quietly.
        if not _signals:
            raise
        print("digits: interrupted", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
