"""Under an address-space limit (`ulimit -v`), the program runs as the child of a small
watcher process, which turns a death no Python code can see into one line.

With such a limit, the C++ libraries fail in ways that end the process outright:
onnxruntime's `std::bad_alloc` escapes where nothing catches it ("terminate called
after throwing an instance of 'std::bad_alloc'", SIGABRT), and glibc ends a process
whose new thread cannot get its thread-local memory (exit 127). The watcher passes
the child's stderr through, holds back those runtime lines, and says instead what
happened and what to change, with exit code 1. Without a limit nothing is watched:
the program is one process, as before.

The watcher is a fork taken before the heavy imports (a few MiB; the limit counts
per process, so it costs the child nothing). The child dies with it (kill -9 of the
watcher ends the run as it would end an unwatched one), and a signal sent to the
watcher alone (`kill PID`) is passed on; one the terminal sends to the whole
foreground group (Ctrl-C) reaches the child already and is not sent twice. Nor is one
sent to the whole process group (`kill -TERM -PGID`, `timeout`'s): the child tells the
watcher of every signal it receives (its Python signal wakeup descriptor), and a signal
the child got on its own within a moment is not passed on.
"""

import os
import select
import signal
import sys
import time

from core.memory import address_space_limit

# What the C and C++ runtimes print as they end a process (and onnxruntime as it fails to
# register its operators for want of memory): held back, and said in our words.
_RUNTIME_LINES = (
    b"terminate called after throwing",
    b"  what():",
    b"cannot allocate memory for thread-local data",
    b"Schema error: std::bad_alloc",
)
# A signal the child got this close to the watcher's own is the same one (a group's); the
# watcher waits up to half of it for the child's report before passing a signal on. Both
# are generous: the report is written by the child's C-level handler as the signal lands,
# which on a loaded machine may still be some scheduling delays after the watcher's.
_SAME_SIGNAL_SECONDS = 0.5
_HIDDEN_CURSOR, _SHOWN_CURSOR = b"\x1b[?25l", b"\x1b[?25h"  # as a progress bar hides and shows it
_PASSED_ON = (signal.SIGINT, signal.SIGTERM)
_SI_KERNEL = 0x80  # si_code of a signal the kernel sent (the terminal's Ctrl-C), not kill()
_PR_SET_PDEATHSIG = 1
_M_ARENA_MAX = -8  # mallopt's parameter number
_THREAD_START_SECONDS = 10  # a thread says it has started within microseconds when it can
# The child's own last word: after it, a death (a library's destructor failing on the way out) needs no second line.
_SAID = (b"digits: error:", b"digits: interrupted")


def watch(command: str | None) -> None:
    """Under an address-space limit: fork; return in the child, which runs the program;
    in the parent, pass the child's stderr through, wait for it, and exit as it did
    (or, when it died of the limit, with one line and exit 1). Without a limit, or
    where there is no fork, return at once."""
    limit = address_space_limit()
    if limit is None or not hasattr(os, "fork"):
        return
    read_end, write_end = os.pipe()
    told, tell = os.pipe()  # the signals the child receives, a byte each
    parent = os.getpid()
    try:
        child = os.fork()
    except OSError:  # no process to spare: run unwatched
        for fd in (read_end, write_end, told, tell):
            os.close(fd)
        return
    if child == 0:
        os.close(read_end)
        os.close(told)
        _die_with(parent)
        _bounded_thread_starts()
        os.set_blocking(tell, False)
        signal.set_wakeup_fd(tell, warn_on_full_buffer=False)
        terminal = os.isatty(2)
        os.dup2(write_end, 2)
        os.close(write_end)
        if terminal:  # the commands draw progress for a terminal: the watcher's stderr is one
            sys.stderr = _Terminal(sys.stderr)
        return
    os.close(write_end)
    os.close(tell)
    signal.pthread_sigmask(signal.SIG_BLOCK, _PASSED_ON)
    relay = _Relay(read_end, told)
    status = relay.run(child)
    code, message = _outcome(status, relay.held, limit, command, relay.said)
    if message:
        relay.end_line()
        _say(message)
    sys.exit(code)


