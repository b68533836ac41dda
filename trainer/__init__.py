"""The trainer: MNIST in any form a user has it (`data/`) -> a Keras model (`model.py`,
`fit.py`), scored and reported (`metrics.py`, `calibrate.py`, `report.py`)."""
