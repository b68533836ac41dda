"""The exporter: a Keras digit classifier -> a self-contained, parity-checked ONNX model.

convert.py   Keras -> ONNX graph (uint8 image in; probabilities, label and digit_score out)
metadata.py  what a deployer reads from the file
parity.py    Keras vs onnxruntime (and onnx's reference evaluator): numbers, pass/fail
quantize.py  the int8 variant and its own check
ort_format.py  the ONNX Runtime Mobile (.ort) variant
export.py    the whole export: convert, check, write atomically
describe.py  what an .onnx file holds (onnx only, no TensorFlow)
throughput.py  digits/s at several batch sizes (digits bench)
cli.py       digits export, inspect and bench
litert.py    the .tflite files, start to finish: litert_convert.py (Keras -> LiteRT), litert_file.py (names,
             metadata, alignment), litert_check.py (checked with LiteRT's interpreter)
micro.py     the TensorFlow Lite Micro file and C source (--micro)
"""
