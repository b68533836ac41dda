"""Peer: one core's plain decode loop: list the folder, read each file, cv2.imdecode it. No model.

What `digits classify` on a PNG folder is measured against. Prints, as JSON on
stdout, the count and the loop's seconds (imports excluded; the listing
included, as in `digits classify`).
"""

import json
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
print(json.dumps({"decoded": decoded, "files": len(names), "seconds": time.perf_counter() - start}))
