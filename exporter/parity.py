"""Does the ONNX model give Keras's answers? Numbers first, then a verdict.

Compared the way Hugging Face Optimum and NVIDIA Polygraphy do: per output,
max absolute, max relative and mean absolute difference. The check passes when
np.allclose(onnx, keras, atol, rtol) holds for the probabilities and the labels
agree on every input, except where Keras's own top two probabilities are within
that same tolerance of each other: there the label is a tie that any
floating-point difference may break, and another CPU may break it otherwise. Inputs:
real digits plus the edges a deployment meets (blank, saturated, noise, a batch of 1,
a batch of 4,096). onnx's own reference evaluator gives a second, independent opinion
on part of the real digits.
"""

from dataclasses import asdict, dataclass, field

import numpy as np

from core.contract import IMAGE_SIZE, INPUT_NAME, LABEL, OUTPUT_NAMES, PROBABILITIES
from core.errors import EXIT_CHECK_FAILED, DigitsError

DEFAULT_ATOL = 1e-5
DEFAULT_RTOL = 1e-5
REFERENCE_SAMPLES = 300  # the pure-numpy reference evaluator is slow; a few hundred suffice
EDGE_SEED = 0


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
    probabilities: OutputDiff
    label: OutputDiff
    label_agreement: float
    label_ties: int  # labels that differ where Keras's top two are within tolerance
    close: bool  # np.allclose on the probabilities
    passed: bool  # close, and every label agrees or is such a tie

    @property
    def labels_ok(self) -> bool:
        return round((1.0 - self.label_agreement) * self.samples) == self.label_ties


@dataclass
class ParityReport:
    atol: float
    rtol: float
    cases: list[CaseResult] = field(default_factory=list)
    checks: dict = field(default_factory=dict)  # variant checks (int8, ort), each with "passed"
    context: dict = field(default_factory=dict)  # data_source, opset: written to the report as is

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.cases) and all(v["passed"] for v in self.checks.values())

    @property
    def samples(self) -> int:
        return sum(c.samples for c in self.cases)

    def output(self, name: str) -> dict:
        diffs = [getattr(c, name) for c in self.cases]
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
            "outputs": {PROBABILITIES: self.output("probabilities"), LABEL: self.output("label")},
            "label_agreement": self.label_agreement,
            "cases": [asdict(c) for c in self.cases],
            **self.checks,
            **self.context,
        }

    def table(self) -> str:
        header = (f"{'case':<22}{'runtime':<16}{'samples':>8}{'max abs':>11}{'max rel':>11}{'mean abs':>11}"
                  f"{'labels':>9}  ok")
        lines = [header, "-" * len(header)]
        for c in self.cases:
            p = c.probabilities
            lines.append(
                f"{c.case:<22}{c.runtime:<16}{c.samples:>8}{p.max_abs_diff:>11.2e}{p.max_rel_diff:>11.2e}"
                f"{p.mean_abs_diff:>11.2e}{c.label_agreement:>9.2%}  {'✓' if c.passed else '✗'}"
            )
        probs = self.output("probabilities")
        close = all(c.close for c in self.cases)
        lines.append(
            f"[{'✓' if close else '✗'}] probabilities: max abs diff {probs['max_abs_diff']:.2e} "
            f"(atol {self.atol:g}, rtol {self.rtol:g})"
        )
        ties = sum(c.label_ties for c in self.cases)
        labels_ok = all(c.labels_ok for c in self.cases)
        lines.append(f"[{'✓' if labels_ok else '✗'}] label: agreement {self.label_agreement:.2%}"
                     + (f" ({ties} differing labels are ties within tolerance)" if ties else ""))
        return "\n".join(lines)

    def first_failure(self) -> str:
        for c in self.cases:
            if not c.passed:
                return (
                    f"probabilities differ by up to {c.probabilities.max_abs_diff:.2e} (atol {self.atol:g}, "
                    f"rtol {self.rtol:g}) and labels agree on {c.label_agreement:.2%} "
                    f"of '{c.case}' ({c.runtime})"
                )
        for name, check in self.checks.items():
            if not check["passed"]:
                return f"{name}: {check['failure']}"
        return "no failure"


class ParityError(DigitsError):
    """The exported model does not give Keras's answers; carries the report."""

    exit_code = EXIT_CHECK_FAILED

    def __init__(self, report: ParityReport, where: str):
        self.report = report
        super().__init__(f"{where}: parity check failed: {report.first_failure()}; nothing exported")


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


def judge(case: str, runtime: str, keras_probs: np.ndarray, onnx_probs: np.ndarray,
          onnx_labels: np.ndarray, atol: float, rtol: float) -> CaseResult:
    keras_labels = keras_probs.argmax(axis=1)
    differ = keras_labels != onnx_labels
    agreement = float(1.0 - differ.mean())
    top_two = np.sort(keras_probs, axis=1)[:, -2:]
    tie = top_two[:, 1] - top_two[:, 0] <= atol + rtol * top_two[:, 1]
    ties = int((differ & tie).sum())
    close = bool(np.allclose(onnx_probs, keras_probs, atol=atol, rtol=rtol))
    return CaseResult(
        case=case,
        runtime=runtime,
        samples=len(keras_probs),
        probabilities=compare(keras_probs, onnx_probs, atol),
        label=compare(keras_labels, onnx_labels, atol),
        label_agreement=agreement,
        label_ties=ties,
        close=close,
        passed=close and ties == int(differ.sum()),
    )


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


def check_parity(keras_model, onnx_path, real: np.ndarray, atol: float = DEFAULT_ATOL,
                 rtol: float = DEFAULT_RTOL) -> ParityReport:
    """Run Keras, onnxruntime and onnx's reference evaluator; return the full report."""
    import onnx
    import onnxruntime as ort
    from onnx.reference import ReferenceEvaluator

    from trainer.model import predict_keras

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    report = ParityReport(atol=atol, rtol=rtol)
    for case, digits in parity_inputs(real):
        keras_probs = predict_keras(keras_model, digits, batch_size=len(digits))
        probs, labels = session.run(list(OUTPUT_NAMES), {INPUT_NAME: digits})
        report.cases.append(judge(case, "onnxruntime", keras_probs, probs, labels, atol, rtol))

    subset = real[:REFERENCE_SAMPLES]
    evaluator = ReferenceEvaluator(onnx.load(str(onnx_path)))
    probs, labels = evaluator.run(list(OUTPUT_NAMES), {INPUT_NAME: subset})
    keras_probs = predict_keras(keras_model, subset, batch_size=len(subset))
    report.cases.append(judge("real digits", "onnx reference", keras_probs, probs, labels, atol, rtol))
    return report
