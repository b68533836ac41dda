"""A training run's artefacts: history.json/.png, metrics.json, confusion.png, calibration.png."""

from pathlib import Path

import numpy as np

from digits.core.atomic import json_text
from digits.core.contract import NUM_CLASSES


def write_json(path: Path, payload: dict) -> None:
    path.write_text(json_text(payload))  # strict: an empty bin's NaN is null


def plot_history(history: dict, path: Path) -> None:
    """Loss and accuracy per epoch, training against validation, as the seed plots them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = np.arange(1, len(history["loss"]) + 1)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, key, title in ((axes[0], "loss", "Loss"), (axes[1], "accuracy", "Accuracy")):
        ax.plot(epochs, history[key], label="training")
        if f"val_{key}" in history:
            ax.plot(epochs, history[f"val_{key}"], label="validation")
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_confusion(matrix: list[list[int]], path: Path, title: str = "Confusion matrix (test)") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = np.asarray(matrix)
    fig, ax = plt.subplots(figsize=(6, 5.5))
    ax.imshow(m, cmap="Blues")
    for (i, j), count in np.ndenumerate(m):
        ax.text(j, i, str(count), ha="center", va="center", fontsize=8,
                color="white" if count > m.max() / 2 else "black")
    ax.set_xticks(range(NUM_CLASSES))
    ax.set_yticks(range(NUM_CLASSES))
    ax.set_xlabel("predicted label")
    ax.set_ylabel("true label")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def format_confusion(matrix: list[list[int]]) -> str:
    """The matrix as a text table: rows true labels, columns predicted."""
    lines = ["true\\pred " + "".join(f"{c:>6}" for c in range(NUM_CLASSES))]
    for label, row in enumerate(matrix):
        lines.append(f"{label:>9} " + "".join(f"{n:>6}" for n in row))
    return "\n".join(lines)


def plot_calibration(calibration: dict, path: Path) -> None:
    """Reliability diagram: accuracy against mean confidence per confidence bin, before and
    after temperature scaling, on the test digits; a calibrated model lies on the diagonal."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bins = calibration["ece_bins"]
    centres = (np.arange(bins) + 0.5) / bins
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    for ax, key, title in (
        (axes[0], "reliability_before", f"as trained: ECE {calibration['test_ece_before']:.4f}"),
        (axes[1], "reliability_after",
         f"temperature {calibration['temperature']:.3f}: ECE {calibration['test_ece_after']:.4f}"),
    ):
        bins_of = calibration[key]
        accuracy = np.array(bins_of["accuracy"], dtype=float)
        confidence = np.array(bins_of["confidence"], dtype=float)
        filled = np.array(bins_of["counts"]) > 0
        ax.bar(centres[filled], accuracy[filled], width=1 / bins, edgecolor="black", alpha=0.7, label="accuracy")
        ax.plot(confidence[filled], accuracy[filled], "o", color="C3", label="(mean confidence, accuracy)")
        ax.plot([0, 1], [0, 1], "--", color="gray", label="calibrated")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence (top probability)")
        ax.set_ylabel("accuracy")
        ax.set_title(title)
        ax.legend(loc="upper left")
        ax.grid(alpha=0.3)
    fig.suptitle("Reliability on the test digits (bins of equal width)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
