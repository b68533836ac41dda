"""Digits as forms deliver them, and how well the committed models read them, before and after
decode's form cleaning (batch/forms.py).

    python benchmarks/forms.py                 # docs/classify.md's table: MNIST t10k digits, 1,000 per kind
    python benchmarks/forms.py --time          # per-image decode cost, 64x64 and 256x256, with and without cleaning

Each kind is the same genuine t10k digits (digits the committed models never saw in training),
written dark on light paper (paper 215..255, ink 0..60) at 64, 96, 128 or 256 pixels a side,
with one artefact added; "alone" is those digits with nothing added, the mark every other kind
is held to. Lines are 1/64, 2/64 or 3/64 of the side thick and dark 0..120 (printed). Sizes,
weights, positions and darkness are drawn per image from a fixed seed, so the set repeats.

- box: a rectangle 0..7% of the side in from the edges; grid cell: a line 0..5% in from each edge;
  with a cut neighbour: the next digit's ink reaching 4..12% of the side in across one of them;
- base line: under the digit, touching it or up to 4% below; comb field: that, with ticks
  20..40% of the side tall at its ends; six specks: discs of radius 1..side/40 anywhere;
- finer / heavier pen: the digit eroded / dilated 3x3 at 64 pixels, then scaled;
- JPEG quality 30: "alone" so saved; off-centre: the digit at 40..70% of the side, anywhere;
- empty box, grid cell, comb field: those with no digit (read as blank: all zeros).
"""

import argparse
import statistics
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SIZES = (64, 96, 128, 256)
WEIGHTS = (1 / 64, 2 / 64, 3 / 64)  # line thickness, as a share of the side
KINDS = ("alone", "box", "grid cell", "grid cell, cut neighbour", "base line", "comb field", "six specks",
         "finer pen", "heavier pen", "JPEG quality 30", "off-centre")
EMPTY = ("empty box", "empty grid cell", "empty comb field")


def _coverage(digit: np.ndarray, side: int, size: int, top: int, left: int) -> np.ndarray:
    """float32 [side, side]: the digit enlarged to size x size with its corner at (top, left); 0 = page, 1 = ink."""
    big = cv2.resize(digit, (size, size), interpolation=cv2.INTER_LINEAR).astype(np.float32) / 255
    page = np.zeros((side + 2 * size, side + 2 * size), np.float32)  # room to place it partly outside
    page[size + top : 2 * size + top, size + left : 2 * size + left] = big
    return page[size : size + side, size : size + side]


def _lines(side: int, draw) -> np.ndarray:
    """float32 [side, side] coverage of what draw(canvas) paints (antialiased, 255 = ink)."""
    canvas = np.zeros((side, side), np.uint8)
    draw(canvas)
    return canvas.astype(np.float32) / 255


