"""Every source of MNIST, read into one form: `Mnist` (see digitset.py)."""

from digits.trainer.data.digitset import Mnist
from digits.trainer.data.load import load_mnist

__all__ = ["Mnist", "load_mnist"]
