"""Images of any size and mode come out as MNIST-style digits."""

import cv2
import numpy as np
import pytest

from batch.decode import ImageError, decode_digit, to_mnist


def png(image: np.ndarray) -> bytes:
    return cv2.imencode(".png", image)[1].tobytes()


def test_28x28_grayscale_digit_passes_through_unchanged(sample):
    for digit in sample.x_test[:20]:
        np.testing.assert_array_equal(decode_digit(png(digit)), digit)


def test_dark_on_light_is_inverted_and_colour_is_grey(sample):
    digit = sample.x_test[0]
    np.testing.assert_array_equal(decode_digit(png(255 - digit)), digit)
    np.testing.assert_array_equal(decode_digit(png(255 - digit), invert="never"), 255 - digit)
    np.testing.assert_array_equal(decode_digit(png(digit), invert="always"), 255 - digit)
    bgr = cv2.cvtColor(255 - digit, cv2.COLOR_GRAY2BGR)
    np.testing.assert_array_equal(decode_digit(png(bgr)), digit)


def test_transparent_background_is_composited_over_white(sample):
    digit = sample.x_test[3]
    rgba = np.zeros((28, 28, 4), np.uint8)  # black ink, alpha = ink strength, transparent page
    rgba[:, :, 3] = digit
    np.testing.assert_array_equal(decode_digit(png(rgba)), digit)


def test_sixteen_bit_png(sample):
    digit = sample.x_test[5]
    np.testing.assert_array_equal(decode_digit(png(digit.astype(np.uint16) * 257)), digit)


def test_large_image_is_cropped_fit_to_20x20_and_centred():
    canvas = np.zeros((300, 200), np.uint8)
    canvas[40:240, 20:60] = 255  # a tall bar off to the left
    digit = to_mnist(canvas)
    rows, cols = np.nonzero(digit > 127)
    assert rows.max() - rows.min() + 1 == 20  # fit into 20x20 keeping aspect: 20 tall, 4 wide
    assert 3 <= cols.max() - cols.min() + 1 <= 5
    cy, cx = np.average(np.indices(digit.shape), axis=(1, 2), weights=digit.astype(float))
    assert abs(cy - 13.5) <= 1 and abs(cx - 13.5) <= 1  # centre of mass in the middle


def test_blank_image_is_all_black():
    assert not decode_digit(png(np.full((50, 50), 255, np.uint8))).any()


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "empty file"),
        (b"GIF89a not really", "not a decodable image"),
        (png(np.zeros((40, 40), np.uint8))[:60], "not a decodable image"),
        (cv2.imencode(".jpg", np.zeros((40, 40), np.uint8))[1].tobytes()[:200], "truncated"),  # cut inside its headers: the decoder says corrupt or truncated
    ],
    ids=["empty", "corrupt", "truncated-png", "truncated-jpeg"],
)
def test_bad_bytes(data, message):
    with pytest.raises(ImageError, match=message):
        decode_digit(data)


def test_decompression_bomb_is_refused_before_allocating():
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    # A valid header claiming 60000 x 60000 (3.6 gigapixels), with a tiny body.
    header = chunk(b"IHDR", struct.pack(">IIBBBBB", 60000, 60000, 8, 0, 0, 0, 0))
    bomb = b"\x89PNG\r\n\x1a\n" + header + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b"")
    with pytest.raises(ImageError, match="larger than the 40,000,000-pixel cap"):
        decode_digit(bomb)
