"""Does a runtime give Keras's answers? Numbers first (per case and output, the max absolute, max
relative and mean absolute difference, as Hugging Face Optimum and NVIDIA Polygraphy compare),
then docs/export.md's verdict. onnx's reference evaluator gives a second opinion on the ONNX model.
"""

from dataclasses import dataclass

import numpy as np

from digits.core.contract import DIGIT_SCORE, IMAGE_SIZE, INPUT_NAME, LABEL, PROBABILITIES
from digits.core.errors import EXIT_CHECK_FAILED, DigitsError

DEFAULT_ATOL = 1e-5
DEFAULT_RTOL = 1e-5
REFERENCE_SAMPLES = 300  # the pure-numpy reference evaluator is slow; a few hundred suffice
EDGE_SEED = 0
# The float outputs a graph may give, each held to atol/rtol where a runtime gives it.
FLOAT_OUTPUTS = (PROBABILITIES, DIGIT_SCORE)


@dataclass
class Check:
    """One export check's verdict: its numbers (as MODEL.parity.json holds them), the gates that
    failed in words, and the console line's text after the check's name."""

    name: str
    numbers: dict
    failures: list[str]
    summary: str

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def failure(self) -> str:
        return "; ".join(self.failures)

    def line(self) -> str:
        return f"[{'✓' if self.passed else '✗'}] {self.name}: {self.summary}"

    def to_json(self) -> dict:
        return {"passed": self.passed, **self.numbers, **({"failure": self.failure} if self.failures else {})}


def against_keras(cases: list[dict], atol: float, rtol: float, name: str = "parity") -> Check:
    """A runtime against Keras on every case (judge's), as one Check whose numbers are MODEL.parity.json's
    head: per output the largest differences and the mean weighted by samples, label agreement."""
    samples = sum(c["samples"] for c in cases)
    weights = [c["samples"] for c in cases]
    outputs = {output: {  # the float outputs, then the label: every case runs the same file
        **{key: max(c[output][key] for c in cases) for key in ("max_abs_diff", "max_rel_diff")},
        "mean_abs_diff": float(np.average([c[output]["mean_abs_diff"] for c in cases], weights=weights)),
    } for output in (*FLOAT_OUTPUTS, LABEL) if output in cases[0]}
    agreement = sum(c["label_agreement"] * c["samples"] for c in cases) / samples
    numbers = {"atol": atol, "rtol": rtol, "samples": samples, "outputs": outputs, "label_agreement": agreement,
               "cases": cases}
    failures = [f"probabilities differ by up to {c[PROBABILITIES]['max_abs_diff']:.2e} (atol {atol:g}, "
                f"rtol {rtol:g}) and labels agree on {c['label_agreement']:.2%} of '{c['case']}' ({c['runtime']})"
                for c in cases if not c["passed"]][:1]
    summary = (f"vs Keras on {samples:,} inputs: max abs diff {outputs[PROBABILITIES]['max_abs_diff']:.2e} "
               f"(atol {atol:g}), labels agree {agreement:.2%}")
    return Check(name, numbers, failures, summary)


def table(check: Check) -> str:
    """An against_keras check for the console: a row per case, then a verdict per output."""
    n = check.numbers
    header = (f"{'case':<22}{'runtime':<16}{'samples':>8}{'max abs':>11}{'max rel':>11}{'mean abs':>11}"
              f"{'labels':>9}  ok")
    lines = [header, "-" * len(header)]
    for c in n["cases"]:
        p = c[PROBABILITIES]
        lines.append(f"{c['case']:<22}{c['runtime']:<16}{c['samples']:>8}{p['max_abs_diff']:>11.2e}"
                     f"{p['max_rel_diff']:>11.2e}{p['mean_abs_diff']:>11.2e}{c['label_agreement']:>9.2%}"
                     f"  {'✓' if c['passed'] else '✗'}")
    close = all(c["close"] for c in n["cases"])
    for name, diff in list(n["outputs"].items())[:-1]:
        lines.append(f"[{'✓' if close else '✗'}] {name}: max abs diff {diff['max_abs_diff']:.2e} "
                     f"(atol {n['atol']:g}, rtol {n['rtol']:g})")
    ties = sum(c["label_ties"] for c in n["cases"])
    labels_ok = all(round((1.0 - c["label_agreement"]) * c["samples"]) == c["label_ties"] for c in n["cases"])
    lines.append(f"[{'✓' if labels_ok else '✗'}] label: agreement {n['label_agreement']:.2%}"
                 + (f" ({ties} differing labels are ties within tolerance)" if ties else ""))
    return "\n".join(lines)


class ParityError(DigitsError):
    """An export's check failed; carries the check."""

    exit_code = EXIT_CHECK_FAILED

    def __init__(self, check, where: str):
        self.check = check
        what = "" if check.name == "parity" else f"{check.name}: "
        super().__init__(f"{where}: parity check failed: {what}{check.failure}; nothing exported")


