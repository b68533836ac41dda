"""Under an address-space limit the program runs watched (digits/watcher.py): a death
inside a library is one line, signals and kill -9 act as on an unwatched run.

Real processes, a real limit (set far above what a run needs, so that it is there
but never bites), real signals.
"""

import os
import resource
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.conftest import ROOT, assert_one_line_error

LIMIT = 16 * 2**30  # finite, so the program is watched; far more than a run takes


def _limited(limit: int = LIMIT):
    return lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


# The program as the console script starts it, whose command then dies as a library
# dies when an allocation fails where no C++ code catches it: libstdc++'s two lines,
# then abort().
DIES_IN_A_LIBRARY = (
    "import os, sys\n"
    "sys.argv = ['digits', 'classify']\n"
    "from digits.watcher import watch\n"
    "watch('classify')\n"
    "os.write(2, b'working\\n')\n"
    "os.write(2, b\"terminate called after throwing an instance of 'std::bad_alloc'\\n  what():  std::bad_alloc\\n\")\n"
    "os.abort()\n"
)


def test_a_library_dying_of_the_limit_is_one_line():
    result = subprocess.run([sys.executable, "-c", DIES_IN_A_LIBRARY], capture_output=True, text=True, cwd=ROOT,
                            timeout=60, preexec_fn=_limited())
    lines = result.stderr.splitlines()
    assert lines[0] == "working"  # the child's own lines pass through
    result.stderr = "\n".join(lines[1:]) + "\n"
    assert_one_line_error(result, 1, "std::bad_alloc", "ulimit -v", f"{LIMIT // 2**20} MiB", "--resume")


def test_without_a_limit_nothing_is_watched():
    result = subprocess.run([sys.executable, "-c", DIES_IN_A_LIBRARY], capture_output=True, text=True, cwd=ROOT,
                            timeout=60)
    assert result.returncode == -signal.SIGABRT  # the one process died, as before
    assert "terminate called" in result.stderr