def form_image(kind: str, digit: np.ndarray, other: np.ndarray, rng: np.random.Generator, side: int = 0) -> bytes:
    """One image file (PNG; JPEG for the JPEG kind) of `digit` as `kind` shows it; `other` is a neighbour.
    `side`: the image's size (default: one of SIZES, drawn)."""
    side = side or int(rng.choice(SIZES))
    t = max(1, round(side * float(rng.choice(WEIGHTS))))
    ink = _coverage(digit, side, side, 0, 0) if kind not in EMPTY else np.zeros((side, side), np.float32)
    lines = np.zeros_like(ink)
    aa = cv2.LINE_AA
    if kind in ("box", "empty box"):
        m = int(rng.integers(0, int(0.07 * side) + 1))
        lines = _lines(side, lambda c: cv2.rectangle(c, (m, m), (side - 1 - m, side - 1 - m), 255, t, aa))
    elif kind.startswith("grid cell") or kind == "empty grid cell":
        at = rng.integers(0, int(0.05 * side) + 1, 4)  # each line's distance from its edge

        def grid(c):
            cv2.line(c, (0, int(at[0])), (side - 1, int(at[0])), 255, t, aa)
            cv2.line(c, (0, side - 1 - int(at[1])), (side - 1, side - 1 - int(at[1])), 255, t, aa)
            cv2.line(c, (int(at[2]), 0), (int(at[2]), side - 1), 255, t, aa)
            cv2.line(c, (side - 1 - int(at[3]), 0), (side - 1 - int(at[3]), side - 1), 255, t, aa)
        lines = _lines(side, grid)
        if kind.endswith("cut neighbour"):  # a neighbour's digit written over the line, cut by the crop
            depth = int(rng.integers(int(0.04 * side), int(0.12 * side) + 1))  # how far it reaches in
            shift = side - round(0.14 * side) - depth  # its ink starts 4/28 into its own enlarged field
            where = [(0, -shift), (0, shift), (-shift, 0), (shift, 0)][int(rng.integers(4))]
            ink = np.maximum(ink, _coverage(other, side, side, *where))
    elif kind in ("base line", "comb field", "empty comb field"):
        rows = np.flatnonzero((ink > 0.2).any(axis=1))
        y = (rows[-1] if len(rows) else int(0.86 * side)) + int(rng.integers(-t // 2, int(0.04 * side) + 1))
        x0, x1 = int(rng.integers(0, int(0.05 * side) + 1)), side - 1 - int(rng.integers(0, int(0.05 * side) + 1))
        tick = int(rng.uniform(0.2, 0.4) * side)

        def base(c):
            cv2.line(c, (x0, y), (x1, y), 255, t, aa)
            if kind != "base line":
                cv2.line(c, (x0, y), (x0, y - tick), 255, t, aa)
                cv2.line(c, (x1, y), (x1, y - tick), 255, t, aa)
        lines = _lines(side, base)
    elif kind == "six specks":
        def specks(c):
            for _ in range(6):
                r = int(rng.integers(1, max(1, side // 40) + 1))
                cv2.circle(c, (int(rng.integers(0, side)), int(rng.integers(0, side))), r, 255, -1, aa)
        lines = _lines(side, specks)
    elif kind in ("finer pen", "heavier pen"):  # a pixel off (on) each side of the stroke at 64, scaled
        at64 = _coverage(digit, 64, 64, 0, 0)
        at64 = cv2.erode(at64, np.ones((3, 3), np.uint8)) if kind == "finer pen" else cv2.dilate(at64, np.ones((3, 3)))
        ink = cv2.resize(at64, (side, side), interpolation=cv2.INTER_LINEAR)
    elif kind == "off-centre":
        size = int(rng.uniform(0.4, 0.7) * side)
        ink = _coverage(digit, side, size, int(rng.integers(0, side - size + 1)), int(rng.integers(0, side - size + 1)))
    paper, ink_level, line_level = rng.uniform(215, 255), rng.uniform(0, 60), rng.uniform(0, 120)
    gray = paper - np.maximum(ink * (paper - ink_level), lines * (paper - line_level))
    gray = np.clip(np.rint(gray), 0, 255).astype(np.uint8)
    if kind == "JPEG quality 30":
        return cv2.imencode(".jpg", gray, [cv2.IMWRITE_JPEG_QUALITY, 30])[1].tobytes()
    return cv2.imencode(".png", gray)[1].tobytes()


def form_set(kind: str, digits: np.ndarray, seed: int = 0, side: int = 0) -> list[bytes]:
    """The image files of `digits` as `kind` shows them; each digit's neighbour is the next digit."""
    rng = np.random.default_rng([seed, (KINDS + EMPTY).index(kind), side])
    return [form_image(kind, d, digits[(i + 1) % len(digits)], rng, side) for i, d in enumerate(digits)]


def t10k(count: int) -> tuple[np.ndarray, np.ndarray]:
    from digits.trainer.data.idx import IMAGES_MAGIC, LABELS_MAGIC, read_idx

    folder = ROOT / "data" / "mnist"
    return (read_idx(folder / "t10k-images-idx3-ubyte", IMAGES_MAGIC)[:count],
            read_idx(folder / "t10k-labels-idx1-ubyte", LABELS_MAGIC)[:count])


def accuracy_table(count: int) -> None:
    from digits.batch.decode import NO_CLEAN, decode_digits
    from digits.batch.model import OnnxClassifier

    digits, labels = t10k(count)
    models = {name: OnnxClassifier(ROOT / "tests" / "data" / f"{name}.onnx") for name in ("cnn", "mlp")}
    print(f"{count:,} t10k digits per kind; accuracy with --no-clean → with cleaning\n")
    print("| kind | CNN | MLP |\n|---|---|---|")
    png = [cv2.imencode(".png", d)[1].tobytes() for d in digits]
    scores = {name: (m.predict(decode_digits(png)[0]).argmax(1) == labels).mean() for name, m in models.items()}
    print(f"| MNIST's own 28x28 PNGs | {scores['cnn']:.3f} | {scores['mlp']:.3f} |")
    for kind in KINDS:
        blobs = form_set(kind, digits)
        before, after = decode_digits(blobs, "auto" + NO_CLEAN)[0], decode_digits(blobs)[0]
        right = [[(m.predict(d).argmax(1) == labels).mean() for d in (before, after)] for m in models.values()]
        cells = [f"{was:.3f} → {now:.3f}" for was, now in right]
        print(f"| {kind} | {' | '.join(cells)} |")
    print("\nread as blank (all zeros, as a blank page), --no-clean → with cleaning:")
    for kind in EMPTY:
        blobs = form_set(kind, digits[:200])
        before, after = decode_digits(blobs, "auto" + NO_CLEAN)[0], decode_digits(blobs)[0]
        print(f"  {kind}: {(~before.any(axis=(1, 2))).mean():.3f} → {(~after.any(axis=(1, 2))).mean():.3f}")


def cost(reps: int) -> None:
    """Median microseconds per image, cleaning and not, interleaved so that both see the same machine."""
    from digits.batch.decode import decode_digit

    digits, _ = t10k(100)
    order = np.random.default_rng(0)
    for side in (64, 256):
        for kind in ("alone", "box"):
            blobs = form_set(kind, digits, side=side)
            times = {False: [], True: []}
            for _ in range(reps):
                for clean in order.permutation([False, True]):
                    start = time.perf_counter()
                    for b in blobs:
                        decode_digit(b, "auto", bool(clean))
                    times[bool(clean)].append((time.perf_counter() - start) / len(blobs) * 1e6)
            today, cleaned = statistics.median(times[False]), statistics.median(times[True])
            print(f"| {side}x{side} PNG, {kind} | {today:.0f} | {cleaned:.0f} | {cleaned / today:.2f}x |")
    print(f"(microseconds per image: medians of {reps} interleaved runs over 100 images each)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--digits", type=int, default=1000, help="t10k digits per kind")
    parser.add_argument("--time", action="store_true", help="measure the per-image cost instead")
    parser.add_argument("--reps", type=int, default=51)
    args = parser.parse_args()
    cost(args.reps) if args.time else accuracy_table(args.digits)


if __name__ == "__main__":
    main()
