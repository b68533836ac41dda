"""The TFLite Micro variant: the file run in TFLite Micro's own interpreter, and its C array.

`tflite-micro`'s Python package wraps the same C++ interpreter a board runs (all of its
kernels registered), so what it refuses a board refuses: an op with no TFLite Micro
kernel is named from the interpreter's own message. The tensor arena a board must
reserve is read from its RecordingMicroAllocator after one inference, and proven by
running again in an arena of exactly that size. That is the need of TFLite Micro's reference
kernels on this 64-bit host; a 32-bit board's pointers are smaller, but optimized kernels
(CMSIS-NN on Cortex-M, ESP-NN) may ask for scratch buffers on top: the header says so.
"""

import os
import re
import tempfile
from pathlib import Path

import numpy as np

from core.errors import ModelError
from exporter.litert_file import op_names
from exporter.parity import Check

MIN_LABEL_AGREEMENT = 0.995  # TFLite Micro vs LiteRT on the int8 file, labels
ARENA_ALIGNMENT = 16
ARRAY_NAME = "g_digits_model"


def _captured_fd2(action):
    """(action's result or exception, what C++ code wrote on fd 2 meanwhile)."""
    import sys

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


def measure_arena(content: bytes, digit: np.ndarray, where: str = "model") -> int:
    """Bytes of tensor arena the model needs, rounded up to 16: recorded by TFLite Micro's
    allocator in one inference, then proven by an inference in an arena of that size."""
    interpreter = micro_interpreter(content, max(len(content) * 10, 1 << 20), where)
    interpreter.set_input(digit[None], 0)
    interpreter.invoke()
    _, _, log = _captured_fd2(interpreter.print_allocations)
    total = re.search(r"Arena allocation total (\d+) bytes", log)
    if not total:
        raise RuntimeError(f"TFLite Micro's allocator did not report the arena size: {log[:300]!r}")
    arena = -(-int(total.group(1)) // ARENA_ALIGNMENT) * ARENA_ALIGNMENT
    proof = micro_interpreter(content, arena, where)
    proof.set_input(digit[None], 0)
    proof.invoke()
    return arena


def run_micro(content: bytes, digits: np.ndarray, arena: int) -> np.ndarray:
    """Probabilities float32 [N, 10], one TFLite Micro inference per digit (uint8 [N, 28, 28])."""
    interpreter = micro_interpreter(content, arena)
    out = interpreter.get_output_details(0)
    scale = np.float32(out["quantization_parameters"]["scales"][0])
    zero_point = np.float32(out["quantization_parameters"]["zero_points"][0])
    rows = []
    for digit in np.ascontiguousarray(digits, dtype=np.uint8):
        interpreter.set_input(digit[None], 0)
        interpreter.invoke()
        rows.append(interpreter.get_output(0)[0])
    return (np.asarray(rows, dtype=np.float32) - zero_point) * scale


def check_micro(micro_path: Path, int8_path: Path, digits: np.ndarray, arena: int) -> Check:
    """TFLite Micro on the micro file against LiteRT on model.int8.tflite (labels at least 99.5%
    equal; export gives it at least 1,000 digits), and against LiteRT on the micro file itself."""
    from batch.litert_model import LiteRtClassifier

    content = Path(micro_path).read_bytes()
    micro = run_micro(content, digits, arena)
    int8 = LiteRtClassifier(int8_path).predict(digits)
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


def output_quantization(content: bytes) -> tuple[float, int]:
    """(scale, zero point) of the micro model's int8 output."""
    details = micro_interpreter(content, max(len(content) * 10, 1 << 20)).get_output_details(0)
    quantization = details["quantization_parameters"]
    return float(quantization["scales"][0]), int(quantization["zero_points"][0])


def c_source(content: bytes, header_name: str, arena: int, ops: list[str],
             output: tuple[float, int]) -> tuple[str, str]:
    """(model.micro.cc, model.micro.h): the file as a 16-byte-aligned C array, the arena size
    TFLite Micro measured, the ops a MicroMutableOpResolver needs, and the output's
    (scale, zero point)."""
    guard = re.sub(r"\W", "_", header_name).upper() + "_"
    adds = "\n".join(f"  if ((status = resolver.{_add_call(op)}()) != ok) return status;" for op in ops)
    header = f"""// Written by `digits export --micro`: the digit classifier for TensorFlow Lite Micro.
// Input: uint8 [1, 28, 28], one MNIST-style digit, white (255) ink on black (0), row by row.
// Output: int8 [1, 10]; probability of class d = (output[d] - kDigitsOutputZeroPoint) * kDigitsOutputScale.
#ifndef {guard}
#define {guard}

#include <cstddef>

extern const unsigned char {ARRAY_NAME}[];
extern const unsigned int {ARRAY_NAME}_len;

// Tensor arena TFLite Micro's RecordingMicroAllocator measured for this model with the reference
// kernels on a 64-bit host, rounded up to 16 bytes. Optimized kernels (CMSIS-NN, ESP-NN) may need
// scratch buffers on top: leave headroom, or measure on the board with a RecordingMicroAllocator.
constexpr size_t kDigitsTensorArenaSize = {arena};

constexpr float kDigitsOutputScale = {output[0]!r}f;
constexpr int kDigitsOutputZeroPoint = {output[1]};

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
