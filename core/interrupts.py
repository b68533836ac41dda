"""Whether the user has asked the program to stop (Ctrl-C or SIGTERM), as the program's
own signal handler recorded it (digits.cli): the one place every part can ask, whatever
handler is installed at the moment.

The handler also raises, to stop whatever is running; but Python swallows what a
handler raises inside a weakref callback or a __del__ (an import cleaning up its module
lock, say), and the program would go on as if nothing had been asked. The parts that
take the signals over for long work (a classify run's stop flag, training's stop
between batches) ask here first, so a request made before them is not lost.
"""

_signals: list[int] = []


def record(signum: int) -> None:
    _signals.append(signum)


def asked() -> int | None:
    """The first signal the user sent, or None."""
    return _signals[0] if _signals else None


def reset() -> None:
    _signals.clear()
