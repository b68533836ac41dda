"""A model's scores against the contract (float32 [N, 10], one row per digit, finite, each row a
probability distribution): one rule for every classifier's every call, numpy over the block."""

from dataclasses import dataclass

import numpy as np

from digits.core.contract import IMAGE_SIZE, NUM_CLASSES
from digits.core.errors import ModelError

PROBE_DIGITS = 3  # digits every model is run on when it is loaded


def probe_digits() -> np.ndarray:
    """uint8 [PROBE_DIGITS, 28, 28]: blank, full, and a gradient: unlike digits, whose outputs can tell
    logits from probabilities (one digit's cannot)."""
    return np.stack([np.zeros((IMAGE_SIZE, IMAGE_SIZE), np.uint8), np.full((IMAGE_SIZE, IMAGE_SIZE), 255, np.uint8),
                     np.tile(np.arange(0, 252, 9, dtype=np.uint8), (IMAGE_SIZE, 1))])


# How far a probability distribution computed in float32 may stray from 0..1 and a sum of 1
# (a float32 softmax strays ~1e-7): the one rule for the runtimes' outputs and export's Keras scores.
_SUM_TOLERANCE = 1e-3
_RANGE_TOLERANCE = 1e-5


def distributions(scores: np.ndarray, step: float = 0.0) -> bool:
    """Whether every row of float32 [N, 10] is a probability distribution (each value within `step` more of
    0..1, each sum within NUM_CLASSES x `step` more of 1: a quantized output's rounding); NaN is none."""
    low, high = float(scores.min(initial=0.0)), float(scores.max(initial=0.0))
    if not (low >= -_RANGE_TOLERANCE - step and high <= 1 + _RANGE_TOLERANCE + step):
        return False
    return float(np.abs(scores.sum(axis=1) - 1).max(initial=0.0)) <= _SUM_TOLERANCE + NUM_CLASSES * step


def checked_outputs(path, scores, digit_score, n: int) -> np.ndarray:
    """A model's outputs for `n` digits as one float32 array: its scores [n, 10], with its digit_score
    (None: it gives none) clipped to 0..1 as an 11th column, so that in_batches_of's slicing carries
    both. ModelError unless each has its shape (one row, or one score, per digit) and is finite."""
    checked = []
    for what, nouns, values, shape in (("an output", "scores", scores, (n, NUM_CLASSES)),
                                       ("a digit_score", "digit scores", digit_score, (n,))):
        if values is None:
            continue
        values = np.asarray(values)
        if values.shape != shape:
            raise ModelError(f"{path}: model gave {what} of shape {list(values.shape)} for {n:,} digits; "
                             f"needs [{','.join(map(str, shape))}], one {'row' if shape[1:] else 'score'} per digit")
        values = values.astype(np.float32, copy=False)
        finite = np.isfinite(values).all(axis=tuple(range(1, values.ndim)))  # per digit
        if not finite.all():
            raise ModelError(f"{path}: model gave NaN or infinite {nouns} "
                             f"(digit {int(np.argmin(finite)):,} of a batch of {n:,})")
        checked.append(values)
    return checked[0] if len(checked) == 1 else np.column_stack([checked[0], np.clip(checked[1], 0.0, 1.0)])


def check_probabilities(path, what: str, scores: np.ndarray, step: float = 0.0) -> np.ndarray:
    """checked_outputs' scores, float32 [N, 10], in 0..1, each row held to be a probability distribution
    (`step`: a quantized output's scale); ModelError naming the model and `what` otherwise."""
    if not distributions(scores, step):
        sums = scores.sum(axis=1)
        worst = int(np.abs(sums - 1).argmax())
        raise ModelError(f"{path}: {what} is not a probability distribution per digit (values "
                         f"{float(scores.min()):.9g}..{float(scores.max()):.9g}, digit {worst:,}'s sum to "
                         f"{float(sums[worst]):.9g}); the model does not keep the contract")
    return np.clip(scores, 0.0, 1.0)  # float rounding may put a probability a hair outside 0..1


def in_batches_of(n: int | None, feed: np.ndarray, run) -> np.ndarray:
    """run(feed), for a model whose batch size is fixed at `n` (None: any size): the feed
    padded with blank digits to a multiple of n, run n at a time, the padding's rows dropped."""
    if n is None or len(feed) == n:
        return run(feed)
    pad = -len(feed) % n
    feed = np.concatenate([feed, np.zeros((pad, *feed.shape[1:]), feed.dtype)])
    return np.concatenate([run(feed[i : i + n]) for i in range(0, len(feed), n)])[: len(feed) - pad]


def digit_scores(probabilities: np.ndarray) -> np.ndarray:
    """float32 [N] in 0..1, higher = more like a digit: each row's largest probability, rescaled so
    that a uniform row (what outlier exposure trains the model to give a non-digit) is 0 and a
    certain one 1. The exported graph's `digit_score` output is the same sum (exporter/convert.py)."""
    top = probabilities.max(axis=1).astype(np.float32)
    return (top - np.float32(1 / NUM_CLASSES)) * np.float32(NUM_CLASSES / (NUM_CLASSES - 1))


def softmax(scores: np.ndarray) -> np.ndarray:
    shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def probabilities_from(scores: np.ndarray) -> np.ndarray:
    """A model's scores [N, 10] as probabilities: as they are when every row is a distribution, else
    (logits) softmaxed. Decided for the whole array: a logits row may look like a distribution."""
    scores = scores.astype(np.float32, copy=False)
    return scores if distributions(scores) else softmax(scores)


@dataclass
class Predicted:
    """A block of digits as the model and the blank rule see them: what a block's rows are made from."""

    probabilities: np.ndarray  # float32 [N, 10]
    scores: np.ndarray | None = None  # float32 [N] digit_score, 0..1; None: the model gives none
    blank: np.ndarray | None = None  # bool [N]: no ink (batch.block.blank_digits); given as None: none blank
    below: np.ndarray | None = None  # bool [N]: not blank, digit_score under the threshold; given as None: none

    def __post_init__(self):
        self.blank = np.zeros(len(self.probabilities), bool) if self.blank is None else self.blank
        self.below = np.zeros(len(self.probabilities), bool) if self.below is None else self.below

    @property
    def not_digit(self) -> np.ndarray:
        """bool [N]: blank or under the threshold: the rows --not-digits marks or rejects."""
        return self.blank | self.below


def threshold_from(path, text) -> float | None:
    """A model's digit_score_threshold metadata (exporter/metadata.py) as a number in 0..1; None when
    it has none (`text` None); ModelError, in one line, for anything else."""
    if text is None:
        return None
    try:
        threshold = float(text)
    except (TypeError, ValueError):
        threshold = -1.0
    if not 0 <= threshold <= 1:
        raise ModelError(f"{path}: metadata digit_score_threshold {str(text)[:40]!r} is not a number in 0..1")
    return threshold


def describe_score(name: str | None, threshold: float | None) -> str:
    """A classifier's describe() suffix for its digit_score output: empty when it has none."""
    if name is None:
        return ""
    return f", {name}" + ("" if threshold is None else f" (not a digit under {threshold:.6f})")
