"""A LiteRT (.tflite) digit classifier behind OnnxClassifier's call: uint8 [N, 28, 28] -> float32 [N, 10].

It runs the files `digits export --tflite` writes (model.tflite, model.int8.tflite,
model.micro.tflite) with `ai-edge-litert`'s interpreter, the `[litert]` extra; no
TensorFlow. Those files take uint8 [batch, 28, 28] (the micro file a batch of 1)
and give [batch, 10] probabilities, as float32 or as int8/uint8 with a scale and
zero point, which are dequantized here. Imported only for a model path ending in
.tflite, so the ONNX path never loads LiteRT.
"""

import contextlib
import threading
from pathlib import Path

import numpy as np

from batch.classifier import Classifier
from batch.scores import check_probabilities, in_batches_of, probe_digits
from core.contract import NUM_CLASSES
from core.errors import ModelError, first_line, require_extra
from core.files import require_file, stderr_muted

_INT8_SOFTMAX_STEP = 1 / 256
WANTED = "one input, uint8 [batch,28,28], and one [batch,10] output (a `digits export --tflite` model)"


def require_litert(what: str, modules: tuple[str, ...] = ("ai_edge_litert",)) -> None:
    """core.errors.require_extra for the [litert] extra."""
    require_extra("litert", what, modules)


_announced = False


@contextlib.contextmanager
def _quiet_once():
    """LiteRT prints 'INFO: Created TensorFlow Lite XNNPACK delegate for CPU.' on fd 2 at
    the process's first interpreter, among classify's summary lines: hidden there."""
    global _announced
    if _announced:
        yield
        return
    with stderr_muted():
        yield
    _announced = True


def _new_interpreter(content: bytes, threads: int | None):
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter(model_content=content, num_threads=threads)


class LiteRtClassifier(Classifier):
    def __init__(self, path: Path, threads: int = 0, spin: bool = True, probe: bool = True):
        """`threads`: LiteRT's threads per call (0: its default). `spin` is taken for
        OnnxClassifier's signature and has no LiteRT counterpart. `probe`: run probe() now."""
        del spin
        require_litert(f"{path}: a .tflite model")
        require_file(path, "model file", ModelError)
        self.path = path
        self.threads = threads
        try:
            self.content = Path(path).read_bytes()
        except OSError as e:
            raise ModelError(f"{path}: cannot read the model file ({e.strerror})") from e
        # One interpreter per thread: batch/run.py calls predict from several threads
        # at once, and a LiteRT interpreter holds its tensors between calls.
        self._local = threading.local()
        interpreter = self._interpreter()
        inputs, outputs = interpreter.get_input_details(), interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ModelError(f"{path}: model has {len(inputs)} inputs and {len(outputs)} outputs; needs {WANTED}")
        self.input, self.output = inputs[0], outputs[0]
        shape = [int(d) for d in self.input["shape_signature"]]
        if self.input["dtype"] != np.uint8 or shape[1:] != [28, 28]:
            raise ModelError(f"{path}: model takes {np.dtype(self.input['dtype']).name} {shape}; needs {WANTED}")
        out_shape = [int(d) for d in self.output["shape_signature"]]
        if len(out_shape) != 2 or out_shape[1] != NUM_CLASSES:
            raise ModelError(f"{path}: model gives {np.dtype(self.output['dtype']).name} {out_shape}; needs {WANTED}")
        # A fixed batch (the micro file's 1): fed in slices of exactly that size.
        self.input_shape = (shape[0] if shape[0] > 0 else None, *shape[1:])
        scale, zero_point = self.output["quantization"]
        self.output_scale = np.float32(scale) if scale else None
        self.output_zero_point = np.float32(zero_point)
        if probe:
            self.probe()

    def _interpreter(self):
        interpreter = getattr(self._local, "interpreter", None)
        if interpreter is None:
            try:
                with _quiet_once():
                    interpreter = _new_interpreter(self.content, self.threads or None)
                    interpreter.allocate_tensors()
            except Exception as e:  # LiteRT raises ValueError/RuntimeError for a bad file
                raise ModelError(f"{self.path}: not a loadable LiteRT model ({first_line(e)})") from e
            self._local.interpreter = interpreter
            self._local.batch = None
        return interpreter

    def probe(self) -> None:
        self.predict(probe_digits())

    def stop(self) -> None:
        pass  # LiteRT cannot end a call under way: the run stops once the calls in hand return

    def describe(self) -> str:
        shape = ",".join(str(d or "batch") for d in self.input_shape)
        return f"LiteRT: uint8 [{shape}] -> {np.dtype(self.output['dtype']).name} [batch,{NUM_CLASSES}]"

    def forked(self) -> "LiteRtClassifier":
        return LiteRtClassifier(self.path, threads=1)  # interpreters are per thread, and LiteRT's own are not forked

    def predict(self, digits: np.ndarray) -> np.ndarray:
        """Class probabilities, float32 [N, 10], for uint8 [N, 28, 28] digits.

        ModelError when LiteRT fails on them (its reason included), or when the output
        breaks the contract (batch.scores.check_probabilities, as for an ONNX model; a
        quantized output may stray by its scale)."""
        feed = np.ascontiguousarray(digits, dtype=np.uint8)
        if len(feed) == 0:
            return np.zeros((0, NUM_CLASSES), np.float32)
        n = self.input_shape[0]
        run = self._run if n is None else lambda part: self._checked(self._run(part), n)
        return self._checked(in_batches_of(n, feed, run), len(digits))

    def _checked(self, scores: np.ndarray, n: int) -> np.ndarray:
        # An int8 file's softmax is quantized in steps of 1/256 even when its output tensor is
        # float (dequantized inside): measured sums of 255/256 on `export --tflite --int8`.
        step = max(float(self.output_scale or 0.0), _INT8_SOFTMAX_STEP)
        return check_probabilities(self.path, "its output", scores, n, step)

    def _run(self, feed: np.ndarray) -> np.ndarray:
        interpreter = self._interpreter()
        try:
            if self.input_shape[0] is None and self._local.batch != len(feed):
                interpreter.resize_tensor_input(self.input["index"], [len(feed), 28, 28])
                interpreter.allocate_tensors()
                self._local.batch = len(feed)
            interpreter.set_tensor(self.input["index"], feed)
            interpreter.invoke()
            scores = interpreter.get_tensor(self.output["index"])
        except Exception as e:  # LiteRT's own errors
            raise ModelError(f"{self.path}: LiteRT failed on a batch of {len(feed)} digits ({first_line(e)})") from e
        if self.output_scale is not None:
            return (scores.astype(np.float32) - self.output_zero_point) * self.output_scale
        return scores.astype(np.float32, copy=False)
