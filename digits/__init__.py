"""The `digits` command: one program over the toolkit's parts, the top layer.

core/     the floor: the model contract, errors and exit codes, paths and atomic writes
batch/    ONNX model + images/.npy -> labels, with onnxruntime only (`digits classify`)
trainer/  MNIST in any form -> a Keras model (`digits train`, `digits evaluate`)
exporter/ Keras -> a self-contained ONNX model, parity-checked (`digits export`, `digits inspect`, `digits bench`)
digits/   the command line, the demo and the bundled models (`digits models`), on top of all of them

Installed, the four parts are subpackages here (digits.core, digits.batch, ...: pyproject's
package-dir), so no top-level `core` or `batch` lands in site-packages. In a clone they stay
folders beside this one, and this package's path reaches them there. Importing this package
does nothing else: the command's start-up (streams, signals) is in cli.main.
"""

import os

_here = os.path.dirname(os.path.abspath(__file__))
if not os.path.isdir(os.path.join(_here, "core")):  # a clone: core/, batch/, ... sit beside digits/
    __path__.append(os.path.dirname(_here))
