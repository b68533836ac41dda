"""Ctrl-C and SIGTERM: the program's one stop policy (docs/reliability.md, "Signals"). The handler
records the request and loops ask `asked()` between steps; a second signal, or the first inside
`raising()` (around a call that cannot ask), raises Interrupted at once (exit 130).
"""

import contextlib
import signal
import threading

SIGNALS = (signal.SIGINT, signal.SIGTERM)
_signals: list[int] = []
_raising = 0  # depth of raising() sections


class Interrupted(BaseException):
    """The user asked the program to stop: a BaseException, so no library's `except Exception`
    swallows it; `finally` blocks (the cleanup of half-written files) still run."""


def handle(signum, frame) -> None:
    """The program's handler for SIGINT and SIGTERM."""
    _signals.append(signum)
    if len(_signals) > 1 or _raising:
        raise Interrupted()


def asked() -> int | None:
    """The first signal the user sent, or None."""
    return _signals[0] if _signals else None


def check() -> None:
    """Interrupted if the user asked to stop: for a step that ends the work when asked."""
    if _signals:
        raise Interrupted()


@contextlib.contextmanager
def installed():
    """`handle` for SIGINT and SIGTERM while the block runs (on the main thread only), the
    handlers before it restored after; installed anew, it starts and ends with nothing asked."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, handle) for s in SIGNALS}
    anew = previous[signal.SIGINT] is not handle
    if anew:
        _signals.clear()
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if anew:
            _signals.clear()


@contextlib.contextmanager
def raising():
    """The first signal raises Interrupted too while the block runs (asked before: at once);
    handlers the call replaced are put back."""
    global _raising
    check()
    main = threading.current_thread() is threading.main_thread()
    previous = {s: signal.getsignal(s) for s in SIGNALS} if main else {}
    _raising += 1
    try:
        yield
    finally:
        _raising -= 1
        for s, handler in previous.items():
            if signal.getsignal(s) is not handler:
                signal.signal(s, handler)


def polled(function, *args, cancel=lambda: None):
    """function(*args) on a thread of its own, asking every 0.1 s whether to stop (a call
    into C cannot ask, and Python runs a handler only between the main thread's steps):
    when asked, cancel() (which ends the call), then Interrupted."""
    check()
    result: list = []

    def run() -> None:
        try:
            result.append((True, function(*args)))
        except BaseException as e:  # noqa: BLE001 - handed to the caller
            result.append((False, e))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(0.1)
        if _signals and thread.is_alive():
            cancel()
            thread.join(1)
            raise Interrupted()
    ok, value = result[0]
    if not ok:
        raise value
    return value

