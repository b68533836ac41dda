"""Peer: the naive loop: Pillow opens each image, one session.run per image.

Prints a label per image; on stderr, the loop's own rate (start-up excluded).
"""

import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image

session = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
paths = sorted(Path(sys.argv[2]).glob("*.png"))
start = time.perf_counter()
for path in paths:
    digit = np.array(Image.open(path).convert("L"), dtype=np.uint8)[None]
    print(path, session.run(["label"], {"image": digit})[0][0])
print(f"{len(paths) / (time.perf_counter() - start):.1f} digits/s", file=sys.stderr)
