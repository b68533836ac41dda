"""What a digit classifier offers, whichever runtime runs it: the interface the engines take."""

from pathlib import Path
from typing import Protocol

import numpy as np

from digits.batch.scores import probe_digits


class Classifier(Protocol):
    """A digit classifier: onnxruntime's (OnnxClassifier) or LiteRT's (batch/litert_model.py)."""

    path: Path
    input_shape: tuple  # what the model takes per call, e.g. (None, 28, 28); None: any batch size
    score_output: str | None = None  # the model's digit_score output; None: it gives none
    threshold: float | None = None  # digit_score under this: not a digit (the model's metadata); None: none

    def scored(self, digits: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(class probabilities float32 [N, 10], digit_score float32 [N] in 0..1 or None) for uint8 [N, 28, 28]
        digits, held to the contract; ModelError when the runtime fails or the output breaks it."""
        ...

    def predict(self, digits: np.ndarray) -> np.ndarray:
        """scored's class probabilities."""
        return self.scored(digits)[0]

    def labels(self, digits: np.ndarray) -> np.ndarray:
        """Predicted labels, int64 [N], for uint8 [N, 28, 28] digits."""
        return self.predict(digits).argmax(axis=1)

    def describe(self) -> str:
        """One line: the runtime, and what the model takes and gives."""
        ...

    def probe(self) -> None:
        """Run the model on probe_digits: a model that loads but cannot run, or whose output breaks
        the contract, is refused (ModelError) before any row is written."""
        self.predict(probe_digits())

    def stop(self) -> None:
        """End the calls under way, where the runtime can (else they run to their end)."""

    def forked(self) -> "Classifier":
        """The classifier a forked worker process uses: this one where the fork leaves it whole."""
        ...
