"""An ONNX digit classifier (batch.classifier.Classifier), with onnxruntime: `digits export` models
(uint8 [batch, 28, 28], all preprocessing in the graph) and the plain float classifiers of other
converters (pixels/255 as float32 in FLOAT_INPUT_SHAPES -> probabilities, or logits we softmax)."""

import os
from pathlib import Path

import numpy as np

from digits.batch.classifier import Classifier
from digits.batch.scores import (
    check_probabilities,
    checked_outputs,
    describe_score,
    distributions,
    in_batches_of,
    probe_digits,
    softmax,
    threshold_from,
)
from digits.core import interrupts
from digits.core.contract import DIGIT_SCORE, IMAGE_SIZE, NUM_CLASSES, PIXELS, PROBABILITIES
from digits.core.errors import ModelError, first_line
from digits.core.files import require_file
from digits.core.memory import limit_words

# onnxruntime's telemetry, read when it is first imported: it writes a device id under
# ~/.cache unasked, and prints a coloured warning when HOME is not writable.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

FLOAT_INPUT_SHAPES = ([PIXELS], [IMAGE_SIZE, IMAGE_SIZE], [IMAGE_SIZE, IMAGE_SIZE, 1], [1, IMAGE_SIZE, IMAGE_SIZE])
FLOAT_OUTPUT_TYPES = ("tensor(float)", "tensor(float16)", "tensor(double)")
WANTED = ("one input, uint8 [batch,28,28] (a `digits export` model) or float [batch,784] / [batch,28,28(,1)], "
          "with a [batch,10] output")


def _describe(node) -> str:
    dims = ",".join(str(d) if isinstance(d, int) else str(d or "?") for d in node.shape)
    return f"{node.name} {node.type} [{dims}]"


