"""The `digits` program: each part's commands, and errors turned into exit codes.

Command modules import nothing heavy at the top: `digits --help` and
`digits classify` must never import TensorFlow.
"""

import os
import signal
import sys


def _interrupted_early(signum, frame) -> None:
    # Ctrl-C (or SIGTERM) while the program is still importing: nothing has been
    # written yet, and an exception raised inside an import would surface as a
    # traceback of whatever module it cut in half. Leave at once, with one line.
    os.write(2, b"digits: interrupted\n")
    os._exit(130)


# Each command lives with its part and is imported only when it is run (or for the
# whole program's --help): `digits classify` does not pay for importing the trainer's
# and the exporter's command modules (~15 ms of a run, measured).
COMMANDS = {
    "train": ("trainer.cli", "train"),
    "evaluate": ("trainer.cli", "evaluate"),
    "export": ("exporter.cli", "export"),
    "inspect": ("exporter.cli", "inspect"),
    "bench": ("exporter.cli", "bench"),
    "classify": ("batch.cli", "classify"),
    "demo": ("digits.demo", "demo"),
}


def build_app(only: str | None = None):
    """The program (a typer.Typer) with every command, or with the one named `only` (what a run needs)."""
    import importlib

    import typer

    app = typer.Typer(
        name="digits",
        help="Train, export and run handwritten-digit classifiers (Keras -> ONNX -> onnxruntime).",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        # Help texts are plain text: "[batch,784]" is a shape, not Rich markup to swallow.
        rich_markup_mode=None,
    )

    @app.callback()
    def program() -> None:
        # A callback keeps the program a group of commands even when one is registered.
        pass

    for name, (module, function) in COMMANDS.items():
        if only in (None, name):
            app.command(name)(getattr(importlib.import_module(module), function))
    return app


def __getattr__(name: str):
    if name == "app":  # the whole program, for tests and tools that inspect it
        return build_app()
    raise AttributeError(name)


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
    # Until the handling below is in place (the imports take a while), Ctrl-C and
    # SIGTERM end the program at once with one line and exit 130.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _interrupted_early)
    from core.errors import EXIT_INTERRUPTED, DigitsError

    previous = {signum: signal.signal(signum, _interrupt) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        command = sys.argv[1] if len(sys.argv) > 1 and sys.argv[1] in COMMANDS else None
        build_app(command)()
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
