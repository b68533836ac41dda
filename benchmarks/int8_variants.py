"""The int8 variants measured side by side: what exporter/quantize.py chose, and why.

    python benchmarks/int8_variants.py runs/demo/model.onnx [--data mnist.npz]   (default: the bundled sample)

For each way of quantizing the float model: file size, accuracy on the test
digits, label agreement with the float model, how far a digit alone is from the
same digit in a batch of 2,256 (2,000 real digits and 256 of noise), how far
onnxruntime is from onnx's reference evaluator on 2,000 real digits, and the
inference time per digit at batch 1,024 (median of 7 runs). Calibration digits
are picked from the training digits as the export picks them.
"""

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from digits.batch.model import OnnxClassifier  # noqa: E402
from digits.core.contract import IMAGE_SIZE  # noqa: E402
from digits.exporter.quantize import (  # noqa: E402
    alone_and_in_a_crowd,
    calibration_digits,
    calibration_reader,
    quantize_int8,
    reference_probabilities,
)


def variants(calibration: np.ndarray):
    """name -> function(float_path, out_path) writing that variant."""
    import onnx
    from onnx import version_converter
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static

    def dynamic(**kw):
        return lambda src, out: quantize_dynamic(src, out, per_channel=True, **kw)

    def static(**kw):
        def write(src, out):
            quantize_static(src, out, calibration_reader(calibration), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, **kw)
            onnx.save(version_converter.convert_version(onnx.load(out), 19), out)  # the reference needs Q/DQ-19
        return write

    return {
        "dynamic, s8 weights": dynamic(weight_type=QuantType.QInt8),
        "dynamic, s8 weights, reduce_range": dynamic(weight_type=QuantType.QInt8, reduce_range=True),
        "dynamic, u8 weights": dynamic(weight_type=QuantType.QUInt8),
        "static QDQ, every op": static(weight_type=QuantType.QInt8, reduce_range=True),
        "static QDQ, MatMul only": static(weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"]),
        "static QDQ, MatMul only, u8 weights": static(weight_type=QuantType.QUInt8, op_types_to_quantize=["MatMul"]),
        "chosen: static QDQ, MatMul only, reduce_range": lambda src, out: quantize_int8(src, out, calibration),
    }


def per_digit_us(path: Path, digits: np.ndarray) -> float:
    classifier = OnnxClassifier(path)
    batch = np.resize(digits, (1024, IMAGE_SIZE, IMAGE_SIZE))
    classifier.predict(batch)
    times = []
    for _ in range(7):
        start = time.perf_counter()
        for _ in range(20):
            classifier.predict(batch)
        times.append((time.perf_counter() - start) / 20 / 1024 * 1e6)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--data", type=Path, default=None,
                        help="MNIST in any `digits train --data` form (default: the bundled sample)")
    args = parser.parse_args()
    from digits.trainer.data import load_mnist
    from digits.trainer.data.sample import load_sample

    logging.getLogger().setLevel(logging.ERROR)
    data = load_mnist(args.data, notice=lambda _: None) if args.data else load_sample()
    real = np.concatenate([data.x_test, data.x_train])[:2000]
    float_probs = OnnxClassifier(args.model).predict(real)
    float_accuracy = float((OnnxClassifier(args.model).labels(data.x_test) == data.y_test).mean())
    print(f"float model: {args.model}, accuracy {float_accuracy:.4f}, {per_digit_us(args.model, real):.2f} us/digit")
    print(f"{'variant':<48}{'size':>6}{'accuracy':>10}{'agree':>8}  "
          f"{'alone vs batch':<18}{'ORT vs reference':<30}{'us/digit':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        for name, write in variants(calibration_digits(data.x_train)).items():
            out = Path(tmp, "variant.onnx")
            write(args.model, out)
            classifier = OnnxClassifier(out)
            probs = classifier.predict(real)
            accuracy = float((classifier.labels(data.x_test) == data.y_test).mean())
            alone, crowd = alone_and_in_a_crowd(out, real)
            reference = reference_probabilities(out, real)
            far = int((~np.isclose(probs, reference, atol=1e-5, rtol=0).all(axis=1)).sum())
            batch = f"{int((alone.argmax(1) != crowd.argmax(1)).sum())} lab, {np.abs(alone - crowd).max():.1e}"
            ref = (f"{int((probs.argmax(1) != reference.argmax(1)).sum())} lab, "
                   f"{np.abs(probs - reference).max():.1e}, {far} >1e-5")
            print(f"{name:<48}{os.path.getsize(out) / os.path.getsize(args.model):>6.0%}{accuracy:>10.4f}"
                  f"{(probs.argmax(1) == float_probs.argmax(1)).mean():>8.2%}  {batch:<18}{ref:<30}"
                  f"{per_digit_us(out, real):>9.2f}")


if __name__ == "__main__":
    main()