@pytest.fixture
def long_run(exported_onnx, small, tmp_path):
    """A watched classify of 60,000 digits one at a time (seconds), writing rows.csv, in a
    process group of its own (the watcher's pid is the group's id)."""
    np.save(tmp_path / "a.npy", np.resize(small.x_test, (60_000, 28, 28)))
    rows = tmp_path / "rows.csv"
    process = subprocess.Popen(
        [sys.executable, "-m", "digits", "classify", exported_onnx, tmp_path / "a.npy", "--batch-size", "1",
         "-o", rows], cwd=ROOT, stderr=subprocess.PIPE, text=True, preexec_fn=_limited(), start_new_session=True)
    deadline = time.monotonic() + 60
    while (not rows.exists() or rows.stat().st_size < 10_000) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process.poll() is None, process.stderr.read()
    yield process, rows
    if process.poll() is None:
        process.kill()
        process.wait()


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(child) for child in f.read().split()]


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_sigterm_to_the_watcher_stops_the_run_with_whole_rows(long_run):
    process, rows = long_run
    assert len(_children(process.pid)) == 1  # watched: the run is the watcher's child
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 130
    assert process.stderr.read().startswith("interrupted after ")  # the run's own summary, passed through
    lines = rows.read_text().splitlines()
    assert lines[0] == "source,label,confidence,error" and all(line.count(",") == 3 for line in lines[1:])


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_to_the_whole_group_reaches_the_run_once(long_run, signum):
    """`kill -TERM -PGID`, `timeout`, a service manager: the run and the watcher both get
    the signal. Passed on as well, it was a second one: the run stopped at once, and the
    second Interrupted could land in the first one's handling (a traceback, exit 1)."""
    process, rows = long_run
    os.killpg(process.pid, signum)
    assert process.wait(timeout=60) == 130
    stderr = process.stderr.read()
    assert stderr.startswith("interrupted after ") and stderr.count("interrupted") == 1, stderr
    assert "Traceback" not in stderr
    lines = rows.read_text().splitlines()
    assert all(line.count(",") == 3 for line in lines[1:])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_kill_9_of_the_watcher_ends_the_run_too(long_run):
    process, _ = long_run
    (child,) = _children(process.pid)
    process.kill()
    process.wait()
    deadline = time.monotonic() + 10
    while not _gone(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _gone(child)


def test_relay_holds_back_only_the_runtimes_lines(capfd):
    from digits.watcher import _Relay

    relay = _Relay(-1)
    for chunk in [b"progress 10%\r", b"progress 2", b"0%\rterminate called af", b"ter throwing x\n",
                  b"  what():  std::bad_alloc\n", b"termin", b"al line\n", b"last"]:
        relay._pass(chunk)
    # What may be a runtime's line waits for its end; anything else passes at once.
    assert capfd.readouterr().err == "progress 10%\rprogress 20%\rterminal line\nlast"
    assert relay.held == [b"terminate called after throwing x", b"what():  std::bad_alloc"]
    assert relay.line == b"" and relay.mid_line
    relay._pass(b" words\n")
    assert capfd.readouterr().err == " words\n"


def test_relay_after_a_progress_bar_holds_back_and_ends_the_line(capfd):
    from digits.watcher import _Relay

    relay = _Relay(-1)
    # A bar hides the cursor and redraws with no newline; the runtime's line comes after it.
    relay._pass(b"\x1b[?25l\r\x1b[2Kclassifying 5/10 ")
    relay._pass(b"terminate called after throwing an instance of 'std::bad_alloc'\n  what():  std::bad_alloc\n")
    assert capfd.readouterr().err == "\x1b[?25l\r\x1b[2Kclassifying 5/10 "
    assert len(relay.held) == 2 and relay.cursor_hidden and relay.mid_line
    relay.end_line()  # before the watcher's own line: the bar's line ended (stderr is not a terminal here)
    assert capfd.readouterr().err == "\n"


def test_relay_passes_an_unfinished_last_line_once(capfd):
    from digits.watcher import _Relay

    relay = _Relay(-1)
    relay._pass(b"te")  # may be the start of "terminate called ...": held
    assert capfd.readouterr().err == ""
    relay._pass(b"\n")  # as run() ends an unfinished line
    assert capfd.readouterr().err == "te\n"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a Linux pseudo-terminal")
def test_at_a_terminal_ctrl_c_and_the_progress_bar_work_as_unwatched(exported_onnx, small, tmp_path):
    """On a terminal the run still draws its progress bar (its stderr is the watcher's
    pipe, but the watcher's is the terminal), and Ctrl-C, which the terminal sends to
    the whole foreground group, reaches the run once and ends it with exit 130."""
    import pty

    np.save(tmp_path / "a.npy", np.resize(small.x_test, (60_000, 28, 28)))
    pid, terminal = pty.fork()
    if pid == 0:  # the child: a session whose controlling terminal is the pseudo-terminal
        try:
            _limited()()
            os.chdir(ROOT)
            os.execv(sys.executable, [sys.executable, "-m", "digits", "classify", str(exported_onnx),
                                      str(tmp_path / "a.npy"), "--batch-size", "1", "-o", str(tmp_path / "rows.csv")])
        finally:
            os._exit(99)
    seen = b""
    deadline = time.monotonic() + 60
    while b"classifying" not in seen and time.monotonic() < deadline:  # the bar is drawn
        try:
            seen += os.read(terminal, 4096)
        except OSError:  # EIO: the run ended already
            break
    assert b"classifying" in seen, seen
    os.write(terminal, b"\x03")  # Ctrl-C, as typed
    while True:
        try:
            chunk = os.read(terminal, 4096)
        except OSError:  # EIO: every process on the terminal has closed it
            break
        if not chunk:
            break
        seen += chunk
    _, status = os.waitpid(pid, 0)
    os.close(terminal)
    assert os.waitstatus_to_exitcode(status) == 130, seen
    assert b"interrupted after " in seen, seen
    assert b"Traceback" not in seen and b"error" not in seen, seen


def test_the_console_script_enters_through_start():
    """`digits` as installed goes through cli.start (the watcher under a limit), as
    `python -m digits` does; the tests above run the latter."""
    import tomllib
    from pathlib import Path

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"digits": "digits.cli:start"}
    script = Path(sys.executable).parent / "digits"
    if script.exists():  # the venv's own console script
        result = subprocess.run([script, "classify", "--help"], capture_output=True, text=True, timeout=60,
                                preexec_fn=_limited())
        assert result.returncode == 0 and "--workers" in result.stdout, result.stderr
