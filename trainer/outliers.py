"""Images that are not digits, made from code, for outlier exposure (Hendrycks et al. 2019), so that
`digit_score` is low for what is not a digit: the generators and why in docs/decisions.md, "The outliers trained on".
"""

import numpy as np

from digits.batch.decode import to_mnist
from digits.core.contract import IMAGE_SIZE

CANVAS = 84  # drawn at 3x MNIST's side, then fitted to 28x28 as a decoded image is
# Letters in Pillow's built-in font (Aileron, a sans serif) that do not read as a digit.
LETTERS = "ACEFHKMNPRTUVWXYaehkmnrtuvwxy#%&@*+=?"


def _shapes(rng: np.random.Generator) -> np.ndarray:
    import cv2

    canvas = np.zeros((CANVAS, CANVAS), np.uint8)
    for _ in range(rng.integers(1, 4)):
        kind = rng.integers(4)
        c = tuple(int(v) for v in rng.integers(10, CANVAS - 10, 2))
        thick = int(rng.integers(3, 9))
        if kind == 0:
            cv2.rectangle(canvas, c, tuple(int(v) for v in rng.integers(10, CANVAS - 10, 2)), 255,
                          -1 if rng.random() < 0.5 else thick)
        elif kind == 1:
            axes = tuple(int(v) for v in rng.integers(6, 35, 2))
            start = int(rng.integers(0, 360))
            cv2.ellipse(canvas, c, axes, int(rng.integers(0, 180)), start, start + int(rng.integers(60, 300)),
                        255, thick)
        elif kind == 2:  # a wave across the canvas
            x = np.linspace(5, CANVAS - 5, 40)
            y = CANVAS / 2 + rng.uniform(5, 30) * np.sin(x / rng.uniform(4, 15) + rng.uniform(0, 6))
            cv2.polylines(canvas, [np.stack([x, y], 1).astype(np.int32)], False, 255, thick)
        else:
            points = rng.integers(5, CANVAS - 5, (int(rng.integers(3, 7)), 2)).astype(np.int32)
            cv2.fillPoly(canvas, [points], 255)
    return canvas


def _blob(rng: np.random.Generator) -> np.ndarray:
    import cv2

    noise = cv2.GaussianBlur(rng.random((CANVAS, CANVAS)), (0, 0), rng.uniform(3, 9))
    level = np.quantile(noise, rng.uniform(0.6, 0.95))
    return np.where(noise > level, 255, 0).astype(np.uint8)


def _speckle(rng: np.random.Generator) -> np.ndarray:
    return (rng.random((IMAGE_SIZE, IMAGE_SIZE)) < rng.uniform(0.02, 0.5)).astype(np.uint8) * 255


def _letter(rng: np.random.Generator) -> np.ndarray:
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("L", (CANVAS, CANVAS))
    font = ImageFont.load_default(int(rng.integers(40, 64)))
    ImageDraw.Draw(image).text((CANVAS / 2, CANVAS / 2), str(rng.choice(list(LETTERS))), fill=255, font=font,
                               anchor="mm", stroke_width=int(rng.integers(0, 3)), stroke_fill=255)
    return np.asarray(image.rotate(rng.uniform(-15, 15)))


def _pair(rng: np.random.Generator, digits: np.ndarray) -> np.ndarray:
    a, b = digits[rng.integers(len(digits), size=2)]
    if rng.random() < 0.5:
        return np.concatenate([a, b], axis=1)  # two digits side by side: fitted, each is half as tall
    return np.maximum(a, np.roll(b, tuple(int(v) for v in rng.integers(-6, 7, 2)), axis=(0, 1)))


GENERATORS = (_shapes, _blob, _speckle, _letter, _pair)


def make_outliers(count: int, digits: np.ndarray, seed: int) -> np.ndarray:
    """uint8 [count, 28, 28] non-digits in MNIST's form, in equal shares from each generator
    (pairs drawn from `digits`, uint8 [N, 28, 28]); the same seed gives the same images."""
    rng = np.random.default_rng(seed)
    out = np.empty((count, IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    for i in range(count):
        make = GENERATORS[i % len(GENERATORS)]
        image = make(rng, digits) if make is _pair else make(rng)
        out[i] = to_mnist(image, invert="never")
    return out
