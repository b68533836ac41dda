"""The progress bar on stderr, with the total from a names-only walk of the inputs."""

import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from digits.batch.arrays import ArrayError, DigitArray
from digits.batch.inputs import ArrayItem


class ProgressBar:
    def __init__(self, entries):
        """`entries`: a second iter_runs over the inputs, for the total (a walk of the names, nothing
        held; an array counts its rows, read from its header)."""
        total = 0
        for entry in entries:
            if isinstance(entry, list):  # a run of images
                total += len(entry)
            elif isinstance(entry, ArrayItem):
                try:
                    total += len(DigitArray(entry.source))
                except ArrayError:
                    total += 1
            else:
                total += 1
        # No refresh thread: worker processes are forked, and a fork should not copy a
        # thread that may hold a lock. The bar redraws on each advance.
        self.progress = Progress(TextColumn("classifying"), BarColumn(), MofNCompleteColumn(),
                                 TimeRemainingColumn(), transient=True, auto_refresh=False,
                                 # On stderr, never into rows on stdout; drawn with cursor
                                 # controls even into a log file when --progress asks for it.
                                 console=Console(stderr=True, force_terminal=True))
        self.task = self.progress.add_task("classify", total=total)
        self.progress.start()
        self._drawn = 0.0

    def advance(self, n: int) -> None:
        self.progress.advance(self.task, n)
        now = time.monotonic()
        if now - self._drawn >= 0.1:  # ten redraws a second are plenty
            self.progress.refresh()
            self._drawn = now

    def close(self) -> None:
        self.progress.stop()
