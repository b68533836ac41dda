"""A model's scores against the contract: float32 [N, 10], one row per digit, finite,
each row a probability distribution. Shared by every classifier (onnxruntime's,
LiteRT's), so each model call is held to the same rule; numpy over the block.
"""

import numpy as np

from core.contract import NUM_CLASSES
from core.errors import ModelError

# How far a probability distribution computed in float32 may stray from 0..1 and a sum of 1.
_SUM_TOLERANCE = 1e-3
_RANGE_TOLERANCE = 1e-5


def distributions(scores: np.ndarray, step: float = 0.0) -> bool:
    """Whether every row of float32 [N, 10] is a probability distribution (each value
    within `step` more of 0..1, each sum within NUM_CLASSES x `step` more of 1: the
    rounding of a quantized output)."""
    return bool(scores.min(initial=0.0) >= -_RANGE_TOLERANCE - step
                and scores.max(initial=0.0) <= 1 + _RANGE_TOLERANCE + step
                and (np.abs(scores.sum(axis=1) - 1) <= _SUM_TOLERANCE + NUM_CLASSES * step).all())


def checked_scores(path, scores, n: int) -> np.ndarray:
    """`scores` as float32 [n, 10], finite; ModelError otherwise."""
    scores = np.asarray(scores)
    if scores.shape != (n, NUM_CLASSES):
        raise ModelError(f"{path}: model gave an output of shape {list(scores.shape)} for {n:,} digits; "
                         f"needs [{n},{NUM_CLASSES}], one row per digit")
    scores = scores.astype(np.float32, copy=False)
    if not np.isfinite(scores).all():
        row = int(np.flatnonzero(~np.isfinite(scores).all(axis=1))[0])
        raise ModelError(f"{path}: model gave NaN or infinite scores (digit {row:,} of a batch of {n:,})")
    return scores


def check_probabilities(path, what: str, scores, n: int, step: float = 0.0) -> np.ndarray:
    """A model's output for `n` digits checked against the contract, as float32 [n, 10]
    with every value in 0..1: one row per digit, finite, each row a probability
    distribution (`step`: a quantized output's scale, the rounding it may carry).
    ModelError naming the model and `what` otherwise: the model is wrong, not the digits."""
    scores = checked_scores(path, scores, n)
    if not distributions(scores, step):
        raise ModelError(f"{path}: {what} is not a probability distribution per digit ({_how_not(scores)}); "
                         "the model does not keep the contract")
    # Float rounding may put a probability a hair outside 0..1.
    return np.clip(scores, 0.0, 1.0, out=scores)


def _how_not(scores: np.ndarray) -> str:
    sums = scores.sum(axis=1)
    worst = int(np.abs(sums - 1).argmax())
    return (f"values {float(scores.min()):.9g}..{float(scores.max()):.9g}, "
            f"digit {worst:,}'s sum to {float(sums[worst]):.9g}")


def softmax(scores: np.ndarray) -> np.ndarray:
    shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def as_probabilities(scores: np.ndarray) -> np.ndarray:
    """A model's scores [N, 10] as probabilities: as they are when every row is a
    distribution, else (logits) the softmax of every row. Decided for the whole
    array, not row by row: a logits row that happens to look like a distribution
    is still a logit."""
    scores = scores.astype(np.float32, copy=False)
    return scores if distributions(scores) else softmax(scores)
