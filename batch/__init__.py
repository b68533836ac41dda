"""The batch runner: classify images and .npy arrays with onnxruntime alone.

Nothing in this package imports TensorFlow; it is what an edge box installs.
"""