def compare(reference: np.ndarray, candidate: np.ndarray, atol: float) -> dict[str, float]:
    """How far one output is from the reference. max_rel_diff counts only elements whose
    reference exceeds atol: relative error of a 1e-30 is noise."""
    reference = reference.astype(np.float64)
    diff = np.abs(candidate.astype(np.float64) - reference)
    meaningful = np.abs(reference) > atol
    rel = diff[meaningful] / np.abs(reference[meaningful])
    return {"max_abs_diff": float(diff.max(initial=0.0)), "max_rel_diff": float(rel.max(initial=0.0)),
            "mean_abs_diff": float(diff.mean()) if diff.size else 0.0}


def judge(case: str, runtime: str, keras: dict[str, np.ndarray], answers: dict[str, np.ndarray],
          atol: float, rtol: float) -> dict:
    """A runtime's `answers` (output name -> array; LABEL required) against Keras's (output name ->
    array; PROBABILITIES required), as MODEL.parity.json's case: compare() of each FLOAT_OUTPUTS
    output both give and of the label; label_ties, the labels that differ where Keras's top two are
    within tolerance; close, np.allclose on every float output; passed, close and every label equal
    or such a tie."""
    keras_probs = keras[PROBABILITIES]
    keras_labels = keras_probs.argmax(axis=1)
    differ = keras_labels != answers[LABEL]
    top_two = np.sort(keras_probs, axis=1)[:, -2:]
    tie = top_two[:, 1] - top_two[:, 0] <= atol + rtol * top_two[:, 1]
    ties = int((differ & tie).sum())
    result, close = {"case": case, "runtime": runtime, "samples": len(keras_probs)}, True
    for name in FLOAT_OUTPUTS:
        if name in answers and name in keras:
            result[name] = compare(keras[name], answers[name], atol)
            close = close and bool(np.allclose(answers[name], keras[name], atol=atol, rtol=rtol))
    result[LABEL] = compare(keras_labels, answers[LABEL], atol)
    return {**result, "label_agreement": float(1.0 - differ.mean()), "label_ties": ties, "close": close,
            "passed": close and ties == int(differ.sum())}


def parity_inputs(real: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """Named uint8 [N, 28, 28] batches: the real digits and the edge cases."""
    rng = np.random.default_rng(EDGE_SEED)
    digit = (IMAGE_SIZE, IMAGE_SIZE)
    noise = rng.integers(0, 256, size=(256, *digit), dtype=np.uint8)
    return [
        ("real digits", real),
        ("all zeros", np.zeros((4, *digit), np.uint8)),
        ("all 255", np.full((4, *digit), 255, np.uint8)),
        ("uniform noise", noise),
        ("batch of 1", real[:1]),
        ("batch of 4,096", np.resize(np.concatenate([real, noise]), (4096, *digit))),
    ]


def keras_answers(keras_model, real: np.ndarray) -> list[tuple[str, np.ndarray, dict[str, np.ndarray]]]:
    """(case, digits, Keras's outputs: probabilities and digit_score) for each of parity_inputs(real),
    each case predicted as one batch: computed once per export, shared by every check against Keras."""
    from digits.batch.scores import digit_scores
    from digits.exporter.convert import with_scores
    from digits.trainer.model import predict_keras

    scored = with_scores(keras_model)  # calibrated probabilities, and those before temperature
    answers = []
    for case, digits in parity_inputs(real):
        probs, as_trained = predict_keras(scored, digits, batch_size=len(digits))
        answers.append((case, digits, {PROBABILITIES: probs, DIGIT_SCORE: digit_scores(as_trained)}))
    return answers


def judged(answers: list, run, runtime: str, atol: float, rtol: float) -> list[dict]:
    """`run(digits)` -> {output name: array}, judged against Keras's `answers` (keras_answers) on every case."""
    return [judge(case, runtime, keras, run(digits), atol, rtol) for case, digits, keras in answers]


def check_parity(answers: list, onnx_path, atol: float = DEFAULT_ATOL, rtol: float = DEFAULT_RTOL) -> Check:
    """onnxruntime on every case and onnx's reference evaluator on the first real digits, against
    Keras's `answers` (keras_answers): every output the graph gives, by its name."""
    import onnx
    import onnxruntime as ort
    from onnx.reference import ReferenceEvaluator

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    evaluator = ReferenceEvaluator(onnx.load(str(onnx_path)))
    names = [o.name for o in session.get_outputs()]
    case, real, keras = answers[0]
    first = [(case, real[:REFERENCE_SAMPLES], {name: values[:REFERENCE_SAMPLES] for name, values in keras.items()})]
    cases = (judged(answers, lambda d: dict(zip(names, session.run(names, {INPUT_NAME: d}))), "onnxruntime", atol, rtol)
             + judged(first, lambda d: dict(zip(names, evaluator.run(names, {INPUT_NAME: d}))), "onnx reference",
                      atol, rtol))
    return against_keras(cases, atol, rtol)
