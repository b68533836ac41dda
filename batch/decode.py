"""Image bytes -> MNIST-style digits: uint8 [28, 28], white on black.

OpenCV decodes (it is ~4x faster than Pillow on small PNGs). Anything that is
not already a 28x28 digit is brought to MNIST's form with LeCun's recipe: crop
to the ink, fit into 20x20 keeping the aspect ratio, and centre by the centre
of mass in a 28x28 field.
"""

import os
import re
from collections.abc import Sequence
from typing import Literal

import numpy as np

from batch.imagesize import image_size
from core.errors import DigitsError

# Decompression-bomb cap, checked against the image's header before OpenCV
# allocates anything (batch/imagesize.py). OpenCV's own cap is set too, as a
# second guard; it only takes effect when cv2 is first imported here.
MAX_PIXELS = 40_000_000
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(MAX_PIXELS))

import cv2  # noqa: E402

# Silent: a bad file becomes an error row, not decoder chatter on stderr.
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)

Invert = Literal["auto", "always", "never"]

MNIST_SIZE = 28
DIGIT_BOX = 20  # MNIST digits are fit into 20x20 and centred in 28x28
INK_FRACTION = 0.2  # a pixel counts as ink above this fraction of the brightest
_MNIST_SHAPE = (MNIST_SIZE, MNIST_SIZE)
_JPEG_START = b"\xff\xd8"
_PNG_START = b"\x89PNG\r\n\x1a\n"
_PNG_28X28 = (28).to_bytes(4, "big") * 2  # IHDR width and height


class ImageError(DigitsError):
    """An image that cannot be decoded; the caller adds which file it was."""


def decode_digit(data: bytes, invert: Invert = "auto") -> np.ndarray:
    """Decode an image file's bytes into a uint8 [28, 28] white-on-black digit."""
    if not data:
        raise ImageError("empty file")
    if data[:2] == _JPEG_START and not _jpeg_is_whole(data):
        # libjpeg fills a truncated JPEG with grey and only warns; refuse it.
        raise ImageError("truncated JPEG (no end-of-image marker)")
    size = image_size(data)
    if size is None:
        raise ImageError("not a decodable image (not PNG, JPEG, GIF, BMP, TIFF, WebP or PNM)")
    if size[0] * size[1] > MAX_PIXELS:
        raise ImageError(f"image of {size[0]:,}x{size[1]:,} pixels, larger than the {MAX_PIXELS:,}-pixel cap "
                         "(decompression bomb?)")
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as e:
        if "MAX_IMAGE_PIXELS" in str(e):
            raise ImageError(f"image larger than the {MAX_PIXELS:,}-pixel cap (decompression bomb?)") from e
        raise ImageError("not a decodable image (corrupt or truncated)") from e
    if image is None:
        raise ImageError("not a decodable image (corrupt or truncated)")
    return to_mnist(to_gray(image), invert)


def decode_digits(blobs: Sequence[bytes | str], invert: Invert = "auto",
                  out: np.ndarray | None = None) -> tuple[np.ndarray, list[str | None]]:
    """Many images' bytes -> (uint8 [N, 28, 28] digits, errors), digit i exactly as decode_digit gives it.

    A blob that is a str is an error already known (the file could not be read).
    errors[i] is why blob i failed (digit i is then all zeros), None when it did not.
    `out`, when given, is the uint8 [N, 28, 28] array to fill (shared memory).

    The hot path of folder runs. A 28x28 PNG decodes in ~11 us, so the Python
    around it counts: a PNG whose header says 28x28 (no pixel cap to check) and
    that decodes to 8-bit grayscale, the MNIST form, goes straight into the
    block, and the border check for --invert auto is one numpy pass over the
    whole block rather than four sums per image. Anything else takes
    decode_digit's general path.
    """
    digits = np.zeros((len(blobs), MNIST_SIZE, MNIST_SIZE), np.uint8) if out is None else out
    errors: list[str | None] = [None] * len(blobs)
    plain: list[int] = []  # indices decoded on the fast path: inversion still to decide
    imdecode, frombuffer, unchanged, uint8 = cv2.imdecode, np.frombuffer, cv2.IMREAD_UNCHANGED, np.uint8
    for i, data in enumerate(blobs):
        if isinstance(data, str):
            errors[i] = data
            digits[i] = 0
            continue
        if data[:8] == _PNG_START and data[16:24] == _PNG_28X28:  # header says 28x28: no bomb
            try:
                image = imdecode(frombuffer(data, uint8), unchanged)
            except cv2.error:
                image = None  # the general path below says why
            if image is not None and image.shape == _MNIST_SHAPE and image.dtype == uint8:
                digits[i] = image
                plain.append(i)
                continue
        try:
            digits[i] = decode_digit(data, invert)
        except ImageError as e:
            errors[i] = str(e)
            digits[i] = 0
    if plain and invert != "never":
        index = np.array(plain)
        if invert == "auto":
            index = index[_light_borders(digits[index])]
        digits[index] = 255 - digits[index]
    return digits, errors


def _light_borders(digits: np.ndarray) -> np.ndarray:
    """needs_inverting for each of uint8 [N, 28, 28] at once: bool [N]."""
    total = (digits[:, 0].sum(axis=1, dtype=np.int64) + digits[:, -1].sum(axis=1, dtype=np.int64)
             + digits[:, 1:-1, 0].sum(axis=1, dtype=np.int64) + digits[:, 1:-1, -1].sum(axis=1, dtype=np.int64))
    return total > 127.5 * (4 * MNIST_SIZE - 4)


