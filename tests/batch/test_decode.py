"""Images of any size and mode come out as MNIST-style digits."""

import os

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from digits.batch.decode import ImageError, decode_digit, to_mnist


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
        # cut inside its headers: the decoder says corrupt or truncated
        (cv2.imencode(".jpg", np.zeros((40, 40), np.uint8))[1].tobytes()[:200], "truncated"),
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
        "from digits.batch.decode import ImageError, decode_digit\n"
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
    from digits.batch.imagesize import image_size

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
    from digits.batch.decode import decode_digit, decode_digits

    if border is not None:  # a light or dark page, so that --invert auto decides both ways
        pixels = pixels.copy()
        pixels[[0, -1], :] = border
        pixels[:, [0, -1]] = border
    png = cv2.imencode(".png", pixels)[1].tobytes()
    fast, errors = decode_digits([png, png], invert)
    assert errors == [None, None]
    np.testing.assert_array_equal(fast[0], decode_digit(png, invert))
    np.testing.assert_array_equal(fast[1], fast[0])


# ---- form artefacts (batch/forms.py) ----


def on_paper(digit: np.ndarray, side: int = 64, field: int = 48) -> np.ndarray:
    """A genuine digit written dark on white paper side x side, its 28x28 field enlarged to
    field x field in the middle (MNIST's own framing when field == side)."""
    page = np.zeros((side, side), np.uint8)
    at = (side - field) // 2
    page[at : at + field, at : at + field] = cv2.resize(digit, (field, field), interpolation=cv2.INTER_LINEAR)
    return 255 - page


def alone_and(draw, digits: np.ndarray, side: int = 64) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(alone, with the artefact, with it under --no-clean): each digit decoded from a PNG on paper, and on
    the same paper after draw(image) adds a form's artefacts."""
    from digits.batch.decode import NO_CLEAN, decode_digits

    plain = [on_paper(d, side) for d in digits]
    marked = [draw(p.copy()) for p in plain]
    return (decode_digits([png(p) for p in plain])[0], decode_digits([png(m) for m in marked])[0],
            decode_digits([png(m) for m in marked], "auto" + NO_CLEAN)[0])


def box(image, margin=2, weight=2):
    side = image.shape[0]
    return cv2.rectangle(image, (margin, margin), (side - 1 - margin, side - 1 - margin), 0, weight)


def grid_cell(image, weight=2):
    side = image.shape[0]
    for at in (0, side - 1):
        cv2.line(image, (0, at), (side - 1, at), 0, weight)
        cv2.line(image, (at, 0), (at, side - 1), 0, weight)
    return image


def specks(image):
    for y, x in ((4, 5), (58, 6), (7, 57), (60, 60), (3, 30), (33, 61)):
        cv2.circle(image, (x, y), 1, 0, -1)
    return image


@pytest.mark.parametrize("draw", [box, grid_cell, specks], ids=["box", "grid cell", "specks"])
def test_boxes_grid_lines_and_specks_apart_from_the_digit_are_taken_out(draw, sample):
    alone, cleaned, raw = alone_and(draw, sample.x_test[:100])
    np.testing.assert_array_equal(cleaned, alone)  # byte for byte the digit alone on the page
    assert (raw != alone).any(axis=(1, 2)).mean() > 0.9  # --no-clean: today's crop, artefacts and all


def test_a_base_line_under_the_digit_is_taken_out(sample):
    """The line touches the digit (it is written on it): the digit loses the pixels it shares with
    the line, and keeps its label with the committed CNN."""
    from digits.batch.model import OnnxClassifier
    from tests.conftest import COMMITTED_CNN

    digits, labels = sample.x_test[:300], sample.y_test[:300]

    def underline(image):
        bottom = np.flatnonzero((image < 128).any(axis=1))[-1]
        return cv2.line(image, (2, int(bottom)), (61, int(bottom)), 0, 2)

    alone, cleaned, raw = alone_and(underline, digits)
    model = OnnxClassifier(COMMITTED_CNN)
    right = {name: (model.predict(d).argmax(1) == labels).mean() for name, d in
             (("alone", alone), ("cleaned", cleaned), ("raw", raw))}
    assert right["cleaned"] >= right["alone"] - 0.02 and right["raw"] < right["alone"] - 0.3, right


def test_an_empty_box_cell_or_comb_is_blank_as_a_blank_page_is():
    blank = decode_digit(png(np.full((64, 64), 255, np.uint8)))
    assert not blank.any()
    page = np.full((96, 96), 240, np.uint8)
    comb = cv2.line(page.copy(), (3, 80), (92, 80), 20, 2)
    comb = cv2.line(cv2.line(comb, (3, 80), (3, 55), 20, 2), (92, 80), (92, 55), 20, 2)
    for image in (box(page.copy(), 4, 3), grid_cell(page.copy(), 1), comb):
        np.testing.assert_array_equal(decode_digit(png(image)), blank)
        assert decode_digit(png(image), clean=False).any()  # --no-clean: the lines are the "digit"


