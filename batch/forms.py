"""Form artefacts out of a digit's image: ruled lines, comb ticks, specks, cut neighbours; then a finer
pen's strokes widened. The steps, and why a digit's own strokes survive them, are docs/classify.md's
"Forms"; web/digits.js takes the same steps."""

import cv2
import numpy as np

LINE_RUN = 0.8  # a straight run of ink this share of the image's width (or height) is a printed line
KEEP_SHARE = 0.1  # another piece of ink stays if its area is at least this share of the digit's
NEAR = 0.1  # ... and its box is at most this share of the image's larger side from the digit's box
EDGE_WEIGHT = 0.5  # a piece touching the image's edge counts this much of its area when choosing the digit
DUST = 0.001  # a piece under this share of the image's area is dust, never the digit
# Strokes finer than this at MNIST's 20x20 fit, as stroke_width measures them, are widened to it: a little
# under t10k's own digits (median 2.4), as 2.5 read a finer pen better but digits in fonts worse (docs/decisions.md).
MNIST_STROKE = 2.25
_RIM = np.ones((3, 3), np.uint8)


def page_levels(gray: np.ndarray) -> tuple[int, int, int]:
    """(median, lower quartile, upper quartile) of the image's grey levels (the lower value between
    two ranks). The median says whether the page is light, a quartile is its level: the whole
    image's (a grid cell's border is all lines), a quartile (ink and its rim may cover half)."""
    counts = np.cumsum(cv2.calcHist([gray], [0], None, [256], [0, 256]).ravel())
    ranks = np.array([(gray.size - 1) // 2, (gray.size - 1) // 4, gray.size - 1 - (gray.size - 1) // 4])
    return tuple(np.searchsorted(counts, ranks + 1).tolist())


def line_run(size: int) -> int:
    """The kernel length for lines across `size` pixels: odd, so that opening keeps exactly the runs this long."""
    return int(np.ceil(LINE_RUN * size)) | 1


def long_runs(ink: np.ndarray, run: int, across: bool) -> tuple[np.ndarray, np.ndarray]:
    """(lines, runs): the rows (across) or columns of uint8 0/1 `ink` holding a run of at least `run`
    ink pixels, and those rows [len(lines), W] (columns [H, len(lines)]) holding only such runs,
    as an opening with a line kernel leaves them (only rows with that much ink are opened)."""
    counts = cv2.reduce(ink, 1 if across else 0, cv2.REDUCE_SUM, dtype=cv2.CV_32S).ravel()
    lines = np.flatnonzero(counts >= run)
    if not len(lines):
        return lines, ink[:0] if across else ink[:, :0]
    # Columns are opened as rows (transposed): OpenCV's row filter is ten times its column filter here.
    some = ink[lines] if across else np.ascontiguousarray(ink[:, lines].T)
    runs = cv2.morphologyEx(some, cv2.MORPH_OPEN, np.ones((1, run), np.uint8), borderType=cv2.BORDER_CONSTANT,
                            borderValue=0)
    found = runs.any(axis=1)
    return lines[found], runs[found] if across else runs[found].T


def remove_artefacts(gray: np.ndarray, level: float) -> np.ndarray:
    """uint8 [H, W] white ink on a page of 0, contrast normalised -> the same with form lines, specks
    and cut neighbours set to 0 (`gray` itself when there is nothing to take out). Ink is what is
    brighter than `level` (not a share of the brightest: a line darker than the digit changes nothing)."""
    h, w = gray.shape
    ink = cv2.threshold(gray, level, 1, cv2.THRESH_BINARY)[1]
    # Pieces are labelled within the box holding them: the page around costs nothing.
    left, top, width, height = cv2.boundingRect(ink)
    rows = cols = np.zeros(0, np.intp)
    if width >= line_run(w) or height >= line_run(h):  # else no line fits: a digit framed as MNIST frames it
        rows, across = long_runs(ink, line_run(w), True)
        cols, down = long_runs(ink, line_run(h), False)
    lined = bool(len(rows) or len(cols))
    rest = ink
    if lined:
        rest = ink.copy()
        rest[rows] &= 1 - across
        rest[:, cols] &= 1 - down
        left, top, width, height = cv2.boundingRect(rest)
    if width == 0:  # nothing but lines
        return np.zeros_like(gray)
    box = rest[top : top + height, left : left + width]
    # 16-bit labels where they cannot run out: OpenCV's statistics are twice as fast on them.
    ltype = cv2.CV_16U if box.size < 1 << 16 else cv2.CV_32S
    # No lines: most such images are one piece, and OpenCV 5's labelling alone costs an eighth
    # of its labelling with statistics on large images (docs/decisions.md).
    if not lined and cv2.connectedComponents(box, connectivity=8, ltype=ltype)[0] == 2:
        return gray if cv2.countNonZero(box) >= DUST * h * w else np.zeros_like(gray)  # the digit, or dust alone
    _, labels, stats, _ = cv2.connectedComponentsWithStats(box, connectivity=8, ltype=ltype)
    x, y, bw, bh, area = stats[1:, 0] + left, stats[1:, 1] + top, stats[1:, 2], stats[1:, 3], stats[1:, 4]
    part = area >= DUST * h * w  # what could be the digit or a piece of it
    if len(rows) and (part & (bw <= 2 * len(rows) + 1)).any():  # a piece as thin as a line could be: a tick?
        part &= ~_ticks(rows, across, x, y, bw, bh)
    if not part.any():  # nothing but lines and dust: an empty box or cell
        return np.zeros_like(gray)
    (frame_top, frame_bottom), (frame_left, frame_right) = _frame(rows, h), _frame(cols, w)
    edge = (x <= frame_left) | (y <= frame_top) | (x + bw - 1 >= frame_right) | (y + bh - 1 >= frame_bottom)
    digit = int(np.argmax(np.where(part, np.where(edge, area * EDGE_WEIGHT, area), -1)))
    gap_x = np.maximum(0, np.maximum(x, x[digit]) - np.minimum(x + bw, x[digit] + bw[digit]))
    gap_y = np.maximum(0, np.maximum(y, y[digit]) - np.minimum(y + bh, y[digit] + bh[digit]))
    kept = part & (area >= KEEP_SHARE * area[digit]) & (np.maximum(gap_x, gap_y) <= NEAR * max(h, w)) & ~edge
    kept[digit] = True
    if kept.all() and not lined:
        return gray
    kept_ink = np.zeros_like(ink)
    kept_ink[top : top + height, left : left + width] = np.take(np.concatenate([[0], kept]).astype(np.uint8), labels)
    cleared = cv2.dilate(ink & ~kept_ink, _RIM) & ~kept_ink
    out = gray.copy()
    out[cleared.view(bool)] = 0
    return out


def stroke_width(ink: np.ndarray) -> float:
    """uint8 0/1 `ink` (not empty) -> its strokes' mean width: 2 x area / edge pixels (ink with page
    among its 8 neighbours), as a stroke w by L has 2L edge pixels. Strokes 1 or 2 wide measure 2."""
    area = cv2.countNonZero(ink)
    inner = cv2.countNonZero(cv2.erode(ink, _RIM, borderType=cv2.BORDER_CONSTANT, borderValue=0))
    return 2 * area / (area - inner)


def thicken(ink: np.ndarray, threshold: float, scale: float) -> np.ndarray:
    """uint8 [h, w] white ink on 0, cropped to what is brighter than `threshold`, to be fit at `scale`
    -> its strokes widened (a square max filter; the array grows with them) to about MNIST_STROKE
    after that fit; `ink` itself when at most half a pixel short of it."""
    grow = round(MNIST_STROKE / scale - stroke_width((ink > threshold).view(np.uint8)))
    if grow < 1:
        return ink
    after = (grow + 1) // 2  # OpenCV's anchor: the filter reaches this far right and down, grow - after left and up
    padded = cv2.copyMakeBorder(ink, grow - after, after, grow - after, after, cv2.BORDER_CONSTANT, value=0)
    return cv2.dilate(padded, np.ones((grow + 1, grow + 1), np.uint8))


def _frame(lines: np.ndarray, size: int) -> tuple[int, int]:
    """The first and last row (column) inside the lines within NEAR of the image's two edges (a grid
    cell's, a box's frame, whose ink counts as the edge's); 0 and size - 1 where there is none."""
    near = NEAR * size
    first = lines[lines < near]
    last = lines[lines > size - 1 - near]
    return (int(first.max()) + 1 if len(first) else 0), (int(last.min()) - 1 if len(last) else size - 1)


def _ticks(rows: np.ndarray, across: np.ndarray, x, y, bw, bh) -> np.ndarray:
    """bool [pieces]: which pieces (boxes x, y, bw, bh) are about as thin as a horizontal line
    (long_runs' rows and runs) and stand on, or hang from, one of its ends: a comb field's ticks."""
    # The lines' rows stacked, a blank row wherever rows are not adjacent: the same pieces, far fewer pixels.
    at = np.arange(len(rows)) + np.concatenate([[0], np.cumsum(np.diff(rows) > 1)])
    stacked = np.zeros((at[-1] + 1, across.shape[1]), np.uint8)
    stacked[at] = across
    row_of = np.zeros(len(stacked), np.int64)
    row_of[at] = rows
    _, _, lines, _ = cv2.connectedComponentsWithStats(stacked, connectivity=8)
    lx, ly, lw, lh = lines[1:, 0, None], row_of[lines[1:, 1, None]], lines[1:, 2, None], lines[1:, 3, None]
    touching = (y + bh >= ly) & (y <= ly + lh)  # its rows meet the line's, or the row above or below
    at_end = [(x <= end + lh) & (x + bw - 1 >= end - lh) for end in (lx, lx + lw - 1)]
    thin = bw <= 2 * lh + 1  # about as thick as the line: a digit's piece is wider
    return (touching & thin & (at_end[0] | at_end[1])).any(axis=0)
