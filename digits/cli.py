"""The `digits` program: each part's commands, and errors turned into exit codes.

Command modules import nothing heavy at the top: `digits --help` and
`digits classify` must never import TensorFlow.
"""

import errno
import os
import signal
import sys
import time

from core import interrupts


def _interrupted_early(signum, frame) -> None:
    # Ctrl-C (or SIGTERM) while the program is still importing: nothing has been
    # written yet, and an exception raised inside an import would surface as a
    # traceback of whatever module it cut in half. Leave at once, with one line.
    try:
        os.write(2, b"digits: interrupted\n")
    except OSError:  # stderr closed (2>&-): leave all the same
        pass
    os._exit(130)


# Each command lives with its part and is imported only when it is run (or for the
# whole program's --help): `digits classify` does not pay for importing the trainer's
# and the exporter's command modules (docs/decisions.md).
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


def _interrupt(signum, frame) -> None:
    interrupts.record(signum)
    raise Interrupted()


class _Unraisable:
    """sys.unraisablehook while main() runs, for what Python swallows (an exception in a
    weakref callback, a __del__, a thread that dies as it starts) and would print as
    "Exception ignored in ..." with a traceback:
    - an Interrupted (the signal's handler ran inside such a callback: an import cleaning
      up its module lock) is not printed; the signal is already recorded (core.interrupts),
      and is delivered again a moment later, from a thread of its own, to be raised where
      it stops the program; until then the run's stop flag and training's stop act on
      the record;
    - a MemoryError (under `ulimit -v`, a thread that could not start) is not printed:
      what failed for want of memory says so in one line;
    - anything else goes to the hook that was there before."""

    def __init__(self, previous):
        self.previous = previous
        self.active = True

    def __call__(self, unraisable) -> None:
        if isinstance(unraisable.exc_value, Interrupted):
            self._deliver_again()
        elif not isinstance(unraisable.exc_value, MemoryError):
            self.previous(unraisable)

    def _deliver_again(self) -> None:
        import _thread

        signum = interrupts.asked()

        def later() -> None:
            time.sleep(0.005)  # the hook has returned by then
            if self.active:
                _thread.interrupt_main(signum)

        try:
            _thread.start_new_thread(later, ())  # not threading's: its start() would wait here
        except RuntimeError:  # no thread to be had: the record alone acts
            pass


class _Stdout:
    """sys.stdout, whose failed writes (a reader that closed the pipe: `| head`, a full
    disk) are the user's error, one line and exit 1, in every command. Click's own
    handling of a closed pipe ended the program with exit 1 and nothing said."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except OSError as e:
            raise _stdout_failed(e) from e

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError as e:
            raise _stdout_failed(e) from e

    def __getattr__(self, name):
        return getattr(self._stream, name)


def _stdout_failed(e: OSError) -> Exception:
    from core.files import write_error

    try:  # what the stream still buffers goes nowhere: the exit's flush cannot fail again
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        os.close(null)
    except OSError:
        pass
    return write_error("standard output", e)


def _standard_streams() -> None:
    """A closed standard stream (`2>&-`) is /dev/null underneath, so that no file this
    program opens takes its number: rows once went to descriptor 2, and the C
    libraries' messages into the rows. stdin and stdout stay None in Python (the
    commands say they are closed when they need them); messages meant for a closed
    stderr go nowhere rather than to stdout, among the rows (print(file=None))."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
    if sys.stderr is None:
        sys.stderr = open(2, "w", closefd=False)
    if sys.stdout is not None and not isinstance(sys.stdout, _Stdout):
        sys.stdout = _Stdout(sys.stdout)  # unwrapped when main() ends (tests call it in-process)