class OnnxClassifier(Classifier):
    def __init__(self, path: Path, threads: int = 0, spin: bool = True, probe: bool = True):
        """`threads`: onnxruntime's intra-op threads (0: one per core). `spin`: let idle threads
        spin-wait (off when other processes need the cores). `probe`: run probe() now; without it,
        the caller must before any other call (it decides whether the output is logits)."""
        with interrupts.raising():  # an import, which cannot ask whether to stop
            import onnxruntime as ort

        require_file(path, "model file", ModelError)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        # Fatal messages only: an error onnxruntime logs is raised to us as well, and
        # becomes our one line (its own red line came before it on stderr).
        ort.set_default_logger_severity(4)
        options.log_severity_level = 4
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own types for unreadable models
            if _out_of_memory(str(e)):
                raise ModelError(f"{path}: out of memory loading the model; {limit_words()} is too low for it") from e
            raise ModelError(f"{path}: not a loadable ONNX model ({first_line(e)})") from e
        self.path = path
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1:
            takes = "; ".join(_describe(i) for i in inputs)
            raise ModelError(f"{path}: model takes {len(inputs)} inputs ({takes}); needs {WANTED}")
        self.input = inputs[0]
        fixed = list(self.input.shape[1:])
        self.exported = self.input.type == "tensor(uint8)" and fixed == [IMAGE_SIZE, IMAGE_SIZE]
        if not (self.exported or self.input.type == "tensor(float)" and fixed in FLOAT_INPUT_SHAPES):
            raise ModelError(f"{path}: model takes {_describe(self.input)}; needs {WANTED}")
        self.output = _pick_output(path, outputs)
        # digit_score: an exported model's own output, and the threshold `digits train` fitted for it.
        self.score_output = DIGIT_SCORE if self.exported and any(o.name == DIGIT_SCORE for o in outputs) else None
        metadata = self.session.get_modelmeta().custom_metadata_map
        self.threshold = threshold_from(path, metadata.get("digit_score_threshold")) if self.score_output else None
        self._fetch = [self.output] if self.score_output is None else [self.output, self.score_output]
        # A fixed batch size (some converters write [1, 784]): fed in slices of exactly that size.
        batch = self.input.shape[0] if isinstance(self.input.shape[0], int) and self.input.shape[0] > 0 else None
        self.input_shape = (batch, *fixed)
        # One set of run options for every call: stop() sets its terminate flag, which
        # ends the calls under way (a slow model must not hold up Ctrl-C).
        self._run_options = ort.RunOptions()
        self.threads = threads
        self.logits = False  # until probe() decides
        if probe:
            self.probe()

    def probe(self) -> None:
        """Classifier.probe's; also decides, for the whole model, whether its output is logits: not named
        `probabilities` and not distributions on the probe digits (they then get a softmax)."""
        probe = probe_digits()
        raw = in_batches_of(self.input_shape[0], self._feed(probe), self._run)
        self.logits = self.output != PROBABILITIES and not distributions(raw[:, :NUM_CLASSES])
        self.scored(probe)

    def _feed(self, digits: np.ndarray) -> np.ndarray:
        if self.exported:
            return np.ascontiguousarray(digits, dtype=np.uint8)
        return (digits.astype(np.float32) / np.float32(255.0)).reshape(-1, *self.input_shape[1:])

    def stop(self) -> None:
        """End the calls under way (they raise ModelError) and any made after."""
        self._run_options.terminate = True

    def describe(self) -> str:
        logits = " (logits, softmaxed)" if self.logits else ""
        score = describe_score(self.score_output, self.threshold)
        return f"onnxruntime: {_describe(self.input)} -> {self.output}{logits}{score}"

    def forked(self) -> "OnnxClassifier":
        # A one-thread session has no threads of its own, and no call is under way while the
        # pool forks: nothing a fork could cut in half. A worker then starts in the time of a
        # fork, not of a session (~35 ms for the MLP).
        return self if self.threads == 1 else OnnxClassifier(self.path, threads=1, spin=False)

    def scored(self, digits: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        raw = in_batches_of(self.input_shape[0], self._feed(digits), self._run)
        scores = raw[:, :NUM_CLASSES]
        if self.logits:
            probabilities = softmax(scores)
        else:
            probabilities = check_probabilities(self.path, f"output {self.output!r}", scores)
        return probabilities, raw[:, NUM_CLASSES] if self.score_output else None

    def _run(self, feed: np.ndarray) -> np.ndarray:
        """checked_outputs' array for one call of the session."""
        try:
            outputs = self.session.run(self._fetch, {self.input.name: feed}, self._run_options)
        except Exception as e:  # onnxruntime's own error types
            if _out_of_memory(str(e)):
                raise ModelError(f"{self.path}: out of memory running the model on {len(feed):,} digits; "
                                 f"{limit_words()} is too low (a smaller --batch-size needs less)") from e
            raise ModelError(f"{self.path}: onnxruntime failed on a batch of {len(feed)} digits "
                             f"({first_line(e)})") from e
        return checked_outputs(self.path, outputs[0], outputs[1] if self.score_output else None, len(feed))


def load_classifier(path: Path, threads: int = 0, spin: bool = True, **options):
    """The classifier for `path`: LiteRT's for a .tflite file (imported only then; it has no `spin`),
    else onnxruntime's. `options`: `probe` (both)."""
    if str(path).lower().endswith(".tflite"):
        from digits.batch.litert_model import LiteRtClassifier

        return LiteRtClassifier(path, threads=threads, **options)
    return OnnxClassifier(path, threads=threads, spin=spin, **options)


def _out_of_memory(message: str) -> bool:
    """Whether onnxruntime failed for want of memory (std::bad_alloc, its arena)."""
    return "bad_alloc" in message or "Failed to allocate memory" in message or "bfc_arena" in message


def _pick_output(path, outputs) -> str:
    """The name of the output that holds the class scores: `probabilities` when the model has one;
    else its one [batch, 10] float output. Several candidates and none named so: refused, not guessed."""
    gives = "; ".join(_describe(o) for o in outputs)
    named = [o for o in outputs if o.name == PROBABILITIES]
    candidates = named or [o for o in outputs if len(o.shape) == 2 and o.shape[1] == NUM_CLASSES]
    if not candidates:
        raise ModelError(f"{path}: model gives {gives}; needs {WANTED}")
    if len(candidates) > 1:
        names = ", ".join(o.name for o in candidates)
        raise ModelError(f"{path}: model gives several [batch,10] outputs ({names}) and none is named "
                         f"'{PROBABILITIES}'; cannot tell which holds the class scores")
    output = candidates[0]
    if output.type not in FLOAT_OUTPUT_TYPES:
        raise ModelError(f"{path}: output {_describe(output)}: class scores must be float (float32, float16 or "
                         "double)")
    classes = output.shape[1] if len(output.shape) == 2 else -1
    if isinstance(classes, int) and classes != NUM_CLASSES:  # a name or None: checked on every call
        raise ModelError(f"{path}: output {_describe(output)}; needs [batch,10]")
    return output.name
