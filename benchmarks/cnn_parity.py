"""How far can a float32 CNN's probabilities move from one CPU to another? Measured against
float64 truth, so that any two float32 runtimes are at most the sum of their errors apart.

    python benchmarks/cnn_parity.py runs/cnn-full/model.keras runs/cnn-full/model.onnx --data data/mnist
    TF_ENABLE_ONEDNN_OPTS=0 python benchmarks/cnn_parity.py ...   # Keras on Eigen's kernels instead of oneDNN's

Each float32 implementation sums a convolution's 288 products (3x3x32) in its own order and
with its own vector width; that order is what another CPU changes. The runtimes compared
here are different implementations on this CPU (Keras on oneDNN or Eigen, onnxruntime with
and without graph optimisations, on 1 or 2 threads, and onnx's numpy reference evaluator),
which stand in for other CPUs: each is its own summation order.
"""

import argparse
import json
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("keras_model", type=Path)
    parser.add_argument("onnx_model", type=Path)
    parser.add_argument("--data", type=Path)
    parser.add_argument("--digits", type=int, default=2000)
    args = parser.parse_args()

    import keras
    import onnx
    import onnxruntime as ort
    from onnx.reference import ReferenceEvaluator

    from digits.core.contract import IMAGE_SIZE, INPUT_NAME, PROBABILITIES
    from digits.exporter.metadata import training_temperature
    from digits.trainer.calibrate import apply_temperature
    from digits.trainer.data import load_mnist
    from digits.trainer.model import MODELS, load_keras_model, predict_keras

    data = load_mnist(args.data)
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, size=(256, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    digits = np.concatenate([data.x_test[: args.digits], noise])
    temperature = training_temperature(args.keras_model) or 1.0

    model32 = load_keras_model(args.keras_model)
    keras.config.set_dtype_policy("float64")
    model64 = MODELS["cnn"]()
    assert model64.layers[0].compute_dtype == "float64"
    model64.set_weights([w.astype(np.float64) for w in model32.get_weights()])
    x64 = digits.astype(np.float64)[..., None] / 255.0
    truth = apply_temperature(np.asarray(model64(x64, training=False)), temperature)
    keras.config.set_dtype_policy("float32")

    results = {"keras float32": apply_temperature(predict_keras(model32, digits), temperature)}
    for level, name in ((ort.GraphOptimizationLevel.ORT_ENABLE_ALL, "optimised"),
                        (ort.GraphOptimizationLevel.ORT_DISABLE_ALL, "unoptimised")):
        for threads in (1, 2):
            options = ort.SessionOptions()
            options.graph_optimization_level = level
            options.intra_op_num_threads = threads
            session = ort.InferenceSession(str(args.onnx_model), options, providers=["CPUExecutionProvider"])
            results[f"onnxruntime {name}, {threads} thread(s)"] = session.run([PROBABILITIES], {INPUT_NAME: digits})[0]
    reference = ReferenceEvaluator(onnx.load(args.onnx_model))
    results["onnx reference (numpy)"] = reference.run([PROBABILITIES], {INPUT_NAME: digits[:300]})[0]

    report = {}
    for name, probs in results.items():
        diff = np.abs(probs.astype(np.float64) - truth[: len(probs)])
        report[name] = {"max_abs_vs_float64": float(diff.max()),
                        "labels_agree": float((probs.argmax(1) == truth[: len(probs)].argmax(1)).mean())}
    names = [n for n in results if n != "onnx reference (numpy)"]
    pairwise = max(float(np.abs(results[a] - results[b]).max()) for a in names for b in names)
    top = np.sort(truth, axis=1)
    report["largest pairwise difference"] = pairwise
    report["digits"] = len(digits)
    report["smallest top-two gap in float64"] = float((top[:, -1] - top[:, -2]).min())
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