# In entropy-coded data a 0xFF byte is followed by 0x00 (stuffing), a restart
# marker 0xD0-0xD7 or more 0xFF fill; anything else is the next marker.
_NEXT_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")


def _jpeg_is_whole(data: bytes) -> bool:
    """Whether the JPEG at the start of `data` reaches its end-of-image marker.

    The marker segments are followed, not searched for: data after the image (a
    phone's "motion photo" appends a video) is allowed, and an EOI inside an
    embedded thumbnail does not pass for the image's own. Only a file that runs
    out inside its image data counts as cut short; headers that make no sense are
    left to the decoder, which calls them corrupt."""
    i, n, scanning = 2, len(data), False
    while i + 1 < n:
        if data[i] != 0xFF:  # stray bytes between segments: libjpeg skips them too
            i = data.find(b"\xff", i)
            if i < 0:
                return False
            continue
        marker = data[i + 1]
        if marker == 0xD9:
            return True
        if marker == 0xFF or 0xD0 <= marker <= 0xD7 or marker == 0x01:  # fill, or markers without a length
            i += 1 if marker == 0xFF else 2
            continue
        if i + 4 > n:
            return not scanning
        i += 2 + int.from_bytes(data[i + 2 : i + 4], "big")
        if marker == 0xDA:  # start of scan: its entropy-coded data runs to the next marker
            scanning = True
            found = _NEXT_MARKER.search(data, i)
            if found is None:
                return False
            i = found.start()
    return not scanning


def to_gray(image: np.ndarray) -> np.ndarray:
    """Any decoded image (1-4 channels, 8/16-bit or float) -> uint8 grayscale.

    Transparent pixels are composited over white, as a viewer shows them.
    """
    if image.dtype != np.uint8:
        image = _to_uint8(image)
    if image.ndim == 2:
        return image
    channels = image.shape[2]
    if channels == 1:
        return image[:, :, 0]
    if channels == 2:  # gray + alpha
        gray, alpha = image[:, :, 0], image[:, :, 1]
    elif channels == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    else:
        gray = cv2.cvtColor(image[:, :, :3], cv2.COLOR_BGR2GRAY)
        alpha = image[:, :, 3]
    a = alpha.astype(np.float32) / 255.0
    return np.rint(gray * a + 255.0 * (1.0 - a)).astype(np.uint8)


def _to_uint8(image: np.ndarray) -> np.ndarray:
    if image.dtype == np.uint16:
        return (image >> 8).astype(np.uint8)
    if np.issubdtype(image.dtype, np.floating):
        return np.clip(np.nan_to_num(image) * 255.0, 0, 255).astype(np.uint8)
    info = np.iinfo(image.dtype)
    scaled = (image.astype(np.float64) - info.min) / (info.max - info.min) * 255.0
    return scaled.astype(np.uint8)


def needs_inverting(gray: np.ndarray) -> bool:
    """Dark ink on a light page: judged from the border, where a digit rarely is."""
    h, w = gray.shape
    if h < 3 or w < 3:
        return float(gray.mean()) > 127.5
    total = int(gray[0].sum()) + int(gray[-1].sum()) + int(gray[1:-1, 0].sum()) + int(gray[1:-1, -1].sum())
    return total > 127.5 * (2 * w + 2 * (h - 2))


def to_mnist(gray: np.ndarray, invert: Invert = "auto") -> np.ndarray:
    """uint8 grayscale of any size -> uint8 [28, 28] MNIST-style digit.

    A 28x28 image is taken as already MNIST-style and passes through unchanged
    (after inversion, when it applies); a blank image becomes all zeros.
    """
    if invert == "always" or (invert == "auto" and needs_inverting(gray)):
        gray = 255 - gray
    if gray.shape == (MNIST_SIZE, MNIST_SIZE):
        return np.ascontiguousarray(gray)
    peak = int(gray.max())
    if peak == 0:
        return np.zeros((MNIST_SIZE, MNIST_SIZE), np.uint8)
    rows = np.flatnonzero((gray > peak * INK_FRACTION).any(axis=1))
    cols = np.flatnonzero((gray > peak * INK_FRACTION).any(axis=0))
    ink = gray[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]

    h, w = ink.shape
    scale = DIGIT_BOX / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))  # cv2 wants (w, h)
    shrinking = scale < 1
    box = cv2.resize(ink, size, interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)

    # Place the box so that its centre of mass lands on the field's centre,
    # keeping the whole box inside the field.
    mass = box.astype(np.float64)
    total = mass.sum()
    bh, bw = box.shape
    if total > 0:
        cy = (mass.sum(axis=1) * np.arange(bh)).sum() / total
        cx = (mass.sum(axis=0) * np.arange(bw)).sum() / total
    else:
        cy, cx = (bh - 1) / 2, (bw - 1) / 2
    centre = MNIST_SIZE / 2  # where MNIST puts the centre of mass: measured mean (13.97, 14.00)
    top = int(np.clip(round(centre - cy), 0, MNIST_SIZE - bh))
    left = int(np.clip(round(centre - cx), 0, MNIST_SIZE - bw))
    field = np.zeros((MNIST_SIZE, MNIST_SIZE), np.uint8)
    field[top : top + bh, left : left + bw] = box
    return field
