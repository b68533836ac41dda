"""The `digits` command: one program over the toolkit's parts, the top layer.

core/     the floor: the model contract, errors and exit codes, paths and atomic writes
batch/    ONNX model + images/.npy -> labels, with onnxruntime only (`digits classify`)
trainer/  MNIST in any form -> a Keras model (`digits train`, `digits evaluate`)
exporter/ Keras -> a self-contained ONNX model, parity-checked (`digits export`, `digits inspect`, `digits bench`)
digits/   the command line, the demo and the bundled models (`digits models`), on top of all of them

Importing this package does nothing: the command's start-up (streams, signals) is in cli.main.
"""
