"""Form artefacts out of a digit's image: ruled lines, specks, cut neighbours.

Handwritten digits come from forms: boxes to write in, grid cells cut from a page, base
lines and comb fields, with dust on the scanner. These steps take them out before the
digit is cropped and fitted (batch/decode.py), the classic form-processing ones:

1. long straight lines: a row or column run of ink at least LINE_RUN of the image's width
   or height (morphological opening with a line kernel) is a printed line, not a stroke;
2. the digit: the largest piece of ink left (pieces touching the image's edge count half:
   they are likely a neighbour cut by the crop);
3. specks, marks and cut neighbours: another piece is kept only if it is at least
   KEEP_SHARE of the digit's area, lies within NEAR of the digit's box and does not touch
   the image's edge;
4. what was taken out is cleared with its faint rim (one pixel around it).

A digit's own strokes stay: MNIST's digits fill at most 20/28 of their field, short of
LINE_RUN. An image whose only ink is vertical lines keeps them: a lone upright stroke is a 1.
web/digits.js does each step the same way.
"""

import cv2
import numpy as np

LINE_RUN = 0.8  # a straight run of ink this share of the image's width (or height) is a printed line
KEEP_SHARE = 0.1  # another piece of ink stays if its area is at least this share of the digit's
NEAR = 0.1  # ... and its box is at most this share of the image's larger side from the digit's box
EDGE_WEIGHT = 0.5  # a piece touching the image's edge counts this much of its area when choosing the digit
DUST = 0.001  # a piece under this share of the image's area is dust, never the digit
_RIM = np.ones((3, 3), np.uint8)


def page_median(gray: np.ndarray) -> int:
    """The image's lower median grey level: the page's, wherever ink covers under half of it.
    (Judged from the whole image, not the border: a grid cell's border is all lines.)"""
    counts = cv2.calcHist([gray], [0], None, [256], [0, 256]).ravel()
    return int(np.searchsorted(np.cumsum(counts), (gray.size - 1) // 2 + 1))


def line_run(size: int) -> int:
    """The kernel length for lines across `size` pixels: odd, so that opening keeps exactly the
    runs at least this long."""
    return int(np.ceil(LINE_RUN * size)) | 1


def remove_artefacts(gray: np.ndarray, ink_fraction: float) -> np.ndarray:
    """uint8 [H, W] white ink on a page of 0 -> the same with form lines, specks and cut
    neighbours set to 0 (a new array, or `gray` itself when there is nothing to take out).
    Ink is what is brighter than ink_fraction of the brightest pixel. All of it lines: zeros."""
    peak = int(gray.max())
    if peak == 0:
        return gray
    h, w = gray.shape
    ink = (gray > peak * ink_fraction).view(np.uint8)
    keep = (cv2.BORDER_CONSTANT, 0)  # outside the image is page: a run must be long within it
    rows = cv2.morphologyEx(ink, cv2.MORPH_OPEN, np.ones((1, line_run(w)), np.uint8), borderType=keep[0],
                            borderValue=keep[1])
    cols = cv2.morphologyEx(ink, cv2.MORPH_OPEN, np.ones((line_run(h), 1), np.uint8), borderType=keep[0],
                            borderValue=keep[1])
    rest = ink & ~(rows | cols)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(rest, connectivity=8)
    x, y, bw, bh, area = (stats[1:, i] for i in range(5))
    part = area >= DUST * h * w  # what could be the digit or a piece of it
    if rows.any():
        part &= ~_ticks(rows, x, y, bw, bh)
    if not part.any():  # nothing but lines and dust: an empty box or cell
        return np.zeros_like(gray)
    edge = (x == 0) | (y == 0) | (x + bw == w) | (y + bh == h)
    digit = int(np.argmax(np.where(part, np.where(edge, area * EDGE_WEIGHT, area), -1)))
    gap_x = np.maximum(0, np.maximum(x, x[digit]) - np.minimum(x + bw, x[digit] + bw[digit]))
    gap_y = np.maximum(0, np.maximum(y, y[digit]) - np.minimum(y + bh, y[digit] + bh[digit]))
    kept = part & (area >= KEEP_SHARE * area[digit]) & (np.maximum(gap_x, gap_y) <= NEAR * max(h, w)) & ~edge
    kept[digit] = True
    if kept.all() and not (rows.any() or cols.any()):
        return gray
    kept_ink = np.concatenate([np.zeros(1, np.uint8), kept.view(np.uint8)])[labels]
    cleared = cv2.dilate(ink & ~kept_ink, _RIM) & ~kept_ink
    return np.where(cleared.view(bool), np.uint8(0), gray)


def _ticks(rows: np.ndarray, x, y, bw, bh) -> np.ndarray:
    """Which pieces (boxes x, y, bw, bh) are about as thin as a horizontal line in `rows` and
    stand on, or hang from, one of its ends: a comb field's ticks. bool [pieces]."""
    _, _, lines, _ = cv2.connectedComponentsWithStats(rows, connectivity=8)
    lx, ly, lw, lh = (lines[1:, i, None] for i in range(4))  # [lines, 1]: against every piece
    touching = (y + bh >= ly) & (y <= ly + lh)  # its rows meet the line's, or the row above or below
    at_end = [(x <= end + lh) & (x + bw - 1 >= end - lh) for end in (lx, lx + lw - 1)]
    thin = bw <= 2 * lh + 1  # about as thick as the line: a digit's piece is wider
    return (touching & thin & (at_end[0] | at_end[1])).any(axis=0)
