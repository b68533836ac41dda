"""Ctrl-C and SIGTERM asking a run to stop after the block in hand."""

import signal
import threading

from core import interrupts


class StopFlag:
    """Callable: whether the run was asked to stop. While installed, the first Ctrl-C or
    SIGTERM sets it; a second one goes to the handler the program had (the `digits`
    command's: exit 130 at once)."""

    def __init__(self):
        self.requested = False
        self._previous: dict = {}

    def __call__(self) -> bool:
        return self.requested

    def _handle(self, signum, frame):
        self.requested = True
        for s in (signal.SIGINT, signal.SIGTERM):  # a second signal stops at once: a way out of any wait
            signal.signal(s, self._previous[s])

    def install(self) -> "StopFlag":
        """Take Ctrl-C and SIGTERM, where a program can (its main thread); else stay unset.
        Set at once when the program was asked to stop already (core.interrupts: an
        interrupt its handler could not raise)."""
        self.requested = interrupts.asked() is not None
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def restore(self) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}
