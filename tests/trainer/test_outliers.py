"""The generated non-digits of outlier exposure, and the digit_score they train."""

import numpy as np

from digits.batch.scores import digit_scores
from digits.trainer.calibrate import digit_score_report
from digits.trainer.outliers import GENERATORS, make_outliers


def test_outliers_are_mnist_form_repeatable_and_from_every_generator(small):
    images = make_outliers(50, small.x_train, seed=3)
    assert images.shape == (50, 28, 28) and images.dtype == np.uint8
    np.testing.assert_array_equal(images, make_outliers(50, small.x_train, seed=3))
    assert not np.array_equal(images, make_outliers(50, small.x_train, seed=4))
    # Fitted as classify fits an image: ink reaches 255, and each generator's images have ink.
    for g in range(len(GENERATORS)):
        made = images[g :: len(GENERATORS)]
        assert (made.reshape(len(made), -1).max(axis=1) == 255).all(), GENERATORS[g].__name__


def test_digit_score_is_zero_for_uniform_and_one_for_certain():
    probabilities = np.array([[0.1] * 10, [1.0] + [0.0] * 9, [0.55, 0.45] + [0.0] * 8], np.float32)
    np.testing.assert_allclose(digit_scores(probabilities), [0.0, 1.0, 0.5], atol=1e-6)


def test_threshold_keeps_99_percent_of_validation_digits():
    rng = np.random.default_rng(0)
    val = rng.dirichlet(np.full(10, 0.05), size=5000).astype(np.float32)
    report = digit_score_report(val, val[:1000], outliers=0.5)
    kept = (digit_scores(val) >= report["threshold"]).mean()
    assert 0.985 <= kept <= 0.995
    assert report["test_rejected"] == (digit_scores(val[:1000]) < report["threshold"]).mean()
    assert digit_score_report(val[:0], val, outliers=0.5)["threshold"] == 0.0  # no validation: nothing rejected
