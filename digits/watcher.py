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
foreground group (Ctrl-C) reaches the child already and is not sent twice.
"""

import os
import select
import signal
import sys

# What the C and C++ runtimes print as they end a process: held back, and said in our words.
_RUNTIME_LINES = (
    b"terminate called after throwing",
    b"  what():",
    b"cannot allocate memory for thread-local data",
)
_PASSED_ON = (signal.SIGINT, signal.SIGTERM)
_SI_KERNEL = 0x80  # si_code of a signal the kernel sent (the terminal's Ctrl-C), not kill()
_PR_SET_PDEATHSIG = 1


def address_space_limit() -> int | None:
    """The soft address-space limit in bytes, or None when there is none."""
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    return None if soft == resource.RLIM_INFINITY else soft


def watch(command: str | None) -> None:
    """Under an address-space limit: fork; return in the child, which runs the program;
    in the parent, pass the child's stderr through, wait for it, and exit as it did
    (or, when it died of the limit, with one line and exit 1). Without a limit, or
    where there is no fork, return at once."""
    limit = address_space_limit()
    if limit is None or not hasattr(os, "fork"):
        return
    read_end, write_end = os.pipe()
    parent = os.getpid()
    try:
        child = os.fork()
    except OSError:  # no process to spare: run unwatched
        os.close(read_end)
        os.close(write_end)
        return
    if child == 0:
        os.close(read_end)
        _die_with(parent)
        terminal = os.isatty(2)
        os.dup2(write_end, 2)
        os.close(write_end)
        if terminal:  # the commands draw progress for a terminal: the watcher's stderr is one
            sys.stderr = _Terminal(sys.stderr)
        return
    os.close(write_end)
    signal.pthread_sigmask(signal.SIG_BLOCK, _PASSED_ON)
    status, held = _Relay(read_end).run(child)
    sys.exit(_exit_code(status, held, limit, command))


class _Terminal:
    """sys.stderr, said to be a terminal: what it writes reaches one through the watcher."""

    def __init__(self, stream):
        self._stream = stream

    def isatty(self) -> bool:
        return True

    def __getattr__(self, name):
        return getattr(self._stream, name)


def _die_with(parent: int) -> None:
    """The child gets SIGKILL when the watcher dies (Linux's PR_SET_PDEATHSIG)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the child outlives a killed watcher
        return
    if os.getppid() != parent:  # the watcher died before the request was in place
        os._exit(1)


class _Relay:
    """The child's stderr copied to ours as it comes, except the runtimes' own lines,
    which are held back: a line that may be one waits for its end, any other text
    passes at once (a progress bar's redraw ends in no newline)."""

    def __init__(self, read_end: int):
        self.read_end = read_end
        self.held: list[bytes] = []
        self.line = b""  # the start of a line that may be a runtime's, not passed yet
        self.mid_line = False  # the current line was passed in part: the rest passes too

    def run(self, child: int) -> tuple[int, list[bytes]]:
        """Relay until the child ends, passing on signals sent to the watcher alone;
        (the child's wait status, the runtime lines held back)."""
        status = None
        open_ = True
        while status is None:
            if open_:
                ready, _, _ = select.select([self.read_end], [], [], 0.05)
                if ready:
                    open_ = self._read()
                info = signal.sigtimedwait(_PASSED_ON, 0)
            else:
                info = signal.sigtimedwait(_PASSED_ON, 0.05)
            while info is not None:
                if info.si_code != _SI_KERNEL:
                    _send(child, info.si_signo)
                info = signal.sigtimedwait(_PASSED_ON, 0)
            pid, code = os.waitpid(child, os.WNOHANG)
            if pid:
                status = code
        # A worker the child forked may hold the pipe still: what is there now is read, no more.
        while open_ and select.select([self.read_end], [], [], 0)[0]:
            open_ = self._read()
        os.close(self.read_end)
        if self.line:
            self._pass(self.line + b"\n")
        return status, self.held

    def _read(self) -> bool:
        chunk = os.read(self.read_end, 65536)
        if chunk:
            self._pass(chunk)
        return bool(chunk)

    def _pass(self, text: bytes) -> None:
        out = []
        for part in (self.line + text).splitlines(keepends=True):
            ended = part.endswith((b"\n", b"\r"))
            if self.mid_line:
                out.append(part)
            elif not ended and any(p.startswith(part) or part.startswith(p) for p in _RUNTIME_LINES):
                self.line = part  # may be a runtime's line: wait for its end
                break
            elif part.startswith(_RUNTIME_LINES):
                self.held.append(part.strip())
            else:
                out.append(part)
            self.mid_line = not ended
        else:
            self.line = b""
        try:
            os.write(2, b"".join(out))
        except OSError:  # our stderr is closed or full: the child's lines go nowhere
            pass


def _send(child: int, signum: int) -> None:
    try:
        os.kill(child, signum)
    except ProcessLookupError:
        pass


def _exit_code(status: int, held: list[bytes], limit: int, command: str | None) -> int:
    if os.WIFEXITED(status) and not (os.WEXITSTATUS(status) == 127 and held):
        return os.WEXITSTATUS(status)
    if os.WIFSIGNALED(status) and os.WTERMSIG(status) in _PASSED_ON:
        return 130
    text = b" ".join(held)
    if b"bad_alloc" in text:
        what = "ran out of memory inside a library (std::bad_alloc)"
    elif b"thread-local" in text:
        what = "ran out of memory starting a thread"
    elif held:
        what = f"ended inside a library ({held[0].decode('utf-8', 'replace')})"
    else:
        what = f"was ended by {signal.Signals(os.WTERMSIG(status)).name}"
    rows = " (rows already written stay; --resume continues)" if command == "classify" else ""
    _say(f"digits: error: the program {what}; the memory limit (ulimit -v) of {limit // 2**20} MiB is "
         f"likely too low for this run{rows}")
    return 1


def _say(line: str) -> None:
    try:
        os.write(2, (line + "\n").encode())
    except OSError:
        pass
