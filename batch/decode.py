"""Image bytes -> MNIST-style digits: uint8 [28, 28], white on black, by the steps docs/classify.md's
"Images" and "Forms" describe (web/digits.js takes each the same way). OpenCV decodes: ~4x faster
than Pillow on small PNGs."""

import os
from collections.abc import Sequence
from functools import lru_cache
from typing import Literal

import numpy as np

from digits.batch.forms import page_levels, remove_artefacts, thicken
from digits.batch.imagesize import image_size, jpeg_markers, tiff_tag
from digits.core.contract import IMAGE_SIZE, MAX_IMAGE_PIXELS
from digits.core.errors import DigitsError

# The decompression-bomb cap is checked against the header first (batch/imagesize.py); OpenCV's
# own, a second guard, only takes effect when cv2 is first imported here.
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(MAX_IMAGE_PIXELS))

import cv2  # noqa: E402

# Silent: a bad file becomes an error row, not decoder chatter on stderr.
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)

Invert = Literal["auto", "always", "never"]
NO_CLEAN = ",no-clean"  # after an --invert mode: decode without taking form artefacts out (decode_digits)

DIGIT_BOX = 20  # MNIST digits are fit into 20x20 and centred in 28x28
INK_FRACTION = 0.2  # a pixel counts as ink above this fraction of the brightest
# Contrast already MNIST's: a page this dark and ink this bright are left as they are (MNIST's
# own digits peak at 254 or 255 on a page of 0; scans add a little noise).
BLACK_PAGE = 8
FULL_INK = 247
_MNIST_SHAPE = (IMAGE_SIZE, IMAGE_SIZE)
_JPEG_START = b"\xff\xd8"
_PNG_START = b"\x89PNG\r\n\x1a\n"
_PNG_28X28 = IMAGE_SIZE.to_bytes(4, "big") * 2  # IHDR width and height


class ImageError(DigitsError):
    """An image that cannot be decoded; the caller adds which file it was."""


def decode_digit(data: bytes, invert: Invert = "auto", clean: bool = True) -> np.ndarray:
    """Decode an image file's bytes into a uint8 [28, 28] white-on-black digit (to_mnist says how)."""
    if not data:
        raise ImageError("empty file")
    # libjpeg fills a truncated JPEG with grey and only warns: one that runs out inside its image data
    # (a scan and no end-of-image marker; data after it, a motion photo's video, is allowed) is refused.
    # Senseless headers are left to the decoder, which calls them corrupt.
    markers = [marker for marker, _ in jpeg_markers(data)] if data[:2] == _JPEG_START else []
    if 0xDA in markers and 0xD9 not in markers:  # start of scan, end of image
        raise ImageError("truncated JPEG (no end-of-image marker)")
    size = image_size(data)
    if size is None:
        raise ImageError("not a decodable image (not PNG, JPEG, GIF, BMP, TIFF, WebP or PNM)")
    if size[0] * size[1] > MAX_IMAGE_PIXELS:
        raise ImageError(f"image of {size[0]:,}x{size[1]:,} pixels, larger than the {MAX_IMAGE_PIXELS:,}-pixel cap "
                         "(decompression bomb?)")
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as e:
        if "MAX_IMAGE_PIXELS" in str(e):
            raise ImageError(f"image larger than the {MAX_IMAGE_PIXELS:,}-pixel cap (decompression bomb?)") from e
        image = None
    if image is None:
        raise ImageError("not a decodable image (corrupt or truncated)")
    return to_mnist(upright(to_gray(image), exif_orientation(data)), invert, clean)


def decode_digits(blobs: Sequence[bytes | str], invert: str = "auto",
                  out: np.ndarray | None = None) -> tuple[np.ndarray, list[str | None]]:
    """Many images' bytes -> (uint8 [N, 28, 28] digits, errors), digit i exactly as decode_digit gives it.
    `invert`: an --invert mode, NO_CLEAN after it for --no-clean. A str blob is an error already
    known; errors[i] says why blob i failed (its digit all zeros), else None. `out`: the array to fill.
    The hot path of folder runs (docs/decisions.md): a 28x28 8-bit gray PNG goes straight in (_invert_and_stretch)."""
    invert, clean = invert.removesuffix(NO_CLEAN), not invert.endswith(NO_CLEAN)
    digits = np.zeros((len(blobs), IMAGE_SIZE, IMAGE_SIZE), np.uint8) if out is None else out
    errors: list[str | None] = [None] * len(blobs)
    plain: list[int] = []  # indices decoded on the fast path: inversion still to decide
    imdecode, frombuffer, unchanged, uint8 = cv2.imdecode, np.frombuffer, cv2.IMREAD_UNCHANGED, np.uint8
    for i, data in enumerate(blobs):
        if isinstance(data, str):
            errors[i] = data
            digits[i] = 0
            continue
        # Header says 28x28 (no bomb); no eXIf chunk (no orientation to apply): one would sit
        # before the image data, which in OpenCV's and most writers' PNGs follows the header.
        if (data[:8] == _PNG_START and data[16:24] == _PNG_28X28
                and (data[37:41] == b"IDAT" or b"eXIf" not in data)):
            try:
                image = imdecode(frombuffer(data, uint8), unchanged)
            except cv2.error:
                image = None  # the general path below says why
            if image is not None and image.shape == _MNIST_SHAPE and image.dtype == uint8:
                digits[i] = image
                plain.append(i)
                continue
        try:
            digits[i] = decode_digit(data, invert, clean)
        except ImageError as e:
            errors[i] = str(e)
            digits[i] = 0
    if plain:
        _invert_and_stretch(digits, plain, invert)
    return digits, errors


