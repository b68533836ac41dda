"""An ONNX digit classifier behind one call: uint8 [N, 28, 28] -> float32 [N, 10].

Two kinds of model are taken:
- `digits export` models: input `image` uint8 [batch, 28, 28], output `probabilities`
  (all preprocessing is inside the graph);
- plain float classifiers, as other converters write them: pixels/255 as float32
  [batch, 784], [batch, 28, 28], [batch, 28, 28, 1] or [batch, 1, 28, 28], one
  output with 10 values per digit (probabilities, or logits that we softmax).
"""

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from core.contract import IMAGE_SIZE, NUM_CLASSES, PIXELS, PROBABILITIES
from core.errors import DigitsError, ModelError
from core.files import require_file

FLOAT_INPUT_SHAPES = ([PIXELS], [IMAGE_SIZE, IMAGE_SIZE], [IMAGE_SIZE, IMAGE_SIZE, 1], [1, IMAGE_SIZE, IMAGE_SIZE])


def _describe(node) -> str:
    dims = ",".join(str(d) if isinstance(d, int) else str(d or "?") for d in node.shape)
    return f"{node.name} {node.type} [{dims}]"


class OnnxClassifier:
    def __init__(self, path: Path, threads: int = 0, spin: bool = True, probe: bool = True,
                 interruptible: bool = True):
        """`threads`: onnxruntime's intra-op threads (0: one per core). `spin`: let idle
        threads spin-wait; turn it off when other processes need the cores. `probe`: run
        the model once on two blank digits (a worker loading a model its parent probed skips it).
        `interruptible`: calls from the main thread run beside it, so that Ctrl-C is heard
        while the model runs (a worker process, which leaves signals to its parent, says no)."""
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
        if self.input.type == "tensor(uint8)" and fixed == [IMAGE_SIZE, IMAGE_SIZE]:
            self.exported = True
        elif self.input.type == "tensor(float)" and fixed in FLOAT_INPUT_SHAPES:
            self.exported = False
            self.float_shape = tuple(fixed)
        else:
            raise ModelError(f"{path}: model takes {_describe(self.input)}; needs {wanted}")
        names = [o.name for o in outputs]
        if self.exported and PROBABILITIES in names:
            self.output = PROBABILITIES
        else:
            tens = [o.name for o in outputs if len(o.shape) == 2 and o.shape[1] == NUM_CLASSES]
            if not tens:
                gives = "; ".join(_describe(o) for o in outputs)
                raise ModelError(f"{path}: model gives {gives}; needs {wanted}")
            self.output = tens[0]
        # A fixed batch size (some converters write [1, 784]): fed in slices of exactly that size.
        self.fixed_batch = self.input.shape[0] if isinstance(self.input.shape[0], int) and self.input.shape[0] > 0 else None
        # One set of run options for every call: stop() sets its terminate flag, which
        # ends the calls under way (a slow model must not hold up Ctrl-C).
        self._run_options = ort.RunOptions()
        self._beside: ThreadPoolExecutor | None = None  # where calls from the main thread run
        self.interruptible = interruptible
        self.threads = threads
        if probe:
            self._probe()

    def _probe(self) -> None:
        """Run the model once on two blank digits: a model that loads but cannot run
        (an operator that fails, an output of another shape) is refused here, at
        load, before any row is written."""
        probabilities = self.predict(np.zeros((2, IMAGE_SIZE, IMAGE_SIZE), np.uint8))
        if probabilities.shape != (2, NUM_CLASSES):
            raise ModelError(f"{self.path}: model gives {list(probabilities.shape)} for 2 digits; needs [2,10]")

    def stop(self) -> None:
        """End the calls under way (they raise ModelError) and any made after."""
        self._run_options.terminate = True

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
        if self.interruptible and threading.current_thread() is threading.main_thread():
            return self._run_beside(feed)
        try:
            return self.session.run([self.output], {self.input.name: feed}, self._run_options)[0]
        except Exception as e:  # onnxruntime's own error types
            reason = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
            raise ModelError(f"{self.path}: onnxruntime failed on a batch of {len(feed)} digits ({reason})") from e


    def _run_beside(self, feed: np.ndarray) -> np.ndarray:
        """The call on a thread of its own, waited for in short steps: onnxruntime holds the
        thread that calls it until the model is done, and Python runs a signal's handler
        only on the main thread, between steps. When the handler raises (the command's
        Ctrl-C), the call is ended with the terminate flag rather than waited for."""
        if self._beside is None:
            self._beside = ThreadPoolExecutor(1, thread_name_prefix="model")
        future = self._beside.submit(self._run_session, feed)
        try:
            while True:
                try:
                    return future.result(timeout=0.1)
                except TimeoutError:
                    continue
        except BaseException:
            self.stop()
            raise


def load_classifier(path: Path, threads: int = 0, spin: bool = True, **options):
    """The classifier for `path`: LiteRT's for a .tflite file (imported only then), else
    onnxruntime's. `options`: OnnxClassifier's probe and interruptible."""
    if str(path).lower().endswith(".tflite"):
        from batch.litert_model import LiteRtClassifier

        return LiteRtClassifier(path, threads=threads, spin=spin, **options)
    return OnnxClassifier(path, threads=threads, spin=spin, **options)


def as_probabilities(scores: np.ndarray) -> np.ndarray:
    """Rows that are not already probability distributions (logits) get a softmax."""
    scores = scores.astype(np.float32, copy=False)
    is_distribution = (scores >= 0).all(axis=1) & (np.abs(scores.sum(axis=1) - 1) < 1e-3)
    if is_distribution.all():
        return scores
    shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
    softmax = shifted / shifted.sum(axis=1, keepdims=True)
    return np.where(is_distribution[:, None], scores, softmax)
