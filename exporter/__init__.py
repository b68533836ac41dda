"""The exporter: a Keras digit classifier -> a self-contained, parity-checked ONNX model, and its variants.
export.py drives the export; describe.py and throughput.py serve `digits inspect` and `digits bench`."""
