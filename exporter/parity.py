"""Does the ONNX model give Keras's answers? Numbers first, then a verdict.

Compared the way Hugging Face Optimum and NVIDIA Polygraphy do: per output,
max absolute, max relative and mean absolute difference. The check passes when
np.allclose(runtime, keras, atol, rtol) holds for every float output and the labels
agree on every input, except where Keras's own top two probabilities are within
that same tolerance of each other: there the label is a tie that any
floating-point difference may break, and another CPU may break it otherwise. Inputs:
real digits plus the edges a deployment meets (blank, saturated, noise, a batch of 1,
a batch of 4,096). onnx's own reference evaluator gives a second, independent opinion
on part of the real digits.

Every check of an export (this one, and each variant's) gives a Check: `passed`,
`failure`, `line()` for the console and `to_json()` for MODEL.parity.json.
"""

from dataclasses import asdict, dataclass, field

import numpy as np

from digits.core.contract import DIGIT_SCORE, IMAGE_SIZE, INPUT_NAME, LABEL, PROBABILITIES
from digits.core.errors import EXIT_CHECK_FAILED, DigitsError

DEFAULT_ATOL = 1e-5
DEFAULT_RTOL = 1e-5
REFERENCE_SAMPLES = 300  # the pure-numpy reference evaluator is slow; a few hundred suffice
EDGE_SEED = 0
# The float outputs a graph may give; Keras answers each (keras_answers). A runtime's output
# named here is held to atol/rtol; one it does not give is not compared.
FLOAT_OUTPUTS = (PROBABILITIES, DIGIT_SCORE)


@dataclass
class Check:
    """One variant's verdict: its numbers (as MODEL.parity.json holds them), the gates
    that failed in words, and the console line's text after the variant's name."""

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
        return {**self.numbers, "passed": self.passed, **({"failure": self.failure} if self.failures else {})}


@dataclass
class OutputDiff:
    """How far one output is from the reference. max_rel_diff counts only
    elements whose reference exceeds atol: relative error of a 1e-30 is noise."""

    max_abs_diff: float
    max_rel_diff: float
    mean_abs_diff: float


@dataclass
class CaseResult:
    case: str
    runtime: str
    samples: int
    outputs: dict[str, OutputDiff]  # each float output the runtime gives, and the label
    label_agreement: float
    label_ties: int  # labels that differ where Keras's top two are within tolerance
    close: bool  # np.allclose on every float output
    passed: bool  # close, and every label agrees or is such a tie

    @property
    def labels_ok(self) -> bool:
        return round((1.0 - self.label_agreement) * self.samples) == self.label_ties

    def to_json(self) -> dict:
        head = {"case": self.case, "runtime": self.runtime, "samples": self.samples}
        tail = {k: getattr(self, k) for k in ("label_agreement", "label_ties", "close", "passed")}
        return {**head, **{name: asdict(diff) for name, diff in self.outputs.items()}, **tail}


@dataclass
class ParityReport:
    """A runtime against Keras on every case: a Check, whose JSON is MODEL.parity.json's head."""

    atol: float
    rtol: float
    name: str = "parity"
    cases: list[CaseResult] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.cases)

    @property
    def samples(self) -> int:
        return sum(c.samples for c in self.cases)

    @property
    def output_names(self) -> list[str]:
        """The outputs every case compared: the float ones, then the label."""
        return [name for name in self.cases[0].outputs if all(name in c.outputs for c in self.cases)]

    def output(self, name: str) -> dict:
        diffs = [c.outputs[name] for c in self.cases]
        weights = np.array([c.samples for c in self.cases], dtype=np.float64)
        return {
            "max_abs_diff": max(d.max_abs_diff for d in diffs),
            "max_rel_diff": max(d.max_rel_diff for d in diffs),
            "mean_abs_diff": float(np.average([d.mean_abs_diff for d in diffs], weights=weights)),
        }

    @property
    def label_agreement(self) -> float:
        agreed = sum(c.label_agreement * c.samples for c in self.cases)
        return agreed / max(self.samples, 1)

    def to_json(self) -> dict:
        return {
            "passed": self.passed,
            "atol": self.atol,
            "rtol": self.rtol,
            "samples": self.samples,
            "outputs": {name: self.output(name) for name in self.output_names},
            "label_agreement": self.label_agreement,
            "cases": [c.to_json() for c in self.cases],
            **({} if self.passed else {"failure": self.failure}),
        }

    def table(self) -> str:
        header = (f"{'case':<22}{'runtime':<16}{'samples':>8}{'max abs':>11}{'max rel':>11}{'mean abs':>11}"
                  f"{'labels':>9}  ok")
        lines = [header, "-" * len(header)]
        for c in self.cases:
            p = c.outputs[PROBABILITIES]
            lines.append(
                f"{c.case:<22}{c.runtime:<16}{c.samples:>8}{p.max_abs_diff:>11.2e}{p.max_rel_diff:>11.2e}"
                f"{p.mean_abs_diff:>11.2e}{c.label_agreement:>9.2%}  {'✓' if c.passed else '✗'}"
            )
        close = all(c.close for c in self.cases)
        for name in self.output_names[:-1]:
            lines.append(f"[{'✓' if close else '✗'}] {name}: max abs diff {self.output(name)['max_abs_diff']:.2e} "
                         f"(atol {self.atol:g}, rtol {self.rtol:g})")
        ties = sum(c.label_ties for c in self.cases)
        labels_ok = all(c.labels_ok for c in self.cases)
        lines.append(f"[{'✓' if labels_ok else '✗'}] label: agreement {self.label_agreement:.2%}"
                     + (f" ({ties} differing labels are ties within tolerance)" if ties else ""))
        return "\n".join(lines)

    def line(self) -> str:
        """One line: how far from Keras, on how many inputs (the table says it per case)."""
        probs = self.output(PROBABILITIES)
        return (f"[{'✓' if self.passed else '✗'}] {self.name}: vs Keras on {self.samples:,} inputs: max abs diff "
                f"{probs['max_abs_diff']:.2e} (atol {self.atol:g}), labels agree {self.label_agreement:.2%}")

    @property
    def failure(self) -> str:
        for c in self.cases:
            if not c.passed:
                return (
                    f"probabilities differ by up to {c.outputs[PROBABILITIES].max_abs_diff:.2e} (atol {self.atol:g}, "
                    f"rtol {self.rtol:g}) and labels agree on {c.label_agreement:.2%} "
                    f"of '{c.case}' ({c.runtime})"
                )
        return ""


