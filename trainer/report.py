"""A training run's artefacts: history.json/.png, metrics.json, confusion.png, calibration.png."""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from digits.core.contract import NUM_CLASSES


@contextmanager
def _figure(path: Path, columns: int, size: tuple[float, float]) -> Iterator[tuple]:
    """(figure, axes) of `columns` plots side by side, saved to `path` when the block ends."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, columns, figsize=size)
    try:
        yield fig, axes
        fig.tight_layout()
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)


def plot_history(history: dict, path: Path) -> None:
    """Loss and accuracy per epoch, training against validation, as the seed plots them."""
    epochs = np.arange(1, len(history["loss"]) + 1)
    with _figure(path, 2, (11, 4)) as (_, axes):
        for ax, key, title in ((axes[0], "loss", "Loss"), (axes[1], "accuracy", "Accuracy")):
            ax.plot(epochs, history[key], label="training")
            if f"val_{key}" in history:
                ax.plot(epochs, history[f"val_{key}"], label="validation")
            ax.set(title=title, xlabel="epoch")
            ax.grid(alpha=0.3)
            ax.legend()


def plot_confusion(matrix: list[list[int]], path: Path, title: str = "Confusion matrix (test)") -> None:
    m = np.asarray(matrix)
    with _figure(path, 1, (6, 5.5)) as (_, ax):
        ax.imshow(m, cmap="Blues")
        for (i, j), count in np.ndenumerate(m):
            ax.text(j, i, str(count), ha="center", va="center", fontsize=8,
                    color="white" if count > m.max() / 2 else "black")
        ax.set(xticks=range(NUM_CLASSES), yticks=range(NUM_CLASSES), xlabel="predicted label",
               ylabel="true label", title=title)


def format_confusion(matrix: list[list[int]]) -> str:
    """The matrix as a text table: rows true labels, columns predicted."""
    rows = [f"{label:>9} " + "".join(f"{n:>6}" for n in row) for label, row in enumerate(matrix)]
    return "\n".join(["true\\pred " + "".join(f"{c:>6}" for c in range(NUM_CLASSES)), *rows])


def plot_calibration(calibration: dict, path: Path) -> None:
    """Reliability diagram: accuracy against mean confidence per confidence bin, before and
    after temperature scaling, on the test digits; a calibrated model lies on the diagonal."""
    bins = calibration["ece_bins"]
    centres = (np.arange(bins) + 0.5) / bins
    with _figure(path, 2, (11, 4.5)) as (fig, axes):
        for ax, key, title in (
            (axes[0], "reliability_before", f"as trained: ECE {calibration['test_ece_before']:.4f}"),
            (axes[1], "reliability_after",
             f"temperature {calibration['temperature']:.3f}: ECE {calibration['test_ece_after']:.4f}"),
        ):
            accuracy = np.array(calibration[key]["accuracy"], dtype=float)
            confidence = np.array(calibration[key]["confidence"], dtype=float)
            filled = np.array(calibration[key]["counts"]) > 0
            ax.bar(centres[filled], accuracy[filled], width=1 / bins, edgecolor="black", alpha=0.7, label="accuracy")
            ax.plot(confidence[filled], accuracy[filled], "o", color="C3", label="(mean confidence, accuracy)")
            ax.plot([0, 1], [0, 1], "--", color="gray", label="calibrated")
            ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence (top probability)", ylabel="accuracy", title=title)
            ax.legend(loc="upper left")
            ax.grid(alpha=0.3)
        fig.suptitle("Reliability on the test digits (bins of equal width)")
