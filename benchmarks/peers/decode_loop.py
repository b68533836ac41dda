"""Peer: one core's plain decode loop: list the folder, read each file, cv2.imdecode it. No model.

What two decoding cores are measured against: `digits classify` on a PNG folder
should reach most of twice this rate. Prints the count; on stderr, the loop's
rate (imports excluded; the listing included, as in `digits classify`).
"""

import os
import sys
import time

import cv2
import numpy as np

folder = sys.argv[1]
start = time.perf_counter()
names = sorted(os.listdir(folder))
decoded = 0
for name in names:
    with open(os.path.join(folder, name), "rb") as f:
        data = f.read()
    digit = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
    decoded += digit is not None
print(decoded, "decoded")
print(f"{len(names) / (time.perf_counter() - start):.1f} digits/s", file=sys.stderr)
