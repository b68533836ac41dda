"""The `digits` command: one program over the three parts of the toolkit.

trainer/  MNIST in any form -> a Keras MLP (`digits train`, `digits evaluate`)
exporter/ Keras -> a self-contained ONNX model, parity-checked (`digits export`, `digits inspect`)
batch/    ONNX model + images/.npy -> labels, with onnxruntime only (`digits classify`)
"""

import os as _os
import signal as _signal
import sys as _sys


def _interrupted_early(signum, frame) -> None:
    # Ctrl-C (or SIGTERM) while the program is still importing: nothing has been
    # written yet, and an exception raised inside an import would surface as a
    # traceback of whatever module it cut in half. Leave at once, with one line.
    try:
        _os.write(2, b"digits: interrupted\n")
    except OSError:  # stderr closed (2>&-): leave all the same
        pass
    _os._exit(130)


def _starting_the_program() -> bool:
    """Whether this import starts the `digits` program (its script, or `python -m digits`
    once runpy names __main__.py), rather than a test or another program using the code."""
    argv0 = _sys.argv[0] if _sys.argv else ""
    return _os.path.basename(argv0) == "digits" or argv0.endswith(_os.path.join("digits", "__main__.py"))


def install_early_interrupt() -> None:
    """Ctrl-C and SIGTERM end the program at once, with one line and exit 130, until
    digits.cli.main installs its own handling. Here, in the package's first lines, so
    that the window before it is only Python's own start-up."""
    if _starting_the_program():
        for signum in (_signal.SIGINT, _signal.SIGTERM):
            _signal.signal(signum, _interrupted_early)


install_early_interrupt()
