"""Peer: the seed's recipe as a plain Keras script. Prints the seconds model.fit took."""

import sys
import time

import keras
import numpy as np

data = np.load(sys.argv[1])
epochs = int(sys.argv[2])
x = data["x_train"].reshape(-1, 784).astype("float32") / 255
y = keras.utils.to_categorical(data["y_train"], 10)
order = np.random.default_rng(0).permutation(len(x))  # the bundled sample is sorted by class
model = keras.Sequential([keras.Input((784,)), keras.layers.Dense(256, activation="relu"), keras.layers.Dropout(0.25),
                          keras.layers.Dense(128, activation="relu"), keras.layers.Dropout(0.25),
                          keras.layers.Dense(64, activation="relu"), keras.layers.Dropout(0.25),
                          keras.layers.Dense(10, activation="softmax")])
model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
start = time.perf_counter()
model.fit(x[order], y[order], epochs=epochs, batch_size=128, validation_split=0.2, verbose=0)
print(time.perf_counter() - start)
