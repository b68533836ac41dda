"""Images of any size and mode come out as MNIST-style digits."""

import os

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

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
    # MNIST's centre of mass is (14, 14); placement moves in whole pixels, so within half a pixel.
    assert abs(cy - 14) <= 0.5 and abs(cx - 14) <= 0.5, (cy, cx)


def test_off_centre_digits_land_on_mnists_centre_of_mass(sample):
    """Real digits drawn anywhere on a larger page end up centred where MNIST centres them."""
    for digit in sample.x_test[:50]:
        page = np.zeros((90, 70), np.uint8)
        page[5:61, 30:58] = cv2.resize(digit, (28, 56), interpolation=cv2.INTER_LINEAR)
        placed = to_mnist(page)
        cy, cx = np.average(np.indices(placed.shape), axis=(1, 2), weights=placed.astype(float))
        assert abs(cy - 14) <= 0.5 and abs(cx - 14) <= 0.5, (cy, cx)


def test_blank_image_is_all_black():
    assert not decode_digit(png(np.full((50, 50), 255, np.uint8))).any()


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "empty file"),
        (b"this is not an image at all", "not a decodable image"),
        (b"GIF89a\x10\x00\x10\x00 but no image data", "not a decodable image"),
        (png(np.zeros((40, 40), np.uint8))[:60], "not a decodable image"),
        (cv2.imencode(".jpg", np.zeros((40, 40), np.uint8))[1].tobytes()[:200], "truncated"),  # cut inside its headers: the decoder says corrupt or truncated
    ],
    ids=["empty", "unknown", "corrupt-gif", "truncated-png", "truncated-jpeg"],
)
def test_bad_bytes(data, message):
    with pytest.raises(ImageError, match=message):
        decode_digit(data)


def _png_header_claiming(width: int, height: int) -> bytes:
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + header + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b"")


def test_decompression_bomb_is_refused_before_allocating():
    with pytest.raises(ImageError, match="larger than the 40,000,000-pixel cap"):
        decode_digit(_png_header_claiming(60000, 60000))


def test_pixel_cap_holds_when_cv2_was_imported_first():
    """48 Mpx: over our 40 Mpx cap, under OpenCV's 1 Gpx default. OpenCV reads its cap once, at
    import; a process that imported cv2 before us must still be refused, before any allocation."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    code = (
        "import cv2, resource, sys\n"  # cv2 first: OpenCV's own cap is now its 1 Gpx default
        "from tests.batch.test_decode import _png_header_claiming\n"
        "from batch.decode import ImageError, decode_digit\n"
        "bomb = _png_header_claiming(8000, 6000)\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "try:\n    decode_digit(bomb)\nexcept ImageError as e:\n    print(e)\n"
        "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)\n"
    )
    # Not inherited from this process, which imported batch.decode and so set it.
    env = {k: v for k, v in os.environ.items() if k != "OPENCV_IO_MAX_IMAGE_PIXELS"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env)
    message, grown_mb = result.stdout.splitlines()
    assert "8,000x6,000 pixels, larger than the 40,000,000-pixel cap" in message, result.stdout + result.stderr
    assert int(grown_mb) < 16  # decoding it would allocate 48 MB (gray) before failing


@pytest.mark.parametrize("ext", [".png", ".jpg", ".bmp", ".tiff", ".webp", ".pgm", ".ppm", ".pbm", ".gif"])
def test_header_size_is_read_for_every_accepted_format(ext, sample):
    from batch.imagesize import image_size

    page = cv2.resize(255 - sample.x_test[0], (37, 23))
    if ext == ".gif":
        import io

        from PIL import Image

        buffer = io.BytesIO()
        Image.fromarray(page).save(buffer, format="GIF")
        data = buffer.getvalue()
    else:
        image = cv2.cvtColor(page, cv2.COLOR_GRAY2BGR) if ext == ".ppm" else page
        data = cv2.imencode(ext, image)[1].tobytes()
    assert image_size(data) == (37, 23)
    assert decode_digit(data).shape == (28, 28)
    if ext == ".webp":
        lossless = cv2.imencode(ext, page, [cv2.IMWRITE_WEBP_QUALITY, 101])[1].tobytes()
        assert image_size(lossless) == (37, 23)


@settings(max_examples=60, deadline=None)
@given(pixels=arrays(np.uint8, (28, 28)), invert=st.sampled_from(["auto", "always", "never"]),
       border=st.sampled_from([0, 255, None]))
def test_the_28x28_png_fast_path_decodes_as_the_general_path(pixels, invert, border):
    """A 28x28 grayscale PNG goes straight into its block (and --invert auto is one numpy pass
    over the block); byte for byte the digit decode_digit gives for the same file."""
    from batch.decode import decode_digit, decode_digits

    if border is not None:  # a light or dark page, so that --invert auto decides both ways
        pixels = pixels.copy()
        pixels[[0, -1], :] = border
        pixels[:, [0, -1]] = border
    png = cv2.imencode(".png", pixels)[1].tobytes()
    fast, errors = decode_digits([png, png], invert)
    assert errors == [None, None]
    np.testing.assert_array_equal(fast[0], decode_digit(png, invert))
    np.testing.assert_array_equal(fast[1], fast[0])
