"""The trainer: MNIST in any form a user has it -> the seed's Keras MLP.

`data/` reads MNIST into one in-memory form (uint8 [N, 28, 28] digits, white on
black, int labels 0-9), `model.py` builds the network, `fit.py` trains it,
`metrics.py` and `report.py` score it and write its artefacts. TensorFlow is
imported only inside the functions that need it.
"""
