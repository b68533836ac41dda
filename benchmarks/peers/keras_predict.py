"""Peer: load the Keras model and call model.predict on the array."""

import sys

import keras
import numpy as np

model = keras.saving.load_model(sys.argv[1])
digits = np.load(sys.argv[2])
labels = model.predict(digits.reshape(-1, 784).astype("float32") / 255, batch_size=1024, verbose=0).argmax(axis=1)
print(len(labels), "digits", np.bincount(labels, minlength=10).tolist())
