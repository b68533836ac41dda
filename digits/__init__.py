"""The `digits` command: one program over the three parts of the toolkit.

trainer/  MNIST in any form -> a Keras MLP (`digits train`, `digits evaluate`)
exporter/ Keras -> a self-contained ONNX model, parity-checked (`digits export`, `digits inspect`)
batch/    ONNX model + images/.npy -> labels, with onnxruntime only (`digits classify`)
"""
