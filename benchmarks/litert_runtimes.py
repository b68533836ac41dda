"""The LiteRT files beside the ONNX model: size, agreement with Python's onnxruntime, speed.

    python benchmarks/litert_runtimes.py runs/demo/model.onnx   (model.tflite, .int8.tflite, .micro.tflite beside it)

Needs the [litert] extra. On 2,000 real digits (the bundled sample, test digits first):
label agreement and max abs difference of the probabilities against Python's
onnxruntime on model.onnx; digits/s for the whole batch (median of 7 after a warm-up)
and one digit at a time (200 digits, median of 5). LiteRT runs on one thread, as
`digits classify` runs each model call. TFLite Micro's interpreter (tflite-micro's
Python wrapper, one digit per call) is the micro file's second row.
"""

import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from digits.batch.model import load_classifier  # noqa: E402
from digits.exporter.export import sibling  # noqa: E402
from digits.trainer.data.sample import load_sample  # noqa: E402

REPEATS = 7
SINGLES = 200


def rates(predict, digits: np.ndarray) -> tuple[np.ndarray, float, float]:
    probabilities = predict(digits)
    batch, single = [], []
    for _ in range(REPEATS):
        start = time.perf_counter()
        predict(digits)
        batch.append(len(digits) / (time.perf_counter() - start))
    for _ in range(5):
        start = time.perf_counter()
        for i in range(SINGLES):
            predict(digits[i : i + 1])
        single.append(SINGLES / (time.perf_counter() - start))
    return probabilities, statistics.median(batch), statistics.median(single)


def main() -> None:
    from digits.exporter.micro import measure_arena, micro_interpreter

    onnx_path = Path(sys.argv[1])
    sample = load_sample()
    digits = np.concatenate([sample.x_test, sample.x_train])[:2000]
    reference, *onnx_rates = rates(load_classifier(onnx_path, threads=1).predict, digits)
    rows = [("model.onnx", "Python onnxruntime", onnx_path.stat().st_size, 1.0, 0.0, *onnx_rates)]
    for suffix in (".tflite", ".int8.tflite", ".micro.tflite"):
        path = sibling(onnx_path, suffix)
        probabilities, *speed = rates(load_classifier(path, threads=1).predict, digits)
        rows.append((f"model{suffix}", "LiteRT 2.3 (ai-edge-litert)", path.stat().st_size,
                     float((probabilities.argmax(1) == reference.argmax(1)).mean()),
                     float(np.abs(probabilities - reference).max()), *speed))
    micro = sibling(onnx_path, ".micro.tflite").read_bytes()
    interpreter = micro_interpreter(micro, measure_arena(micro, digits[0]))
    scale, zero_point = (interpreter.get_output_details(0)["quantization_parameters"][k][0]
                         for k in ("scales", "zero_points"))

    def tflm(batch: np.ndarray) -> np.ndarray:  # one invoke per digit, as a board runs it
        rows = []
        for digit in batch:
            interpreter.set_input(digit[None], 0)
            interpreter.invoke()
            rows.append(interpreter.get_output(0)[0])
        return (np.asarray(rows, np.float32) - zero_point) * scale

    probabilities, *speed = rates(tflm, digits)
    rows.append(("model.micro.tflite", "TFLite Micro (tflite-micro)", len(micro),
                 float((probabilities.argmax(1) == reference.argmax(1)).mean()),
                 float(np.abs(probabilities - reference).max()), *speed))
    print(f"{'model':<20}{'runtime':<30}{'bytes':>10}{'labels':>9}{'max abs diff':>14}"
          f"{'digits/s (2,000)':>18}{'digits/s (1)':>14}")
    for name, runtime, size, agree, diff, batch, single in rows:
        print(f"{name:<20}{runtime:<30}{size:>10,}{agree:>9.2%}{diff:>14.1e}{batch:>18,.0f}{single:>14,.0f}")


if __name__ == "__main__":
    main()