class ParityError(DigitsError):
    """An export's check failed; carries the check."""

    exit_code = EXIT_CHECK_FAILED

    def __init__(self, check, where: str):
        self.check = check
        what = "" if check.name == "parity" else f"{check.name}: "
        super().__init__(f"{where}: parity check failed: {what}{check.failure}; nothing exported")


def compare(reference: np.ndarray, candidate: np.ndarray, atol: float) -> OutputDiff:
    reference = reference.astype(np.float64)
    diff = np.abs(candidate.astype(np.float64) - reference)
    meaningful = np.abs(reference) > atol
    rel = diff[meaningful] / np.abs(reference[meaningful])
    return OutputDiff(
        max_abs_diff=float(diff.max(initial=0.0)),
        max_rel_diff=float(rel.max(initial=0.0)),
        mean_abs_diff=float(diff.mean()) if diff.size else 0.0,
    )


def judge(case: str, runtime: str, keras: dict[str, np.ndarray], answers: dict[str, np.ndarray],
          atol: float, rtol: float) -> CaseResult:
    """A runtime's `answers` (output name -> array; LABEL required) against Keras's (output
    name -> array; PROBABILITIES required): each FLOAT_OUTPUTS output both give within
    atol/rtol of Keras's, and every label equal but for ties."""
    keras_probs = keras[PROBABILITIES]
    keras_labels = keras_probs.argmax(axis=1)
    differ = keras_labels != answers[LABEL]
    top_two = np.sort(keras_probs, axis=1)[:, -2:]
    tie = top_two[:, 1] - top_two[:, 0] <= atol + rtol * top_two[:, 1]
    ties = int((differ & tie).sum())
    outputs, close = {}, True
    for name in FLOAT_OUTPUTS:
        if name in answers and name in keras:
            outputs[name] = compare(keras[name], answers[name], atol)
            close = close and bool(np.allclose(answers[name], keras[name], atol=atol, rtol=rtol))
    outputs[LABEL] = compare(keras_labels, answers[LABEL], atol)
    return CaseResult(case, runtime, len(keras_probs), outputs, float(1.0 - differ.mean()), ties, close,
                      passed=close and ties == int(differ.sum()))


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


def check_against_keras(answers: list, run, runtime: str, atol: float, rtol: float,
                        name: str = "parity") -> ParityReport:
    """`run(digits)` -> {output name: array}, judged against Keras's `answers` (keras_answers) on every case."""
    report = ParityReport(atol=atol, rtol=rtol, name=name)
    report.cases = [judge(case, runtime, keras, run(digits), atol, rtol) for case, digits, keras in answers]
    return report


def check_parity(answers: list, onnx_path, atol: float = DEFAULT_ATOL, rtol: float = DEFAULT_RTOL) -> ParityReport:
    """onnxruntime on every case and onnx's reference evaluator on the first real digits, against
    Keras's `answers` (keras_answers): every output the graph gives, by its name."""
    import onnx
    import onnxruntime as ort
    from onnx.reference import ReferenceEvaluator

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    report = check_against_keras(answers, lambda x: dict(zip(names, session.run(names, {INPUT_NAME: x}))),
                                 "onnxruntime", atol, rtol)
    _, real, keras = answers[0]
    evaluator = ReferenceEvaluator(onnx.load(str(onnx_path)))
    reference = dict(zip(names, evaluator.run(names, {INPUT_NAME: real[:REFERENCE_SAMPLES]})))
    first = {name: values[:REFERENCE_SAMPLES] for name, values in keras.items()}
    report.cases.append(judge("real digits", "onnx reference", first, reference, atol, rtol))
    return report
