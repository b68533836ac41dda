"""The TFLite Micro variant: the file run in TFLite Micro's own interpreter (tflite-micro wraps
the C++ one a board runs, every kernel registered: what it refuses a board refuses, and the op it
lacks is named from its own message), and its C array (docs/edge.md).
"""

import os
import re
import sys
import tempfile
from pathlib import Path

import numpy as np

from digits.core.contract import DIGIT_SCORE, PROBABILITIES
from digits.core.errors import ModelError
from digits.exporter.litert_file import op_names
from digits.exporter.parity import Check
from digits.exporter.quantize import score_check

MIN_LABEL_AGREEMENT = 0.995  # TFLite Micro vs LiteRT on the int8 file, labels
ARENA_ALIGNMENT = 16
ARRAY_NAME = "g_digits_model"


def _captured_fd2(action):
    """(action's result or exception, what C++ code wrote on fd 2 meanwhile)."""
    sys.stderr.flush()
    with tempfile.TemporaryFile() as capture:
        saved = os.dup(2)
        os.dup2(capture.fileno(), 2)
        try:
            result, error = action(), None
        except Exception as e:  # the interpreter raises RuntimeError; kept to report after restoring fd 2
            result, error = None, e
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        capture.seek(0)
        return result, error, capture.read().decode(errors="replace")


def micro_interpreter(content: bytes, arena: int, where: str = "model"):
    """TFLite Micro's interpreter on `content`; ModelError naming the op it has no kernel for."""
    from tflite_micro import runtime

    interpreter, error, log = _captured_fd2(lambda: runtime.Interpreter.from_bytes(content, arena_size=arena))
    if error is None:
        return interpreter
    missing = re.search(r"Didn't find op for builtin opcode '(\w+)'", log) or re.search(
        r"Failed to get registration from op code (\w+)", log)
    if missing:
        raise ModelError(
            f"{where}: TFLite Micro has no kernel for the model's {missing.group(1)} op; "
            f"--micro takes models whose ops TFLite Micro runs"
        ) from error
    first = (log.strip().splitlines() or [str(error)])[0]
    raise ModelError(f"{where}: TFLite Micro cannot load the micro model ({first[:200]})") from error


def measure_arena(content: bytes, digit: np.ndarray) -> int:
    """Bytes of tensor arena the model needs, rounded up to 16: recorded by TFLite Micro's
    allocator in one inference, then proven by an inference in an arena of that size."""
    interpreter = micro_interpreter(content, max(len(content) * 10, 1 << 20))
    interpreter.set_input(digit[None], 0)
    interpreter.invoke()
    _, _, log = _captured_fd2(interpreter.print_allocations)
    total = re.search(r"Arena allocation total (\d+) bytes", log)
    if not total:
        raise RuntimeError(f"TFLite Micro's allocator did not report the arena size: {log[:300]!r}")
    arena = -(-int(total.group(1)) // ARENA_ALIGNMENT) * ARENA_ALIGNMENT
    run_micro(content, digit[None], arena)  # the proof
    return arena


def micro_outputs(interpreter) -> dict[str, dict]:
    """{"probabilities": ..., "digit_score": ...}: each output's index (litert_file.finish puts the
    probabilities first: TFLite Micro keeps no tensor names), shape, and int8 (scale, zero point)."""
    found = {}
    for index, name in enumerate((PROBABILITIES, DIGIT_SCORE)):
        details = interpreter.get_output_details(index)
        quantization = details["quantization_parameters"]
        found[name] = {"index": index, "shape": [int(d) for d in details["shape"]],
                       "scale": float(quantization["scales"][0]), "zero_point": int(quantization["zero_points"][0])}
    return found


def run_micro(content: bytes, digits: np.ndarray, arena: int) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities float32 [N, 10], digit_score float32 [N]), one TFLite Micro inference per
    digit (uint8 [N, 28, 28]), dequantized."""
    interpreter = micro_interpreter(content, arena)
    outputs = micro_outputs(interpreter)
    rows = {name: [] for name in outputs}
    for digit in np.ascontiguousarray(digits, dtype=np.uint8):
        interpreter.set_input(digit[None], 0)
        interpreter.invoke()
        for name, out in outputs.items():
            rows[name].append(interpreter.get_output(out["index"])[0])
    values = {name: (np.asarray(rows[name], np.float32) - np.float32(out["zero_point"])) * np.float32(out["scale"])
              for name, out in outputs.items()}
    return values[PROBABILITIES], values[DIGIT_SCORE]


def check_micro(micro_path: Path, int8_path: Path, digits: np.ndarray, arena: int) -> Check:
    """TFLite Micro on the micro file against LiteRT on model.int8.tflite (labels at least 99.5%
    equal; export gives it at least 1,000 digits), and against LiteRT on the micro file itself."""
    from digits.batch.litert_model import LiteRtClassifier

    content = Path(micro_path).read_bytes()
    micro, micro_score = run_micro(content, digits, arena)
    int8, int8_score = LiteRtClassifier(int8_path).scored(digits)
    same_file = LiteRtClassifier(micro_path).predict(digits)
    n = {
        "samples": int(len(digits)),
        "label_agreement": float((micro.argmax(1) == int8.argmax(1)).mean()),
        "litert_label_agreement": float((micro.argmax(1) == same_file.argmax(1)).mean()),
        "litert_max_abs_diff": float(np.abs(micro - same_file).max(initial=0.0)),
        "arena_bytes": arena,
        "ops": op_names(content),
        "bytes": len(content),
    }
    failures = [] if n["label_agreement"] >= MIN_LABEL_AGREEMENT else [
        f"TFLite Micro's labels agree with LiteRT's on model.int8.tflite for "
        f"{n['label_agreement']:.2%} < {MIN_LABEL_AGREEMENT:.1%} of {len(digits):,} digits"]
    failures += score_check(n, micro_score, int8_score, "TFLite Micro's", "LiteRT's on model.int8.tflite")
    return Check("micro", n, failures, f"TFLite Micro vs LiteRT's int8 labels agree {n['label_agreement']:.2%} on "
                 f"{len(digits):,} digits; arena {arena:,} bytes; ops {', '.join(n['ops'])}")


# MicroMutableOpResolver's method for an op is its name in CamelCase (CONV_2D: AddConv2D),
# but for these (checked against TFLite Micro's micro_mutable_op_resolver.h, 2026-11).
_ADD_CALLS = {
    "BATCH_MATMUL": "AddBatchMatMul",
    "CUMSUM": "AddCumSum",
    "PADV2": "AddPadV2",
    "UNIDIRECTIONAL_SEQUENCE_LSTM": "AddUnidirectionalSequenceLSTM",
}


def _add_call(op: str) -> str:
    return _ADD_CALLS.get(op) or "Add" + "".join(p if p[0].isdigit() else p.capitalize() for p in op.split("_"))


def c_source(content: bytes, header_name: str, arena: int, threshold: str | None = None) -> tuple[str, str]:
    """(model.micro.cc, model.micro.h): the file as a 16-byte-aligned C array, the `arena` size
    TFLite Micro measured, the ops a MicroMutableOpResolver needs, and each output's index and
    (scale, zero point) (micro_outputs), with the digit_score threshold (as the metadata holds it)
    where the model has one."""
    # Long by design: most of it is the two files' text, which reads best as it will be written.
    guard = re.sub(r"\W", "_", header_name).upper() + "_"
    ops, outputs = op_names(content), micro_outputs(micro_interpreter(content, arena))
    adds = "\n".join(f"  if ((status = resolver.{_add_call(op)}()) != ok) return status;" for op in ops)
    probabilities, score = outputs[PROBABILITIES], outputs[DIGIT_SCORE]
    threshold_lines = "" if threshold is None else (
        "\n// Not a digit when score < kDigitsScoreThreshold (fitted by `digits train`: keeps 99% of its "
        f"validation digits).\nconstexpr float kDigitsScoreThreshold = {float(threshold)!r}f;")
    header = f"""// Written by `digits export --micro`: the digit classifier for TensorFlow Lite Micro.
