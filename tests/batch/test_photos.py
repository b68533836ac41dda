"""Real digits as phones and scanners deliver them (issue 21, class 7): stored rotated with an
EXIF orientation tag, dark ink on grey paper. Each variant must score at least 0.95x the same
digits scanned clean, with the committed model; and clean MNIST digits must not lose accuracy.

`python -m tests.batch.test_photos` prints the table (the measurement behind docs/classify.md's numbers).
"""

import cv2
import numpy as np

from digits.batch.decode import decode_digits, exif_orientation, upright
from tests.conftest import COMMITTED_MODEL

SCALE = 4  # a "scan": the digit at 112x112, as a phone photo of a written digit is larger than MNIST
_INVERSE = {6: 8, 8: 6}  # every other orientation undoes itself


def exif_segment(orientation: int) -> bytes:
    """A JPEG APP1 segment holding only an EXIF orientation tag (little-endian TIFF, one IFD entry)."""
    tiff = (b"II*\x00" + (8).to_bytes(4, "little") + (1).to_bytes(2, "little")
            + (274).to_bytes(2, "little") + (3).to_bytes(2, "little") + (1).to_bytes(4, "little")
            + orientation.to_bytes(2, "little") + b"\x00\x00" + (0).to_bytes(4, "little"))
    body = b"Exif\x00\x00" + tiff
    return b"\xff\xe1" + (len(body) + 2).to_bytes(2, "big") + body