def _invert_and_stretch(digits: np.ndarray, plain: list[int], invert: str) -> None:
    """decode_digits' fast path finished in place for digits[plain]: inverted, then contrast normalised."""
    whole = len(plain) == len(digits)  # the usual case: no copy of the block
    index = np.arange(len(digits)) if whole else np.array(plain)
    block = digits if whole else digits[index]
    border = border_pixels(block).sum(axis=1, dtype=np.int64)
    if invert != "never":
        light = np.ones(len(index), bool) if invert == "always" else border > 127.5 * _BORDER
        digits[index[light]] = 255 - block[light]
        border[light] = 255 * _BORDER - border[light]
        block = digits if whole else digits[index]
    # A border summing under _DARK_BORDER has a median of at most BLACK_PAGE; with full ink too
    # (MNIST's own digits, nearly every clean scan) it is left as it is, as normalise_contrast would.
    as_is = (border < _DARK_BORDER) & (block.reshape(len(block), -1).max(axis=1) >= FULL_INK)
    for i in index[~as_is]:
        digits[i] = normalise_contrast(digits[i])


_BORDER = 4 * IMAGE_SIZE - 4  # border pixels of a 28x28 digit
# If the lower median (index 53 of 108 sorted) were above BLACK_PAGE, the 55 pixels from it up
# would sum to at least this.
_DARK_BORDER = (_BORDER - (_BORDER - 1) // 2) * (BLACK_PAGE + 1)


def border_pixels(images: np.ndarray) -> np.ndarray:
    """The border pixels of an [H, W] image, or of each of [N, H, W] images ([N, 2H + 2W - 4])."""
    return np.concatenate([images[..., 0, :], images[..., -1, :], images[..., 1:-1, 0], images[..., 1:-1, -1]], -1)


def upright(image: np.ndarray, orientation: int) -> np.ndarray:
    """The image as it is meant to be seen, given its EXIF orientation (TIFF tag 274; 1-8, others as 1):
    2 mirrored left-right, 3 rotated 180, 4 mirrored top-bottom; 5-8 the same after a transpose (so 6,
    stored rotated 90 anticlockwise, is turned clockwise, and 8 anticlockwise)."""
    if orientation not in range(2, 9):
        return image
    turned = image.swapaxes(0, 1) if orientation >= 5 else image
    flip = (orientation - 1) % 4  # 0: none, 1: left-right, 2: both, 3: top-bottom
    return np.ascontiguousarray(turned[:: -1 if flip >= 2 else 1, :: -1 if flip in (1, 2) else 1])


def exif_orientation(data: bytes) -> int:
    """The EXIF orientation of a JPEG (APP1), PNG (eXIf) or WebP (EXIF chunk), read from the metadata
    before the image data; 1 when it has none or it is malformed (as browsers treat it)."""
    value = tiff_tag(_exif(data), 274)
    return value if value in range(1, 9) else 1


def _exif(data: bytes) -> bytes:
    """The EXIF block (a TIFF header) of a JPEG, PNG or WebP image; b"" when it has none."""
    if data[:2] == _JPEG_START:
        for marker, i in jpeg_markers(data):
            if marker in (0xDA, 0xD9):  # start of scan, end of image: no more metadata
                break
            if marker == 0xE1 and data[i + 4 : i + 10] == b"Exif\0\0":
                return data[i + 10 : i + 2 + int.from_bytes(data[i + 2 : i + 4], "big")]
    elif data[:8] == _PNG_START:
        i = 8
        while i + 8 <= len(data) and data[i + 4 : i + 8] not in (b"IDAT", b"IEND"):
            length = int.from_bytes(data[i : i + 4], "big")
            if data[i + 4 : i + 8] == b"eXIf":
                return data[i + 8 : i + 8 + length]
            i += 12 + length
    elif data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        i = 12
        while i + 8 <= len(data):
            length = int.from_bytes(data[i + 4 : i + 8], "little")
            if data[i : i + 4] == b"EXIF":
                block = data[i + 8 : i + 8 + length]
                return block[6:] if block[:6] == b"Exif\0\0" else block
            i += 8 + length + (length & 1)
    return b""


def to_gray(image: np.ndarray) -> np.ndarray:
    """Any decoded image (1-4 channels, 8/16-bit or float) -> uint8 grayscale, transparent pixels over white."""
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif np.issubdtype(image.dtype, np.floating):
        image = np.clip(np.nan_to_num(image) * 255.0, 0, 255).astype(np.uint8)
    elif image.dtype != np.uint8:  # signed or 32-bit integers (TIFF): their whole range onto 0..255
        info = np.iinfo(image.dtype)
        image = ((image.astype(np.float64) - info.min) / (info.max - info.min) * 255.0).astype(np.uint8)
    if image.ndim == 2:
        return image
    channels = image.shape[2]  # gray, gray + alpha, BGR or BGRA
    gray = image[:, :, 0] if channels < 3 else cv2.cvtColor(image[:, :, :3], cv2.COLOR_BGR2GRAY)
    if channels in (1, 3):
        return gray
    a = image[:, :, -1].astype(np.float32) / 255.0
    return np.rint(gray * a + 255.0 * (1.0 - a)).astype(np.uint8)


def _border(gray: np.ndarray) -> np.ndarray:
    """border_pixels, or every pixel of an image under 3 pixels thick."""
    return gray.ravel() if min(gray.shape) < 3 else border_pixels(gray)


def page_level(gray: np.ndarray) -> int:
    """The page's grey level of a white-on-black image: its border's lower median (a median: a digit
    touching the border is not page)."""
    border = _border(gray)
    k = (len(border) - 1) // 2
    return int(np.partition(border, k)[k])


@lru_cache(maxsize=4096)
def _stretch(page: int, peak: int) -> np.ndarray:
    """The uint8 [256] table taking `page` and below to 0 and `peak` to 255, linearly,
    rounded half up in integers (web/digits.js computes the same numbers)."""
    v = np.arange(256, dtype=np.int64) - page
    span = peak - page
    return np.clip((v * 510 + span) // (2 * span), 0, 255).astype(np.uint8)  # v < 0: under 0, as span < 510


def normalise_contrast(gray: np.ndarray, page: int | None = None) -> np.ndarray:
    """White ink on a dark page -> the page at 0 and the brightest ink at 255, as MNIST's digits are.
    Left as it is when already so (page <= BLACK_PAGE, ink >= FULL_INK) or nothing is brighter than
    the page. `page`: the page's level when known (default page_level's)."""
    page, peak = page_level(gray) if page is None else page, int(gray.max())
    if peak <= page or (page <= BLACK_PAGE and peak >= FULL_INK):
        return gray
    return _stretch(page, peak)[gray]


def to_mnist(gray: np.ndarray, invert: Invert = "auto", clean: bool = True) -> np.ndarray:
    """uint8 grayscale of any size (upright) -> uint8 [28, 28] MNIST-style digit, by docs/classify.md's
    "Images" (a blank one: zeros); with `clean`, one not 28x28 also by its "Forms" (batch/forms.py)."""
    form = clean and gray.shape != (IMAGE_SIZE, IMAGE_SIZE)
    median, low, high = page_levels(gray) if form else (0, 0, 0)
    # A light page, dark ink: by the whole image's median, else by the border, where a digit rarely is.
    light = median > 127 if form else float(_border(gray).mean()) > 127.5
    inverting = invert == "always" or (invert == "auto" and light)
    if inverting:
        gray = 255 - gray
    gray = normalise_contrast(gray, (255 - high if inverting else low) if form else None)
    if gray.shape == (IMAGE_SIZE, IMAGE_SIZE):
        return np.ascontiguousarray(gray)
    if form:  # ink: that share of full scale; and when the lines were the darkest ink, the digit's goes to 255
        gray = normalise_contrast(remove_artefacts(gray, INK_FRACTION * 255), 0)
    peak = int(gray.max())
    if peak == 0:
        return np.zeros((IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    left, top, w, h = cv2.boundingRect((gray > peak * INK_FRACTION).view(np.uint8))
    ink = gray[top : top + h, left : left + w]
    if form:  # a finer pen than MNIST's, widened
        ink = thicken(ink, peak * INK_FRACTION, DIGIT_BOX / max(ink.shape))
    h, w = ink.shape
    scale = DIGIT_BOX / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))  # cv2 wants (w, h)
    shrinking = scale < 1
    box = cv2.resize(ink, size, interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)

    # The box's centre of mass on the field's centre, the whole box inside the field (a box that
    # shrank to nothing: its middle). The moments are sums of integers: exact, as web/digits.js's.
    m = cv2.moments(box)
    bh, bw = box.shape
    cy, cx = (m["m01"] / m["m00"], m["m10"] / m["m00"]) if m["m00"] else ((bh - 1) / 2, (bw - 1) / 2)
    centre = IMAGE_SIZE / 2  # where MNIST puts the centre of mass: measured mean (13.97, 14.00)
    top = int(np.clip(round(centre - cy), 0, IMAGE_SIZE - bh))
    left = int(np.clip(round(centre - cx), 0, IMAGE_SIZE - bw))
    field = np.zeros((IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    field[top : top + bh, left : left + bw] = box
    return field
