"""The `digits` program: each part's commands, and errors turned into exit codes. Command modules
import nothing heavy at the top: `digits --help` and `digits classify` never import TensorFlow."""

import contextlib
import errno
import os
import sys

from digits.core import interrupts
from digits.core.files import to_devnull, write_error

# Each command lives with its part and is imported only when it is run (or for the
# whole program's --help): `digits classify` does not pay for importing the trainer's
# and the exporter's command modules (docs/decisions.md).
COMMANDS = {
    "train": ("digits.trainer.cli", "train"),
    "evaluate": ("digits.trainer.cli", "evaluate"),
    "export": ("digits.exporter.cli", "export"),
    "inspect": ("digits.exporter.cli", "inspect"),
    "bench": ("digits.exporter.cli", "bench"),
    "classify": ("digits.batch.cli", "classify"),
    "demo": ("digits.demo", "demo"),
    "models": ("digits.catalog", "models"),
}

# Below this address-space limit (ulimit -v) the libraries fail as they load, in ways no
# Python code sees (measured: 80-135 MiB; from 140 MiB they fail as MemoryError or ImportError,
# which main() turns into one line). docs/reliability.md says what is left to the runtimes.
MEMORY_FLOOR = 160 * 2**20


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


class _Stdout:
    """sys.stdout, whose failed writes (a reader that closed the pipe: `| head`, a full
    disk) end in one line and exit 1, where Click's handling ended with nothing said."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text: str) -> int:
        return self._guarded(self._stream.write, text)

    def flush(self) -> None:
        self._guarded(self._stream.flush)

    def __getattr__(self, name):
        return getattr(self._stream, name)

    @staticmethod
    def _guarded(call, *args):
        try:
            return call(*args)
        except OSError as e:
            with contextlib.suppress(OSError):  # what the stream still buffers goes nowhere: exit's flush works
                to_devnull(1)
            raise write_error("standard output", e) from e


def _standard_streams() -> None:
    """A closed standard stream (`2>&-`) is /dev/null underneath, so that no file this program
    opens takes its number (rows once went to descriptor 2, and C libraries' messages into them)."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            to_devnull(fd)
    if sys.stderr is None:
        sys.stderr = open(2, "w", closefd=False)
    if sys.stdout is not None and not isinstance(sys.stdout, _Stdout):
        sys.stdout = _Stdout(sys.stdout)  # unwrapped when main() ends (tests call it in-process)


def _out_of_memory(e: BaseException) -> str | None:
    """What to say when `e` is the process running out of memory or threads (a low
    `ulimit -v`): at import, a library cannot map itself; mid-run, no thread starts."""
    text = str(e)
    if isinstance(e, MemoryError) or isinstance(e, OSError) and e.errno == errno.ENOMEM:  # ENOMEM: mmap, a pipe
        reason = "out of memory"
    elif isinstance(e, ImportError) and ("failed to map segment" in text or "cannot allocate memory" in text.lower()):
        reason = "out of memory loading the program's libraries"
    elif isinstance(e, RuntimeError) and "can't start new thread" in text:
        reason = "cannot start a thread (out of memory or threads)"
    else:
        return None
    from digits.core.memory import limit_words

    return f"{reason}; {limit_words()} is too low for this program"


def main() -> None:
    """The program in this process: the one place user errors become a line on stderr and an exit code."""
    hook = sys.unraisablehook

    def quiet_hook(unraisable) -> None:
        # What Python would print as "Exception ignored in ..." with a traceback: an Interrupted
        # raised inside a weakref callback or a __del__ (the request stays recorded, and the next
        # step that asks acts on it), or a MemoryError (under `ulimit -v`, a thread that could not start).
        if not isinstance(unraisable.exc_value, interrupts.Interrupted | MemoryError):
            hook(unraisable)

    sys.unraisablehook = quiet_hook
    try:
        with interrupts.installed():  # first: Ctrl-C at any moment after Python's start-up is ours
            _run()
    finally:
        sys.unraisablehook = hook
        if isinstance(sys.stdout, _Stdout):
            sys.stdout = sys.stdout._stream


start = main  # the console script's entry point (pyproject) and `python -m digits`


def _run() -> None:
    from digits.core.errors import EXIT_FATAL, EXIT_INTERRUPTED, DigitsError
    from digits.core.memory import address_space_limit

    try:
        _standard_streams()
        with interrupts.raising():  # imports, which cannot ask whether to stop
            # onnxruntime's telemetry (export, evaluate, bench and inspect load it too): files
            # under ~/.cache written unasked, a coloured warning when HOME is not writable.
            os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
            limit = address_space_limit()
            if limit is not None and limit < MEMORY_FLOOR:
                raise DigitsError(f"the memory limit (ulimit -v) is {limit // 2**20} MiB; this program needs at "
                                  f"least {MEMORY_FLOOR // 2**20} MiB to load its libraries")
            command = sys.argv[1] if len(sys.argv) > 1 and sys.argv[1] in COMMANDS else None  # None: Typer says
            app = build_app(command)
        interrupts.check()  # asked where the raise was swallowed (a weakref callback)
        try:
            # The loops of classify and train (and the demo's) ask between steps; the other
            # commands are one blocking call each, which a signal ends as an import's.
            with contextlib.nullcontext() if command in ("classify", "train", "demo") else interrupts.raising():
                app()
        finally:
            if sys.stdout is not None:  # what print() left buffered, written while errors can still be told
                sys.stdout.flush()
    except DigitsError as e:
        from digits.core.terminal import LINE_LIMIT, printable

        print(f"digits: error: {printable(e, LINE_LIMIT)}", file=sys.stderr)  # paths and model names in it
        sys.exit(e.exit_code)
    except BaseException as e:
        # Interrupted, whatever an interrupt left behind (a module cut in half raising ImportError
        # later), or a command that ran to its end (exit 0) after the user asked: stop quietly.
        if interrupts.asked() and (not isinstance(e, SystemExit) or e.code in (0, None)):
            print("digits: interrupted", file=sys.stderr)
            sys.exit(EXIT_INTERRUPTED)
        memory = _out_of_memory(e)
        if memory is None:
            raise
        print(f"digits: error: {memory}", file=sys.stderr)
        sys.exit(EXIT_FATAL)
