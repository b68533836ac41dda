"""Peer: the plain script a user would write: load the array, run onnxruntime at batch 1,024."""

import sys

import numpy as np
import onnxruntime as ort

model, array_path = sys.argv[1], sys.argv[2]
session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
digits = np.load(array_path)
labels = np.concatenate(
    [session.run(["label"], {"image": digits[i : i + 1024]})[0] for i in range(0, len(digits), 1024)]
)
print(len(labels), "digits", np.bincount(labels, minlength=10).tolist())
