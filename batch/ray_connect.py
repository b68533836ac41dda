"""Joining or starting Ray for `--engine ray`: a cluster's address checked to be Ray's
before Ray is given it, and Ctrl-C or SIGTERM while Ray starts. Ray is imported by this
module and batch/ray_engine.py only, which `batch.api` imports only for `--engine ray`.
"""

import logging
import os
import shutil
import signal
import socket
import tempfile
import time

from digits.core import interrupts
from digits.core.errors import EXIT_INTERRUPTED, DigitsError, first_line, install_command
from digits.core.files import stderr_muted

try:
    import ray
except ImportError as e:  # the `ray` extra is not installed
    raise DigitsError(f"--engine ray needs Ray: {install_command('ray')}; {e}") from e

# Local starts only: Ray's default object store (30% of memory, on /dev/shm) does
# not fit a container's small /dev/shm. Only shards and their rows travel; this is plenty.
LOCAL_OBJECT_STORE_BYTES = 256 * 2**20
HANDSHAKE_SECONDS = 5.0  # for a cluster address to answer as a gRPC server does


class RayEngineError(DigitsError):
    """Ray could not be started or joined, or the job could not run."""


class RayInterrupted(DigitsError):
    """Ctrl-C or SIGTERM while Ray was starting: what was started has been stopped."""

    exit_code = EXIT_INTERRUPTED


def connect(address: str | None) -> float:
    """Join the cluster at `address` (or RAY_ADDRESS), else start a local Ray; the seconds it took. A Ctrl-C or SIGTERM
    while Ray starts stops what was started and raises RayInterrupted; nothing of Ray is left running."""
    start = time.perf_counter()
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address:
        _handshake(address)
    staging = tempfile.TemporaryDirectory(prefix="digits-ray-")
    runtime_env = {"py_modules": [_package_for_workers(staging.name)], "excludes": ["__pycache__", "*.pyc"],
                   # onnxruntime, OpenCV and OpenBLAS in every worker: one thread each.
                   "env_vars": {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}}
    # Ray's C++ core logs errors straight to stderr. Our stderr is the summary and `digits: error:` lines only: that
    # core logs fatal errors only, and the line saying so is printed while `ray.init` runs with stderr muted.
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
    where = {"address": address} if address else {"include_dashboard": False,
                                                   "object_store_memory": LOCAL_OBJECT_STORE_BYTES}
    try:
        with stderr_muted(), interrupts.raising():  # ray.init blocks, and cannot ask
            try:
                ray.init(runtime_env=runtime_env, logging_level=logging.ERROR, log_to_driver=False,
                         configure_logging=True, **where)
            except SystemExit as e:  # ray.init sets SIGTERM's handler to sys.exit(15)
                if e.code != signal.SIGTERM:
                    raise
                raise interrupts.Interrupted() from None
    except (interrupts.Interrupted, ConnectionError, RuntimeError, ValueError) as e:
        with stderr_muted():
            ray.shutdown()  # stops the processes a local start began; a joined cluster runs on
        if isinstance(e, interrupts.Interrupted):
            raise RayInterrupted("interrupted while Ray was starting; nothing of this run is left running") from None
        cluster = f"the Ray cluster at {address}" if address else "a local Ray"
        raise RayEngineError(f"cannot start or join {cluster}: {first_line(e)}") from e
    finally:
        staging.cleanup()  # ray.init has uploaded it
    logging.getLogger("ray").setLevel(logging.ERROR)
    return time.perf_counter() - start


def _package_for_workers(folder: str) -> str:
    """A `digits` package under `folder` holding a copy of the driver's core/ and batch/, all
    that workers import: they run the driver's own code, whatever is installed on the nodes."""
    package = os.path.join(folder, "digits")
    os.mkdir(package)
    open(os.path.join(package, "__init__.py"), "w").close()
    for name, source in (("batch", os.path.dirname(__file__)), ("core", os.path.dirname(interrupts.__file__))):
        shutil.copytree(source, os.path.join(package, name), ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return package


def _handshake(address: str, timeout: float = HANDSHAKE_SECONDS) -> None:
    """A plain host:port must answer as Ray's GCS does (a gRPC server, HTTP/2) before ray.init is given it: Ray retries
    a silent or foreign server for minutes, in C++ that Ctrl-C and SIGTERM do not reach. We send the HTTP/2 preface and
    an empty SETTINGS frame; an HTTP/2 server answers with its own SETTINGS frame at once."""
    host, _, port = address.rpartition(":")
    if "://" in address or not host or not port.isdigit():
        return  # "auto", ray://...: Ray resolves those itself
    host = host.strip("[]")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
            answer = s.recv(9, socket.MSG_WAITALL)  # a frame's header: 9 bytes, or fewer at end-of-file
    except TimeoutError:
        raise RayEngineError(f"{address} is not a Ray cluster: it did not answer as Ray's GCS server does "
                             f"within {timeout:g} s") from None
    except OSError as e:
        raise RayEngineError(f"cannot reach the Ray cluster at {address}: {e.strerror or e}") from e
    if len(answer) < 9 or answer[3] != 0x04:  # frame type 4: SETTINGS
        raise RayEngineError(f"{address} is not a Ray cluster: it does not answer as Ray's GCS server does")
