"""A LiteRT (.tflite) digit classifier (batch.classifier.Classifier) for `digits export --tflite` files, with
ai-edge-litert's interpreter (the [litert] extra; no TensorFlow), imported only for a .tflite model path.
LiteRT cannot end a call under way: a run stops once the calls in hand return."""

import contextlib
import json
import threading
from pathlib import Path

import numpy as np

from digits.batch.classifier import Classifier
from digits.batch.scores import (
    check_probabilities,
    checked_outputs,
    describe_score,
    in_batches_of,
    threshold_from,
)
from digits.core.contract import DIGIT_SCORE, NUM_CLASSES, PROBABILITIES
from digits.core.errors import ModelError, first_line, require_extra
from digits.core.files import require_file, stderr_muted

_INT8_SOFTMAX_STEP = 1 / 256
WANTED = ("one input, uint8 [batch,28,28], and a [batch,10] output, with or without a [batch] digit_score "
          "(a `digits export --tflite` model)")
PROVENANCE = "digits_export"  # the metadata entry exporter/litert_file.py writes: the export's metadata as JSON


_announced = False  # LiteRT's XNNPACK line, at the process's first interpreter, was hidden


class LiteRtClassifier(Classifier):
    def __init__(self, path: Path, threads: int = 0, probe: bool = True):
        """`threads`: LiteRT's threads per call (0: its default). `probe`: run probe() now."""
        require_extra("litert", f"{path}: a .tflite model", ("ai_edge_litert",))
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
        if len(inputs) != 1:
            raise ModelError(f"{path}: model has {len(inputs)} inputs; needs {WANTED}")
        self.input = inputs[0]
        self.output, self.score = _pick_outputs(path, outputs)  # the tensors' details
        self.score_output = None if self.score is None else self.score["name"]  # as OnnxClassifier's: a name or None
        shape = [int(d) for d in self.input["shape_signature"]]
        if self.input["dtype"] != np.uint8 or shape[1:] != [28, 28]:
            raise ModelError(f"{path}: model takes {np.dtype(self.input['dtype']).name} {shape}; needs {WANTED}")
        # A fixed batch (the micro file's 1): fed in slices of exactly that size.
        self.input_shape = (shape[0] if shape[0] > 0 else None, *shape[1:])
        scale, _ = self.output["quantization"]
        self.output_scale = np.float32(scale) if scale else None
        text = provenance(self.content).get("digit_score_threshold")
        self.threshold = threshold_from(path, text) if self.score_output else None
        if probe:
            self.probe()

    def _interpreter(self):
        interpreter = getattr(self._local, "interpreter", None)
        if interpreter is None:
            from ai_edge_litert.interpreter import Interpreter

            global _announced
            try:
                # LiteRT prints 'INFO: Created TensorFlow Lite XNNPACK delegate for CPU.' on fd 2 at the
                # process's first interpreter, among classify's summary lines: hidden there.
                with contextlib.nullcontext() if _announced else stderr_muted():
                    interpreter = Interpreter(model_content=self.content, num_threads=self.threads or None)
                    interpreter.allocate_tensors()
                _announced = True
            except Exception as e:  # LiteRT raises ValueError/RuntimeError for a bad file
                raise ModelError(f"{self.path}: not a loadable LiteRT model ({first_line(e)})") from e
            self._local.interpreter = interpreter
            self._local.batch = None
        return interpreter

    def describe(self) -> str:
        shape = ",".join(str(d or "batch") for d in self.input_shape)
        score = describe_score(None if self.score_output is None else DIGIT_SCORE, self.threshold)
        return f"LiteRT: uint8 [{shape}] -> {np.dtype(self.output['dtype']).name} [batch,{NUM_CLASSES}]{score}"

    def forked(self) -> "LiteRtClassifier":
        return LiteRtClassifier(self.path, threads=1)  # interpreters are per thread, and LiteRT's own are not forked

    def scored(self, digits: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        feed = np.ascontiguousarray(digits, dtype=np.uint8)
        empty = np.zeros((0, NUM_CLASSES + 1), np.float32)  # no call: LiteRT cannot take a batch of 0
        raw = in_batches_of(self.input_shape[0], feed, self._run) if len(feed) else empty
        # A quantized output may stray by its scale; an int8 file's softmax is quantized in steps of 1/256
        # even when its output tensor is float (dequantized inside): sums of 255/256 on `export --tflite --int8`.
        step = max(float(self.output_scale or 0.0), _INT8_SOFTMAX_STEP)
        probabilities = check_probabilities(self.path, "its output", raw[:, :NUM_CLASSES], step)
        return probabilities, None if self.score_output is None else raw[:, NUM_CLASSES]

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
            digit_score = None if self.score_output is None else interpreter.get_tensor(self.score["index"])
        except Exception as e:  # LiteRT's own errors
            raise ModelError(f"{self.path}: LiteRT failed on a batch of {len(feed)} digits ({first_line(e)})") from e
        return checked_outputs(self.path, _dequantized(scores, self.output),
                               None if digit_score is None else _dequantized(digit_score, self.score), len(feed))


def _dequantized(values: np.ndarray, details: dict) -> np.ndarray:
    """float32 values of an output tensor: (value - zero point) * scale where it is quantized."""
    scale, zero_point = details["quantization"]
    if scale:
        return (values.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)
    return values.astype(np.float32, copy=False)


def _pick_outputs(path, outputs: list[dict]) -> tuple[dict, dict | None]:
    """(the probabilities' output, the digit_score output or None): by name (`digits export` names
    them), else the one [batch, 10] output and a [batch] one. ModelError for any other set."""
    def shape(o):
        return [int(d) for d in o["shape_signature"]]

    probabilities = ([o for o in outputs if o["name"] == PROBABILITIES]
                     or [o for o in outputs if len(shape(o)) == 2 and shape(o)[1] == NUM_CLASSES])
    scores = [o for o in outputs if o["name"] == DIGIT_SCORE] or [o for o in outputs if len(shape(o)) == 1]
    if (len(probabilities) != 1 or len(scores) > 1 or len(outputs) != len(probabilities) + len(scores)
            or len(shape(probabilities[0])) != 2 or shape(probabilities[0])[1] != NUM_CLASSES
            or (scores and len(shape(scores[0])) != 1)):
        gives = "; ".join(f"{o['name']} {np.dtype(o['dtype']).name} {shape(o)}" for o in outputs)
        raise ModelError(f"{path}: model gives {gives}; needs {WANTED}")
    return probabilities[0], (scores[0] if scores else None)


def provenance(content: bytes) -> dict:
    """The export's metadata a .tflite file carries (its `digits_export` entry), {} when it has none."""
    from ai_edge_litert import schema_py_generated as schema

    with contextlib.suppress(ValueError, UnicodeDecodeError, AttributeError):  # a file from elsewhere: none to read
        model = schema.Model.GetRootAs(content, 0)
        for i in range(model.MetadataLength()):
            entry = model.Metadata(i)
            if entry.Name().decode() == PROVENANCE:
                return json.loads(model.Buffers(entry.Buffer()).DataAsNumpy().tobytes())
    return {}