def _out_of_memory(e: BaseException) -> str | None:
    """What to say when `e` is the process running out of memory or threads (a low
    `ulimit -v`): at import, a library cannot map itself; mid-run, no thread starts."""
    text = str(e)
    if isinstance(e, MemoryError):
        reason = "out of memory"
    elif isinstance(e, ImportError) and ("failed to map segment" in text or "cannot allocate memory" in text.lower()):
        reason = "out of memory loading the program's libraries"
    elif isinstance(e, OSError) and e.errno == errno.ENOMEM:  # mmap, a pipe's buffer
        reason = "out of memory"
    elif isinstance(e, RuntimeError) and "can't start new thread" in text:
        reason = "cannot start a thread (out of memory or threads)"
    else:
        return None
    return f"{reason}; the memory limit (ulimit -v) is too low for this program"


# Below this address-space limit (ulimit -v) the libraries fail as they load, in ways
# no Python code sees: OpenBLAS prints its own line and exits, or a thread it cannot
# start raises a signal (measured: 80-135 MiB; 140 MiB and up fail as MemoryError or
# ImportError, which main() turns into one line).
MEMORY_FLOOR = 160 * 2**20


def _check_memory_limit() -> None:
    from core.errors import DigitsError
    from core.memory import address_space_limit

    limit = address_space_limit()
    if limit is not None and limit < MEMORY_FLOOR:
        raise DigitsError(f"the memory limit (ulimit -v) is {limit // 2**20} MiB; this program needs at least "
                          f"{MEMORY_FLOOR // 2**20} MiB to load its libraries")


def _first_steps() -> None:
    # Until main()'s handling is in place (the imports take a while), Ctrl-C and
    # SIGTERM end the program at once with one line and exit 130.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _interrupted_early)
    _standard_streams()


def _command_named() -> str | None:
    """The command sys.argv names, or None (--help, a typo: Typer says so)."""
    return sys.argv[1] if len(sys.argv) > 1 and sys.argv[1] in COMMANDS else None


def start() -> None:
    """The program as a process starts it (the console script, `python -m digits`):
    under an address-space limit, watched by a parent that turns a library's fatal
    end into one line (digits.watcher); then main()."""
    _first_steps()
    from digits.watcher import watch

    watch(_command_named())
    main()


def main() -> None:
    """The program in this process: the one place user errors become a line on stderr and an exit code."""
    _first_steps()  # again when called alone (tests, embedding programs); repeating them is harmless
    # onnxruntime's telemetry (export, evaluate, bench and inspect load it too): files
    # under ~/.cache written unasked, a coloured warning when HOME is not writable.
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    from core.errors import EXIT_FATAL, EXIT_INTERRUPTED, DigitsError

    interrupts.reset()  # a run of its own, also when tests call main() again in one process
    hook = sys.unraisablehook = _Unraisable(sys.unraisablehook)
    previous = {signum: signal.signal(signum, _interrupt) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        _check_memory_limit()
        try:
            build_app(_command_named())()
        finally:
            if sys.stdout is not None:  # what print() left buffered, written while errors can still be told
                sys.stdout.flush()
    except DigitsError as e:
        from core.terminal import LINE_LIMIT, printable

        print(f"digits: error: {printable(e, LINE_LIMIT)}", file=sys.stderr)  # paths and model names in it
        sys.exit(e.exit_code)
    except SystemExit as e:
        if e.code in (0, None) and interrupts.asked():  # an interrupt Python swallowed, and nothing stopped
            print("digits: interrupted", file=sys.stderr)
            sys.exit(EXIT_INTERRUPTED)
        raise
    except BaseException as e:
        # Interrupted, or whatever an interrupt left behind (a module cut in half
        # raising ImportError later): the user asked to stop, so stop quietly.
        if interrupts.asked():
            print("digits: interrupted", file=sys.stderr)
            sys.exit(EXIT_INTERRUPTED)
        memory = _out_of_memory(e)
        if memory is None:
            raise
        print(f"digits: error: {memory}", file=sys.stderr)
        sys.exit(EXIT_FATAL)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        hook.active = False
        sys.unraisablehook = hook.previous
        interrupts.reset()  # what this run was asked does not outlive it
        if isinstance(sys.stdout, _Stdout):
            sys.stdout = sys.stdout._stream
