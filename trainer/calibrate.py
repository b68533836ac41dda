"""Confidence you can act on: temperature scaling (Guo et al., 2017), calibration error, coverage at a
threshold; numpy only, so an exported model's probabilities are scored the same way. Why T is fitted
on probabilities, whatever a model's last layer: docs/decisions.md, "Temperature: fitted on probabilities".
"""

import numpy as np

TINY = np.finfo(np.float32).tiny  # log(0) would be -inf: a probability that underflowed stays tiny
T_RANGE = (0.05, 20.0)  # searched on a log scale; a fitted T at either end says the model is odd
ECE_BINS = 15  # equal-width confidence bins, as Guo et al. report ECE
THRESHOLDS = (0.5, 0.8, 0.9, 0.95, 0.99)
DIGITS_KEPT = 0.99  # the digit_score threshold keeps this share of the validation digits
DIGIT_SCORE_METHOD = ("outlier exposure (trainer/outliers.py); digit_score = (max probability before temperature - 0.1)"
                      " / 0.9, a digit when digit_score >= threshold")


def apply_temperature(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log(p) / T), float64 [N, 10]."""
    z = np.log(np.clip(np.asarray(probabilities, np.float64), TINY, 1.0)) / temperature
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def nll(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Mean cross-entropy of the true labels."""
    p = np.clip(np.asarray(probabilities, np.float64)[np.arange(len(labels)), labels], TINY, 1.0)
    return float(-np.log(p).mean())


def fit_temperature(probabilities: np.ndarray, labels: np.ndarray, iterations: int = 80) -> float:
    """The T in T_RANGE that minimises the cross-entropy of `labels` under softmax(log(p) / T):
    a golden-section search on log T (the loss is convex in 1/T); 80 steps narrow the range to 1e-15."""
    golden = (np.sqrt(5) - 1) / 2
    lo, hi = np.log(T_RANGE[0]), np.log(T_RANGE[1])

    def loss(log_t: float) -> float:
        return nll(apply_temperature(probabilities, float(np.exp(log_t))), labels)

    a, b = hi - golden * (hi - lo), lo + golden * (hi - lo)
    fa, fb = loss(a), loss(b)
    for _ in range(iterations):
        if fa <= fb:
            hi, b, fb = b, a, fa
            a = hi - golden * (hi - lo)
            fa = loss(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + golden * (hi - lo)
            fb = loss(b)
    return float(np.exp((lo + hi) / 2))


def reliability(probabilities: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> dict:
    """Per confidence bin (equal width over 0..1): digits, mean confidence, accuracy;
    and the expected calibration error, the digit-weighted mean |accuracy - confidence|."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    counts = np.bincount(which, minlength=bins)
    conf_sum = np.bincount(which, weights=confidence, minlength=bins)
    correct_sum = np.bincount(which, weights=correct, minlength=bins)
    with np.errstate(invalid="ignore"):  # an empty bin's means are 0/0: NaN, null in metrics.json
        mean_conf, accuracy = conf_sum / counts, correct_sum / counts
    ece = float(np.abs(correct_sum - conf_sum).sum() / max(len(labels), 1))
    return {"ece": ece, "counts": counts.tolist(), "confidence": mean_conf.tolist(), "accuracy": accuracy.tolist()}


def coverage_table(probabilities: np.ndarray, labels: np.ndarray, thresholds=THRESHOLDS) -> list[dict]:
    """For each P: the share of digits whose confidence is at least P, and their error rate."""
    confidence = probabilities.max(axis=1)
    wrong = probabilities.argmax(axis=1) != labels
    rows = []
    for p in thresholds:
        accepted = confidence >= p
        n, errors = int(accepted.sum()), int((wrong & accepted).sum())
        rows.append({"p": p, "accepted": n, "coverage": n / max(len(labels), 1), "errors": errors,
                     "error_rate": errors / n if n else 0.0})
    return rows


def digit_score_report(val_probs: np.ndarray, test_probs: np.ndarray, outliers: float) -> dict:
    """metrics.json's `digit_score`: the threshold DIGITS_KEPT of the validation digits reach (0
    without them) and the share of the test digits it rejects. Scored before temperature: the
    temperature fitted for the labels sharpens non-digits too (docs/decisions.md, "Is it a digit?")."""
    from digits.batch.scores import digit_scores

    threshold = float(np.quantile(digit_scores(val_probs), 1 - DIGITS_KEPT)) if len(val_probs) else 0.0
    return {
        "method": DIGIT_SCORE_METHOD if outliers else "max probability before temperature (no outliers in training)",
        "outliers_per_digit": outliers,
        "threshold": round(threshold, 6),
        "fitted_on": f"validation split ({len(val_probs):,} digits): keeps {DIGITS_KEPT:.0%}" if len(val_probs)
        else "nothing (no validation split): threshold 0",
        "test_rejected": float((digit_scores(test_probs) < threshold).mean()),
    }


def calibration_report(val_probs: np.ndarray, val_labels: np.ndarray,
                       test_probs: np.ndarray, test_labels: np.ndarray) -> tuple[float, dict]:
    """(T fitted on the validation digits, 1 without them; metrics.json's `calibration` entry)."""
    held_out = len(val_labels) > 0
    temperature = fit_temperature(val_probs, val_labels) if held_out else 1.0
    report = {
        "temperature": round(temperature, 6),
        "fitted_on": f"validation split ({len(val_labels):,} digits)" if held_out
        else "nothing (no validation split): temperature 1, the model as trained",
    }
    parts = [("validation", val_probs, val_labels)] if held_out else []
    for part, probs, labels in [*parts, ("test", test_probs, test_labels)]:
        after = apply_temperature(probs, temperature)
        report.update({f"{part}_loss_before": nll(probs, labels), f"{part}_loss_after": nll(after, labels),
                       f"{part}_ece_before": reliability(probs, labels)["ece"],
                       f"{part}_ece_after": reliability(after, labels)["ece"]})
    report.update(ece_bins=ECE_BINS, reliability_before=reliability(test_probs, test_labels),
                  reliability_after=reliability(apply_temperature(test_probs, temperature), test_labels))
    return temperature, report
