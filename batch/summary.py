"""What a classify run did: the counts every engine reports, as one typed result."""

from dataclasses import dataclass, field

import numpy as np

from digits.core.contract import NUM_CLASSES


@dataclass
class Summary:
    classified: int = 0  # digits: rows given a label, not blank nor under the digit_score threshold
    failed: int = 0
    not_digits: int = 0  # rows whose digit_score is under the model's threshold (--not-digits)
    blank: int = 0  # rows with no ink: not digits, whatever the model
    skipped: int = 0  # files in walked folders that are neither images nor .npy
    seconds: float = 0.0  # the run's own time: from the first item to the last row, start-up excluded
    interrupted: bool = False
    kept: int = 0  # --resume: rows already in the output, kept as they were
    kept_failed: int = 0  # ... of which error rows
    review: int = 0  # --review-below: classified rows under the threshold
    per_label: np.ndarray = field(default_factory=lambda: np.zeros(NUM_CLASSES, np.int64))
    empty_folders: list[str] = field(default_factory=list)  # named folders that held nothing to classify
    workers: int = 0  # worker processes the local engine ran (0: all in this process)
    model: str = ""  # the classifier's describe(): the runtime, what the model takes and gives
    # --engine ray: `seconds` counts from the moment every actor held its model session
    cluster_seconds: float | None = None  # how long the cluster took to be ready: the two below
    connect_seconds: float = 0.0  # joining or starting Ray
    ready_seconds: float = 0.0  # starting the actors
    joined: bool = False  # an existing cluster was joined, rather than a local Ray started
    actors: int = 0
    cpus: int = 0
    nodes: int = 0  # nodes the actors run on
    # CPU seconds of the whole process up to the run's end, start-up included, and of its
    # worker processes: what limits a run on many cores (make bench differences two runs).
    cpu_main: float = 0.0
    cpu_workers: float = 0.0

    @property
    def items(self) -> int:
        """Rows this run wrote (kept rows not counted)."""
        return self.classified + self.not_digits + self.blank + self.failed

    @property
    def digits_per_second(self) -> float:
        """Rows the model ran on (digits or not) per second."""
        return (self.classified + self.not_digits + self.blank) / self.seconds if self.seconds > 0 else 0.0

    def add(self, rows) -> None:
        """Count a block of rows (a batch.block.BlockRows): its per_label holds its classified rows by label."""
        self.per_label += rows.per_label
        self.classified += int(rows.per_label.sum())
        self.failed += rows.failed
        self.review += rows.review
        self.not_digits += rows.not_digits
        self.blank += rows.blank

    def to_dict(self) -> dict:
        """The summary as JSON-ready values (`digits classify --summary-json`)."""
        names = ("items classified not_digits blank failed skipped kept kept_failed review seconds digits_per_second "
                 "per_label interrupted empty_folders model workers cluster_seconds")
        values = {name: getattr(self, name) for name in names.split()}
        values["per_label"] = {str(label): int(count) for label, count in enumerate(self.per_label)}
        return {**values, "cpu_seconds": {"main": round(self.cpu_main, 6), "workers": round(self.cpu_workers, 6)}}
