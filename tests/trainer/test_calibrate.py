"""Temperature scaling and the numbers metrics.json reports about confidence (numpy only)."""

import numpy as np
import pytest

from digits.trainer.calibrate import (
    apply_temperature,
    calibration_report,
    coverage_table,
    fit_temperature,
    nll,
    reliability,
)


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def overconfident(n: int, true_t: float, seed: int = 0):
    """Probabilities softmax(z) of a model whose labels really follow softmax(z / true_t)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 4, size=(n, 10))
    truth = softmax(z / true_t)
    labels = np.array([rng.choice(10, p=row) for row in truth])
    return softmax(z).astype(np.float32), labels


@pytest.mark.parametrize("true_t", [0.5, 1.0, 2.5])
def test_fitted_temperature_recovers_the_true_one(true_t):
    probs, labels = overconfident(20000, true_t)
    t = fit_temperature(probs, labels)
    assert t == pytest.approx(true_t, rel=0.08)
    # The fitted T is the minimum: a little either side is worse.
    assert nll(apply_temperature(probs, t), labels) < nll(apply_temperature(probs, t * 1.2), labels)
    assert nll(apply_temperature(probs, t), labels) < nll(apply_temperature(probs, t / 1.2), labels)


def test_temperature_keeps_labels_and_equals_scaling_the_logits():
    rng = np.random.default_rng(1)
    z = rng.normal(0, 6, size=(500, 10))
    for t in (0.3, 1.7, 4.0):
        scaled = apply_temperature(softmax(z), t)
        np.testing.assert_allclose(scaled, softmax(z / t), atol=1e-12)
        np.testing.assert_array_equal(scaled.argmax(1), z.argmax(1))
    # A probability that underflowed to 0 stays a number, not NaN.
    assert np.isfinite(apply_temperature(np.eye(10, dtype=np.float32), 2.0)).all()


def test_calibration_lowers_the_expected_calibration_error():
    probs, labels = overconfident(20000, 2.5)
    val, test = slice(0, 10000), slice(10000, None)
    t, report = calibration_report(probs[val], labels[val], probs[test], labels[test])
    assert report["temperature"] == pytest.approx(t, abs=1e-6)
    assert report["test_ece_after"] < report["test_ece_before"] / 3
    assert report["test_loss_after"] < report["test_loss_before"]
    bins = report["reliability_after"]
    assert sum(bins["counts"]) == 10000 and len(bins["accuracy"]) == report["ece_bins"]


def test_no_validation_digits_means_temperature_one():
    probs, labels = overconfident(1000, 2.0)
    t, report = calibration_report(probs[:0], labels[:0], probs, labels)
    assert t == 1.0 and "nothing" in report["fitted_on"]
    assert report["test_ece_after"] == pytest.approx(report["test_ece_before"], abs=1e-9)


def test_ece_of_a_known_case():
    probs = np.array([[0.9, 0.1] + [0.0] * 8] * 10, dtype=np.float32)
    labels = np.array([0] * 8 + [1] * 2)  # 80% right at confidence 0.9: ECE 0.1
    assert reliability(probs, labels)["ece"] == pytest.approx(0.1, abs=1e-6)


def test_coverage_table_counts_accepted_digits_and_their_errors():
    probs = np.zeros((6, 10))
    confidence = [0.99, 0.97, 0.92, 0.85, 0.6, 0.3]
    for i, c in enumerate(confidence):
        probs[i] = (1 - c) / 9
        probs[i, 0] = c
    labels = np.array([0, 1, 0, 0, 1, 0])  # all predicted 0: the 0.97 and the 0.6 digits are wrong
    rows = {r["p"]: r for r in coverage_table(probs, labels, thresholds=(0.5, 0.9, 0.95, 0.995))}
    assert rows[0.5] == {"p": 0.5, "accepted": 5, "coverage": 5 / 6, "errors": 2, "error_rate": 0.4}
    assert rows[0.9]["accepted"] == 3 and rows[0.9]["errors"] == 1
    assert rows[0.95]["accepted"] == 2 and rows[0.95]["error_rate"] == 0.5
    assert rows[0.995]["accepted"] == 0 and rows[0.995]["error_rate"] == 0.0


def test_metrics_json_is_strict_json(tmp_path):
    """Empty confidence bins are NaN in memory; metrics.json writes them as null, which
    Node's JSON.parse takes (it refuses NaN)."""
    import json

    from digits.core.atomic import json_text

    probabilities, labels = overconfident(200, 2.0)
    bins = reliability(probabilities, labels)
    assert np.isnan(bins["confidence"]).any()  # some bins are empty: the case this guards
    (tmp_path / "metrics.json").write_text(json_text({"calibration": bins, "test_loss": float("inf")}))

    def refuse(constant):
        raise AssertionError(f"{constant} in strict JSON")

    written = json.loads((tmp_path / "metrics.json").read_text(), parse_constant=refuse)
    assert written["test_loss"] is None and None in written["calibration"]["confidence"]
    filled = [c for c in written["calibration"]["confidence"] if c is not None]
    assert filled == [c for c in bins["confidence"] if not np.isnan(c)]
