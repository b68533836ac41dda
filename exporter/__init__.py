"""The exporter: a Keras digit classifier -> a self-contained, parity-checked ONNX model, and its variants.

export.py (the whole export) drives convert.py (Keras -> ONNX), parity.py (the checks against
Keras), quantize.py (int8), ort_format.py (.ort), litert.py and litert_file.py (.tflite), micro.py
(TFLite Micro) and metadata.py; describe.py and throughput.py serve `digits inspect` and
`digits bench`; cli.py holds the three commands.
"""