class _Terminal:
    """sys.stderr, said to be a terminal: what it writes reaches one through the watcher."""

    def __init__(self, stream):
        self._stream = stream

    def isatty(self) -> bool:
        return True

    def __getattr__(self, name):
        return getattr(self._stream, name)


def _die_with(parent: int) -> None:
    """The child gets SIGKILL when the watcher dies (Linux's PR_SET_PDEATHSIG), and keeps
    to one malloc arena: glibc reserves 64 MiB of address space for each further arena,
    one per thread that allocates (three of them were a third of a classify run's 535 MiB)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.mallopt(_M_ARENA_MAX, 1)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux with glibc: the child outlives a killed watcher
        return
    except (ImportError, MemoryError):  # no memory left for ctypes: run on, as unwatched runs do
        return
    if os.getppid() != parent:  # the watcher died before the request was in place
        os._exit(1)


def _bounded_thread_starts() -> None:
    """Thread.start() waits for the new thread to say it has started, with no time limit;
    a thread that dies of MemoryError before it says so (its first allocations fail)
    left the run waiting forever. Here the wait has a limit, after which start() raises
    the RuntimeError Python raises when no thread can be made (main() says it in one line)."""
    import threading

    start = threading.Thread.start

    def bounded_start(thread):
        started = thread._started
        wait = started.wait

        def wait_bounded(timeout=None):
            if timeout is None:
                if not wait(_THREAD_START_SECONDS):
                    raise RuntimeError(f"can't start new thread (it did not start in {_THREAD_START_SECONDS} s)")
                return True
            return wait(timeout)

        started.wait = wait_bounded  # start() calls self._started.wait() (Python 3.8-3.13)
        try:
            start(thread)
        finally:
            del started.wait

    threading.Thread.start = bounded_start


class _Relay:
    """The child's stderr copied to ours as it comes, except the runtimes' own lines,
    which are held back: text that may be the start of one waits for its line's end,
    any other text passes at once (a progress bar's redraw ends in no newline)."""

    def __init__(self, read_end: int, told: int = -1):
        self.read_end, self.told = read_end, told
        self.held: list[bytes] = []
        self.line = b""  # the start of what may be a runtime's line, not passed yet
        self.mid_line = False  # what was passed last ended inside a line
        self.cursor_hidden = False  # by the last escape passed (a progress bar's)
        self.said: bytes | None = None  # the child's own "digits: error: ..." line, once passed
        self.child_got: dict[int, float] = {}  # signal -> when the child last received it
        self.to_pass: list[tuple[int, float]] = []  # (signal, when the watcher got it)

    def run(self, child: int) -> int:
        """Relay until the child ends, passing on signals sent to the watcher alone;
        the child's wait status."""
        status = None
        sources = [self.read_end, self.told]
        while status is None:
            timeout = 0.01 if self.to_pass else 0.05
            if sources:
                ready, _, _ = select.select(sources, [], [], timeout)
                for fd in ready:
                    if not (self._read() if fd == self.read_end else self._heard()):
                        sources.remove(fd)
                info = signal.sigtimedwait(_PASSED_ON, 0)
            else:
                info = signal.sigtimedwait(_PASSED_ON, timeout)
            while info is not None:
                if info.si_code != _SI_KERNEL:  # the terminal's reached the child already
                    self.to_pass.append((info.si_signo, time.monotonic()))
                info = signal.sigtimedwait(_PASSED_ON, 0)
            self._pass_signals(child)
            pid, code = os.waitpid(child, os.WNOHANG)
            if pid:
                status = code
        # A worker the child forked may hold the pipe still: what is there now is read, no more.
        while self.read_end in sources and select.select([self.read_end], [], [], 0)[0] and self._read():
            pass
        os.close(self.read_end)
        os.close(self.told)
        if self.line:  # an unfinished line that was not a runtime's after all
            self._pass(b"\n")
        return status

    def _pass_signals(self, child: int) -> None:
        """Pass on each signal the watcher got, unless the child got it too (a signal to the
        whole group): decided once the child has had a moment to tell."""
        now = time.monotonic()
        waiting = []
        for signum, when in self.to_pass:
            if self.child_got.get(signum, -1.0) >= when - _SAME_SIGNAL_SECONDS:
                continue
            if now - when < _SAME_SIGNAL_SECONDS / 2:
                waiting.append((signum, when))
                continue
            try:
                os.kill(child, signum)
            except ProcessLookupError:
                pass
        self.to_pass = waiting

    def _heard(self) -> bool:
        try:
            data = os.read(self.told, 512)
        except BlockingIOError:
            return True
        for signum in data:
            self.child_got[signum] = time.monotonic()
        return bool(data)

    def _read(self) -> bool:
        chunk = os.read(self.read_end, 65536)
        if chunk:
            self._pass(chunk)
        return bool(chunk)

    def _pass(self, text: bytes) -> None:
        out = []
        for part in (self.line + text).splitlines(keepends=True):
            ended = part.endswith((b"\n", b"\r"))
            # A runtime writes its line whole, after whatever is on the line already.
            if not ended and any(p.startswith(part) or part.startswith(p) for p in _RUNTIME_LINES):
                self.line = part  # may be a runtime's line: wait for its end
                break
            if part.startswith(_RUNTIME_LINES):
                self.held.append(part.strip())
                continue
            if part.startswith(_SAID):
                self.said = part
            out.append(part)
            self.mid_line = not ended
        else:
            self.line = b""
        text = b"".join(out)
        hidden, shown = text.rfind(_HIDDEN_CURSOR), text.rfind(_SHOWN_CURSOR)
        if hidden != shown:
            self.cursor_hidden = hidden > shown
        _write(text)

    def end_line(self) -> None:
        """Before the watcher's own line: the cursor a progress bar hid is shown again, and
        a line it left unfinished is ended."""
        if self.cursor_hidden and os.isatty(2):
            _write(_SHOWN_CURSOR)
        if self.mid_line:
            _write(b"\n")


def _outcome(status: int, held: list[bytes], limit: int, command: str | None,
             said: bytes | None = None) -> tuple[int, str | None]:
    """(the exit code, the line to say or None) for the child's wait status; `said`: the
    child's own last error line, if it got to say one."""
    if os.WIFEXITED(status) and not (os.WEXITSTATUS(status) == 127 and held):
        return os.WEXITSTATUS(status), None
    if os.WIFSIGNALED(status) and os.WTERMSIG(status) in _PASSED_ON:
        return 130, None
    if said is not None:  # it said what went wrong, then died on its way out
        return (130 if said.startswith(b"digits: interrupted") else 1), None
    text = b" ".join(held)
    mib = f"{limit // 2**20} MiB"
    if b"bad_alloc" in text or b"thread-local" in text:
        what = "starting a thread" if b"thread-local" in text and b"bad_alloc" not in text else \
            "inside a library (std::bad_alloc)"
        reason = f"the program ran out of memory {what}; the memory limit (ulimit -v) of {mib} is too low for this run"
    else:
        try:
            name = signal.Signals(os.WTERMSIG(status)).name if os.WIFSIGNALED(status) else f"exit {os.WEXITSTATUS(status)}"
        except ValueError:
            name = f"signal {os.WTERMSIG(status)}"
        reason = f"the program was ended by {name}, under a memory limit (ulimit -v) of {mib}, which may be the cause"
    rows = " (rows already written stay; --resume continues)" if command == "classify" else ""
    return 1, f"digits: error: {reason}{rows}"


def _write(data: bytes) -> None:
    try:
        os.write(2, data)
    except OSError:  # our stderr is closed or full: the child's lines go nowhere
        pass


def _say(line: str) -> None:
    _write((line + "\n").encode())