// Input: uint8 [1, 28, 28], one MNIST-style digit, white (255) ink on black (0), row by row.
// Output {probabilities["index"]}, probabilities: int8 {probabilities["shape"]};
// probability of class d = (output[d] - kDigitsOutputZeroPoint) * kDigitsOutputScale.
#ifndef {guard}
#define {guard}

#include <cstddef>

extern const unsigned char {ARRAY_NAME}[];
extern const unsigned int {ARRAY_NAME}_len;

// Tensor arena TFLite Micro's RecordingMicroAllocator measured for this model with the reference
// kernels on a 64-bit host, rounded up to 16 bytes. Optimized kernels (CMSIS-NN, ESP-NN) may need
// scratch buffers on top: leave headroom, or measure on the board with a RecordingMicroAllocator.
constexpr size_t kDigitsTensorArenaSize = {arena};

constexpr int kDigitsProbabilitiesOutput = {probabilities["index"]};
constexpr float kDigitsOutputScale = {probabilities["scale"]!r}f;
constexpr int kDigitsOutputZeroPoint = {probabilities["zero_point"]};

// Output {score["index"]}, digit_score: int8 {score["shape"]}, 0 like no digit .. 1 a sure one;
// score = (interpreter.output(kDigitsScoreOutput)->data.int8[0] - kDigitsScoreZeroPoint) * kDigitsScoreScale.
constexpr int kDigitsScoreOutput = {score["index"]};
constexpr float kDigitsScoreScale = {score["scale"]!r}f;
constexpr int kDigitsScoreZeroPoint = {score["zero_point"]};{threshold_lines}

// The ops the model uses ({", ".join(ops)}): a tflite::MicroMutableOpResolver<kDigitsOpCount>
// registers them with DigitsAddOps(resolver), which returns kTfLiteOk or the first failure.
constexpr int kDigitsOpCount = {len(ops)};
template <typename Resolver>
auto DigitsAddOps(Resolver& resolver) -> decltype(resolver.AddSoftmax()) {{
  // decltype keeps this header free of TFLite includes; a value-initialized TfLiteStatus is kTfLiteOk.
  using Status = decltype(resolver.AddSoftmax());
  const Status ok{{}};
  Status status{{}};
{adds}
  return ok;
}}

#endif  // {guard}
"""
    body = ",\n".join(
        "  " + ", ".join(f"0x{byte:02x}" for byte in content[i : i + 12]) for i in range(0, len(content), 12)
    )
    source = f"""// Written by `digits export --micro`: the model file, byte for byte. alignas(16): TFLite Micro
// reads the flatbuffer's 16-byte-aligned buffers in place.
#include "{header_name}"

alignas(16) const unsigned char {ARRAY_NAME}[] = {{
{body}
}};
const unsigned int {ARRAY_NAME}_len = {len(content)};
"""
    return source, header
