"""What a classify run did: the counts every engine reports, as one typed result."""

from dataclasses import dataclass, field

import numpy as np

from core.contract import NUM_CLASSES


@dataclass
class Summary:
    classified: int = 0
    failed: int = 0
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
    cluster_seconds: float | None = None  # --engine ray: how long the cluster took to be ready
    # CPU seconds of the whole process up to the run's end, start-up included, and of its
    # worker processes: what limits a run on many cores (make bench differences two runs).
    cpu_main: float = 0.0
    cpu_workers: float = 0.0

    @property
    def items(self) -> int:
        """Rows this run wrote (kept rows not counted)."""
        return self.classified + self.failed

    @property
    def digits_per_second(self) -> float:
        return self.classified / self.seconds if self.seconds > 0 else 0.0

    def add(self, per_label: np.ndarray, failed: int, review: int = 0) -> None:
        """Count a block of rows: per_label holds its classified rows by label."""
        self.per_label += per_label
        self.classified += int(per_label.sum())
        self.failed += failed
        self.review += review

    def to_dict(self) -> dict:
        """The summary as JSON-ready values (`digits classify --summary-json`)."""
        return {
            "items": self.items, "classified": self.classified, "failed": self.failed, "skipped": self.skipped,
            "kept": self.kept, "kept_failed": self.kept_failed, "review": self.review,
            "seconds": self.seconds, "digits_per_second": self.digits_per_second,
            "per_label": {str(label): int(count) for label, count in enumerate(self.per_label)},
            "interrupted": self.interrupted, "empty_folders": list(self.empty_folders),
            "model": self.model, "workers": self.workers, "cluster_seconds": self.cluster_seconds,
            "cpu_seconds": {"main": round(self.cpu_main, 6), "workers": round(self.cpu_workers, 6)},
        }