@pytest.mark.parametrize("side", [64, 256])
def test_a_clean_digits_own_long_strokes_survive(side, sample, monkeypatch):
    """Every 1, 4 and 7 of the sample's test digits, alone on the page as MNIST frames them (the
    digit up to 20/28 of the side): no stroke is taken for a line, and taking artefacts out (pen
    width left as it is) changes no label."""
    from digits.batch import decode as decode_module
    from digits.batch.decode import NO_CLEAN, decode_digits
    from digits.batch.forms import line_run, long_runs
    from digits.batch.model import OnnxClassifier
    from tests.conftest import COMMITTED_CNN

    digits = sample.x_test[np.isin(sample.y_test, (1, 4, 7))]
    pages = [on_paper(d, side, side) for d in digits]
    for page in pages:
        ink = (255 - page > 51).view(np.uint8)
        assert not len(long_runs(ink, line_run(side), True)[0]) and not len(long_runs(ink, line_run(side), False)[0])
    blobs = [png(p) for p in pages]
    model = OnnxClassifier(COMMITTED_CNN)
    monkeypatch.setattr(decode_module, "thicken", lambda ink, threshold, scale: ink)
    cleaned, raw = decode_digits(blobs)[0], decode_digits(blobs, "auto" + NO_CLEAN)[0]
    np.testing.assert_array_equal(model.predict(cleaned).argmax(1), model.predict(raw).argmax(1))


def test_a_finer_pen_is_widened_to_mnists_strokes_and_a_heavier_one_left(sample, monkeypatch):
    """A finer pen's digits (benchmarks/forms.py) come out with more of MNIST's ink: at least 0.7 of
    the median 28x28 digit's sum, where --no-clean's have under 0.65. A heavier pen's are not widened."""
    from benchmarks.forms import form_set
    from digits.batch import decode as decode_module
    from digits.batch.decode import NO_CLEAN, decode_digits

    digits = sample.x_test[:200]
    mnist = np.median(digits.sum(axis=(1, 2)))
    finer, heavier = form_set("finer pen", digits, seed=28), form_set("heavier pen", digits, seed=28)
    assert np.median(decode_digits(finer)[0].sum(axis=(1, 2))) >= 0.7 * mnist
    assert np.median(decode_digits(finer, "auto" + NO_CLEAN)[0].sum(axis=(1, 2))) < 0.65 * mnist
    cleaned = decode_digits(heavier)[0]
    monkeypatch.setattr(decode_module, "thicken", lambda ink, threshold, scale: ink)
    np.testing.assert_array_equal(cleaned, decode_digits(heavier)[0])


def test_stroke_width_and_thicken():
    from digits.batch.forms import MNIST_STROKE, stroke_width, thicken

    bar = np.zeros((6, 52), np.uint8)
    bar[1:5, 1:51] = 1  # 4 rows of 50: 200 pixels, all but 2 x 48 of them on the edge
    assert stroke_width(bar) == 2 * 200 / 104
    thin = np.full((1, 50), 200, np.uint8)  # measures 2; at this scale MNIST's is 5 wide: 3 more, 1 up and 2 down
    widened = thicken(thin, 51, MNIST_STROKE / 5)
    np.testing.assert_array_equal(widened, np.full((4, 53), 200, np.uint8))
    wide = bar * 200  # 3.8 wide where MNIST's would be 3.4: left as it is
    assert thicken(wide, 51, MNIST_STROKE / 3.4) is wide


def test_the_28x28_fast_path_is_untouched_by_cleaning(sample):
    """MNIST's own 28x28 PNGs, and 28x28 images by the general path, are never cleaned."""
    from digits.batch.decode import NO_CLEAN, decode_digits

    digits = sample.x_test[:200]
    blobs = [png(d) for d in digits]
    np.testing.assert_array_equal(decode_digits(blobs)[0], digits)
    np.testing.assert_array_equal(decode_digits(blobs, "auto" + NO_CLEAN)[0], digits)
    boxed = [png(box(255 - d, 0, 1)) for d in digits[:20]]  # 28x28, a box along the edges: left as it is
    np.testing.assert_array_equal(decode_digits(boxed)[0], decode_digits(boxed, "auto" + NO_CLEAN)[0])


def test_no_clean_reaches_the_decoder_from_the_command_line(sample, tmp_path):
    from digits.batch.decode import decode_digit
    from digits.batch.model import OnnxClassifier
    from tests.conftest import COMMITTED_CNN, run_digits

    for i, d in enumerate(sample.x_test[:30]):
        cv2.imwrite(str(tmp_path / f"{i:02d}.png"), box(on_paper(d)))
    files = sorted(tmp_path.glob("*.png"))
    model = OnnxClassifier(COMMITTED_CNN)
    for flag, clean in (("--clean", True), ("--no-clean", False)):
        result = run_digits("classify", COMMITTED_CNN, tmp_path, flag, "--quiet")
        assert result.returncode == 0, result.stderr
        labels = [int(line.split(",")[1]) for line in result.stdout.splitlines()[1:]]
        expected = model.predict(np.stack([decode_digit(f.read_bytes(), clean=clean) for f in files])).argmax(1)
        np.testing.assert_array_equal(labels, expected)
