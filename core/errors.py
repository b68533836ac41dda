"""Errors a user can cause, each with its exit code: `digits.cli.main` prints the message as
one line and exits with the code. Anything else escaping is a bug and keeps its traceback."""

# Exit codes, documented in the README and docs/reliability.md.
EXIT_FATAL = 1  # bad input file, unusable model, output not writable
EXIT_USAGE = 2  # Typer/Click usage errors
EXIT_SOME_FAILED = 3  # classify: some items failed, the rest were written
EXIT_CHECK_FAILED = 4  # export: the ONNX model does not match Keras
EXIT_INTERRUPTED = 130  # Ctrl-C


class DigitsError(Exception):
    """A problem the user can fix; its message is the whole explanation."""

    exit_code = EXIT_FATAL


class UsageError(DigitsError):
    """Arguments or standard input that the command cannot take as given."""

    exit_code = EXIT_USAGE


class DataError(DigitsError):
    """A data file or folder that cannot be read as digits and labels."""


class ModelError(DigitsError):
    """A model file that cannot be loaded or does not fit the contract."""


def first_line(e: BaseException, cap: int = 200) -> str:
    """How a library's error is quoted in our one line: its first line (or its type's name), capped."""
    text = str(e).strip()
    return (text.splitlines()[0] if text else type(e).__name__)[:cap]


def install_command(extra: str) -> str:
    """The command that installs `extra` from the clone (the project is not on PyPI, so
    `pip install 'digits[extra]'` would name someone else's package)."""
    return f"pip install -c constraints.txt '.[{extra}]' (in the clone)"


def require_extra(extra: str, what: str, modules: tuple[str, ...]) -> None:
    """DigitsError naming `what` and how to install `extra`, unless every module in `modules`
    can be imported (found without importing them: TensorFlow takes seconds)."""
    import importlib.util

    missing = [m.replace("_", "-") for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise DigitsError(f"{what} needs the [{extra}] extra, which this install lacks "
                          f"(no {', '.join(missing)}): {install_command(extra)}")
