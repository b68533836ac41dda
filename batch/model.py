"""An ONNX digit classifier behind one call: uint8 [N, 28, 28] -> float32 [N, 10].

Two kinds of model are taken:
- `digits export` models: input `image` uint8 [batch, 28, 28], output `probabilities`
  (all preprocessing is inside the graph);
- plain float classifiers, as other converters write them: pixels/255 as float32
  [batch, 784], [batch, 28, 28], [batch, 28, 28, 1] or [batch, 1, 28, 28], one
  output with 10 values per digit (probabilities, or logits that we softmax).
"""

from pathlib import Path

import numpy as np

from digits.errors import DigitsError, ModelError
from digits.files import require_file

NUM_CLASSES = 10
FLOAT_INPUT_SHAPES = ([784], [28, 28], [28, 28, 1], [1, 28, 28])


def _describe(node) -> str:
    dims = ",".join(str(d) if isinstance(d, int) else str(d or "?") for d in node.shape)
    return f"{node.name} {node.type} [{dims}]"


class OnnxClassifier:
    def __init__(self, path: Path, threads: int = 0, spin: bool = True):
        """`threads`: onnxruntime's intra-op threads (0: one per core). `spin`: let idle
        threads spin-wait (~10% faster on arrays, measured); turn it off when other
        processes, such as image decoders, need the cores."""
        import onnxruntime as ort

        try:
            require_file(path, "model file")
        except DigitsError as e:
            raise ModelError(str(e)) from e
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.log_severity_level = 3
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own types for unreadable models
            reason = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
            raise ModelError(f"{path}: not a loadable ONNX model ({reason})") from e
        self.path = path
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        wanted = (
            "one input, uint8 [batch,28,28] (a `digits export` model) or float "
            "[batch,784] / [batch,28,28(,1)], with a [batch,10] output"
        )
        if len(inputs) != 1:
            takes = "; ".join(_describe(i) for i in inputs)
            raise ModelError(f"{path}: model takes {len(inputs)} inputs ({takes}); needs {wanted}")
        self.input = inputs[0]
        fixed = list(self.input.shape[1:])
        if self.input.type == "tensor(uint8)" and fixed == [28, 28]:
            self.exported = True
        elif self.input.type == "tensor(float)" and fixed in FLOAT_INPUT_SHAPES:
            self.exported = False
            self.float_shape = tuple(fixed)
        else:
            raise ModelError(f"{path}: model takes {_describe(self.input)}; needs {wanted}")
        names = [o.name for o in outputs]
        if self.exported and "probabilities" in names:
            self.output = "probabilities"
        else:
            tens = [o.name for o in outputs if len(o.shape) == 2 and o.shape[1] == NUM_CLASSES]
            if not tens:
                gives = "; ".join(_describe(o) for o in outputs)
                raise ModelError(f"{path}: model gives {gives}; needs {wanted}")
            self.output = tens[0]
        # A fixed batch size (some converters write [1, 784]): fed in slices of exactly that size.
        self.fixed_batch = self.input.shape[0] if isinstance(self.input.shape[0], int) and self.input.shape[0] > 0 else None
        self._probe()

    def _probe(self) -> None:
        """Run the model once on two blank digits: a model that loads but cannot run
        (an operator that fails, an output of another shape) is refused here, at
        load, before any row is written."""
        probabilities = self.predict(np.zeros((2, 28, 28), np.uint8))
        if probabilities.shape != (2, NUM_CLASSES):
            raise ModelError(f"{self.path}: model gives {list(probabilities.shape)} for 2 digits; needs [2,10]")

    def labels(self, digits: np.ndarray) -> np.ndarray:
        """Predicted labels, int64 [N], for uint8 [N, 28, 28] digits."""
        return self.predict(digits).argmax(axis=1)

    def predict(self, digits: np.ndarray) -> np.ndarray:
        """Class probabilities, float32 [N, 10], for uint8 [N, 28, 28] digits.

        ModelError when onnxruntime fails on them (the model's reason included)."""
        if self.exported:
            feed = np.ascontiguousarray(digits, dtype=np.uint8)
            return self._run(feed)
        feed = (digits.astype(np.float32) / np.float32(255.0)).reshape(-1, *self.float_shape)
        return as_probabilities(self._run(feed))

    def _run(self, feed: np.ndarray) -> np.ndarray:
        n = self.fixed_batch
        if n is not None and len(feed) != n:
            pad = -len(feed) % n
            if pad:
                feed = np.concatenate([feed, np.zeros((pad, *feed.shape[1:]), feed.dtype)])
            parts = [self._run_session(feed[i : i + n]) for i in range(0, len(feed), n)]
            return np.concatenate(parts)[: len(feed) - pad]
        return self._run_session(feed)

    def _run_session(self, feed: np.ndarray) -> np.ndarray:
        try:
            return self.session.run([self.output], {self.input.name: feed})[0]
        except Exception as e:  # onnxruntime's own error types
            reason = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
            raise ModelError(f"{self.path}: onnxruntime failed on a batch of {len(feed)} digits ({reason})") from e


def load_classifier(path: Path, threads: int = 0, spin: bool = True):
    """The classifier for `path`: LiteRT's for a .tflite file (imported only then), else onnxruntime's."""
    if str(path).lower().endswith(".tflite"):
        from batch.litert_model import LiteRtClassifier

        return LiteRtClassifier(path, threads=threads, spin=spin)
    return OnnxClassifier(path, threads=threads, spin=spin)


def as_probabilities(scores: np.ndarray) -> np.ndarray:
    """Rows that are not already probability distributions (logits) get a softmax."""
    scores = scores.astype(np.float32, copy=False)
    is_distribution = (scores >= 0).all(axis=1) & (np.abs(scores.sum(axis=1) - 1) < 1e-3)
    if is_distribution.all():
        return scores
    shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
    softmax = shifted / shifted.sum(axis=1, keepdims=True)
    return np.where(is_distribution[:, None], scores, softmax)