def jpeg(image: np.ndarray, orientation: int = 1) -> bytes:
    """A JPEG (quality 90) showing `image` upright: its pixels stored turned, with the tag that turns them back."""
    stored = upright(image, _INVERSE.get(orientation, orientation))
    data = cv2.imencode(".jpg", np.ascontiguousarray(stored), [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
    return data if orientation == 1 else data[:2] + exif_segment(orientation) + data[2:]


def png(image: np.ndarray) -> bytes:
    return cv2.imencode(".png", image)[1].tobytes()


def scan(digit: np.ndarray, page: int = 255, ink: int = 0) -> np.ndarray:
    """The digit written in `ink` on `page`, enlarged SCALE times: uint8 [112, 112]."""
    big = cv2.resize(digit, None, fx=SCALE, fy=SCALE, interpolation=cv2.INTER_LINEAR).astype(np.float64) / 255
    return np.rint(page + (ink - page) * big).astype(np.uint8)


def grey_paper(digit: np.ndarray) -> np.ndarray:
    """Ink 40 on page 200 at MNIST's own size."""
    return np.rint(200 - 160 * digit.astype(np.float64) / 255).astype(np.uint8)


ORIENTATIONS = (3, 6, 8, 2, 4, 5, 7)


def variants(digits: np.ndarray) -> dict[str, list[bytes]]:
    return {
        "MNIST 28x28 PNG": [png(d) for d in digits],
        "scanned clean (112x112 JPEG)": [jpeg(scan(d)) for d in digits],
        "scanned, stored rotated + EXIF tag": [jpeg(scan(d), ORIENTATIONS[i % 7]) for i, d in enumerate(digits)],
        "grey paper, ink 40 page 200 (112x112 JPEG)": [jpeg(scan(d, 200, 40)) for d in digits],
        "grey paper, ink 40 page 200 (28x28 PNG)": [png(grey_paper(d)) for d in digits],
        "grey paper, rotated + EXIF tag": [jpeg(scan(d, 200, 40), ORIENTATIONS[i % 7]) for i, d in enumerate(digits)],
    }


def accuracies(digits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    from digits.batch.model import OnnxClassifier

    model = OnnxClassifier(str(COMMITTED_MODEL))
    scores = {}
    for name, blobs in variants(digits).items():
        decoded, errors = decode_digits(blobs)
        assert not any(errors), errors
        scores[name] = float((model.predict(decoded).argmax(axis=1) == labels).mean())
    return scores


def test_exif_orientation_is_what_opencv_applies(sample):
    """Our reading of each of the 8 tags against OpenCV's own (IMREAD_GRAYSCALE applies EXIF)."""
    image = scan(sample.x_test[7])[:, :100]  # not square: a wrong turn changes the shape too
    for orientation in range(1, 9):
        data = jpeg(image, orientation)
        assert exif_orientation(data) == orientation
        ours = upright(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED), orientation)
        np.testing.assert_array_equal(ours, cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE))
        assert ours.shape == image.shape


def test_exif_in_png_and_webp_and_broken_exif(sample):
    tiff = exif_segment(6)[10:]
    plain = png(sample.x_test[0])
    chunk = len(tiff).to_bytes(4, "big") + b"eXIf" + tiff + b"\0\0\0\0"  # CRC not checked by readers of the tag
    assert exif_orientation(plain[:33] + chunk + plain[33:]) == 6
    webp = cv2.imencode(".webp", sample.x_test[0])[1].tobytes()
    body = webp[12:] + b"EXIF" + len(tiff).to_bytes(4, "little") + tiff + b"\0" * (len(tiff) & 1)
    assert exif_orientation(b"RIFF" + (len(body) + 4).to_bytes(4, "little") + b"WEBP" + body) == 6
    for broken in (exif_segment(6)[:-9], exif_segment(9), b"\xff\xd8\xff\xe1\x00\x02"):
        assert exif_orientation(b"\xff\xd8" + broken[2:] if broken[:2] == b"\xff\xd8" else b"\xff\xd8" + broken) == 1
    assert exif_orientation(plain) == 1 and exif_orientation(b"") == 1


def test_rotated_and_grey_paper_digits_score_as_clean_ones(sample):
    scores = accuracies(sample.x_test, sample.y_test)
    clean = scores["scanned clean (112x112 JPEG)"]
    assert clean >= 0.9, scores
    for name, accuracy in scores.items():
        assert accuracy >= 0.95 * clean, (name, scores)
    from digits.batch.model import OnnxClassifier

    raw = float((OnnxClassifier(str(COMMITTED_MODEL)).predict(sample.x_test).argmax(axis=1) == sample.y_test).mean())
    assert scores["MNIST 28x28 PNG"] == raw  # the arrays' own accuracy: contrast normalisation costs nothing


def test_contrast_normalisation_leaves_mnist_digits_alone(sample):
    digits = np.concatenate([sample.x_train, sample.x_test])
    decoded, _ = decode_digits([png(d) for d in digits])
    changed = (decoded != digits).any(axis=(1, 2))
    # Only digits whose ink peaks at 254 (9% of MNIST) could change, and those are within FULL_INK.
    assert not changed.any(), np.flatnonzero(changed)[:10]
    grey, _ = decode_digits([png(grey_paper(d)) for d in digits[:200]])
    assert np.abs(grey.astype(int) - digits[:200]).max() <= 2  # the page back to 0, the ink back to full


if __name__ == "__main__":
    from digits.trainer.data.sample import load_sample

    data = load_sample()
    for name, accuracy in accuracies(data.x_test, data.y_test).items():
        print(f"{name:45s} {accuracy:.3f}")


def test_a_mixed_block_gives_each_image_what_decode_digit_gives_it(sample):
    """decode_digits' block-wide fast path (28x28 PNGs) and the general path, interleaved, in every --invert mode."""
    from digits.batch.decode import decode_digit

    digits = sample.x_test[:40]
    blobs = []
    for i, d in enumerate(digits):
        blobs += [png(d), png(grey_paper(d)), png(255 - d), jpeg(scan(d), ORIENTATIONS[i % 7]), png(d // 2)]
    for invert in ("auto", "always", "never"):
        decoded, errors = decode_digits(blobs, invert)
        assert not any(errors)
        np.testing.assert_array_equal(decoded, np.stack([decode_digit(b, invert) for b in blobs]))
