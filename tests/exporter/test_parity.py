"""The parity verdict: close probabilities and equal labels, ties within tolerance excepted."""

import numpy as np

from digits.core.contract import DIGIT_SCORE, LABEL, PROBABILITIES
from digits.exporter.parity import judge


def _probs(*rows):
    return np.array(rows, np.float32)


def _answers(probs, labels):
    return {PROBABILITIES: probs, LABEL: labels}


def test_labels_that_differ_only_on_a_tie_within_tolerance_pass():
    keras = _probs([0.5, 0.5 - 2e-6] + [0.0] * 8, [0.9, 0.1] + [0.0] * 8)
    onnx = keras + _probs([-1e-6, 1e-6] + [0.0] * 8, [0.0] * 10)  # the tie breaks the other way
    case = judge("real digits", "onnxruntime", {PROBABILITIES: keras}, _answers(onnx, onnx.argmax(axis=1)),
                 atol=1e-5, rtol=1e-5)
    assert case["close"] and case["label_agreement"] == 0.5 and case["label_ties"] == 1 and case["passed"]


def test_a_label_that_differs_without_a_tie_fails():
    keras = _probs([0.5, 0.4] + [0.0] * 8)
    onnx = keras.copy()
    case = judge("real digits", "onnxruntime", {PROBABILITIES: keras}, _answers(onnx, np.array([1])),
                 atol=1e-5, rtol=1e-5)
    assert case["close"] and case["label_ties"] == 0 and not case["passed"]


def test_probabilities_beyond_tolerance_fail():
    keras = _probs([0.6, 0.4] + [0.0] * 8)
    onnx = keras + _probs([-1e-3, 1e-3] + [0.0] * 8)
    case = judge("real digits", "onnxruntime", {PROBABILITIES: keras}, _answers(onnx, onnx.argmax(axis=1)),
                 atol=1e-5, rtol=1e-5)
    assert not case["close"] and not case["passed"] and case[PROBABILITIES]["max_abs_diff"] > 9e-4


def test_a_digit_score_beyond_tolerance_fails():
    keras = _probs([0.6, 0.4] + [0.0] * 8)
    answers = {**_answers(keras, np.array([0])), DIGIT_SCORE: np.array([0.5], np.float32)}
    case = judge("real digits", "onnxruntime", {PROBABILITIES: keras, DIGIT_SCORE: np.array([0.5 + 1e-3])},
                 answers, atol=1e-5, rtol=1e-5)
    assert not case["close"] and not case["passed"] and case[DIGIT_SCORE]["max_abs_diff"] > 9e-4
