"""Is it a digit? Scores that tell MNIST digits from non-digits, measured on sets no model trained on.

    python benchmarks/ood.py [--models mlp,cnn] [--epochs-mlp N] [--epochs-cnn N] [--cache DIR]

Trains each model on full MNIST (data/mnist) twice, plain and with outlier exposure
(trainer/outliers.py), and prints, per score and per set, the AUROC against the t10k
digits and the share of non-digits accepted at the threshold that keeps 99% of the
validation digits; with t10k accuracy and the share of t10k rejected there.

The evaluation sets, each brought to MNIST's form by batch.decode.to_mnist:
- far: Fashion-MNIST (npm fashion-mnist@1.1.0), 500 per class;
- near: letters that look like no digit, in six @fontsource handwriting fonts;
- strokes: random-walk pen strokes (PIL lines);
- partial: t10k digits with half of their ink box cut away.
Training outliers come from other generators and another font (trainer/outliers.py).
`npm pack` fetches the packages into --cache the first time.
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from digits.batch.decode import to_mnist  # noqa: E402

EVAL_FONTS = ("caveat", "indie-flower", "shadows-into-light", "patrick-hand", "kalam", "homemade-apple")
NEAR_LETTERS = "ACEFHKMNPRTUVWXYkmnruvwx"
KEEP = 0.99  # the threshold keeps this share of the validation digits
CANVAS = 112


def npm_package(name: str, cache: Path) -> Path:
    """The unpacked npm package `name` (name@version) under `cache`, fetched once with npm pack."""
    folder = cache / name.replace("/", "+")
    if not folder.exists():
        cache.mkdir(parents=True, exist_ok=True)
        tgz = subprocess.run(["npm", "pack", name, "--silent"], cwd=cache, capture_output=True, text=True,
                             check=True).stdout.strip().splitlines()[-1]
        folder.mkdir()
        subprocess.run(["tar", "xzf", cache / tgz, "-C", folder], check=True)
    return folder / "package"


def fashion(cache: Path, per_class: int = 500) -> np.ndarray:
    clothes = npm_package("fashion-mnist@1.1.0", cache) / "src" / "clothes"
    rows = [np.asarray(json.loads((clothes / f"{c}.json").read_text())["data"][:per_class], np.uint8)
            for c in range(10)]
    images = np.concatenate(rows).reshape(-1, 28, 28)
    return np.stack([to_mnist(image, invert="never") for image in images])


def render(text: str, font_path: Path, rng: np.random.Generator) -> np.ndarray:
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("L", (CANVAS, CANVAS))
    font = ImageFont.truetype(str(font_path), int(rng.integers(56, 84)))
    ImageDraw.Draw(image).text((CANVAS / 2, CANVAS / 2), text, fill=255, font=font, anchor="mm")
    return to_mnist(np.asarray(image.rotate(rng.uniform(-10, 10))), invert="never")


def font_files(cache: Path) -> list[Path]:
    return [npm_package(f"@fontsource/{name}@5.3.0", cache) / "files" / f"{name}-latin-400-normal.woff"
            for name in EVAL_FONTS]


def in_fonts(chars: str, cache: Path, variants: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 [N, 28, 28], index into chars [N]): each char in each eval font, `variants` times."""
    rng = np.random.default_rng(seed)
    images, which = [], []
    for path in font_files(cache):
        for i, ch in enumerate(chars):
            for _ in range(variants):
                images.append(render(ch, path, rng))
                which.append(i)
    return np.stack(images), np.asarray(which)


def strokes(count: int, seed: int) -> np.ndarray:
    """Random-walk pen strokes: 2-3 strokes of 4-7 points each, 8-13 px wide on a 112 canvas."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        image = Image.new("L", (CANVAS, CANVAS))
        draw = ImageDraw.Draw(image)
        for _ in range(rng.integers(2, 4)):
            point = rng.uniform(20, CANVAS - 20, 2)
            points = [tuple(point)]
            for _ in range(rng.integers(3, 7)):
                point = np.clip(point + rng.normal(0, 22, 2), 5, CANVAS - 5)
                points.append(tuple(point))
            draw.line(points, fill=255, width=int(rng.integers(8, 14)), joint="curve")
        out.append(to_mnist(np.asarray(image), invert="never"))
    return np.stack(out)


def partial(digits: np.ndarray, seed: int) -> np.ndarray:
    """Each digit scaled to 84x84, half of its ink box (top, bottom, left or right) cut away, refitted."""
    import cv2

    rng = np.random.default_rng(seed)
    out = []
    for digit in digits:
        big = cv2.resize(digit, (84, 84), interpolation=cv2.INTER_LINEAR)
        rows = np.flatnonzero(big.any(axis=1))
        cols = np.flatnonzero(big.any(axis=0))
        side = rng.integers(4)
        if side < 2:
            mid = (rows[0] + rows[-1]) // 2
            big[: mid] = 0 if side == 0 else big[: mid]
            big[mid:] = 0 if side == 1 else big[mid:]
        else:
            mid = (cols[0] + cols[-1]) // 2
            big[:, : mid] = 0 if side == 2 else big[:, : mid]
            big[:, mid:] = 0 if side == 3 else big[:, mid:]
        out.append(to_mnist(big, invert="never"))
    return np.stack(out)


def auroc(digits: np.ndarray, others: np.ndarray) -> float:
    """P(score of a digit > score of a non-digit), ties counted half (the Mann-Whitney U)."""
    from scipy.stats import rankdata

    ranks = rankdata(np.concatenate([digits, others]))
    n, m = len(digits), len(others)
    return float((ranks[:n].sum() - n * (n + 1) / 2) / (n * m))


def scores(model, fit_digits, fit_labels, images_by_set: dict) -> dict:
    """{score name: {set name: float64 [N]}}: higher = more digit-like. Mahalanobis uses class
    means and one shared covariance of the penultimate features of `fit_digits`."""
    import keras

    from digits.trainer.model import model_input

    last = model.layers[-1]
    features_model = keras.Model(model.inputs, model.layers[-2].output)
    w, b = (np.asarray(v, np.float64) for v in last.get_weights())
    shape = tuple(model.inputs[0].shape)

    def features(images):
        return np.asarray(features_model.predict(model_input(images, shape), batch_size=1024, verbose=0), np.float64)

    f = features(fit_digits)
    means = np.stack([f[fit_labels == c].mean(0) for c in range(10)])
    centred = f - means[fit_labels]
    precision = np.linalg.pinv(centred.T @ centred / len(f) + 1e-6 * np.eye(f.shape[1]))
    out = {k: {} for k in ("max-softmax", "max-logit", "energy", "mahalanobis")}
    for name, images in images_by_set.items():
        feats = features(images)
        logits = feats @ w + b
        top = logits.max(1, keepdims=True)
        lse = top[:, 0] + np.log(np.exp(logits - top).sum(1))
        out["max-softmax"][name] = np.exp(top[:, 0] - lse)
        out["max-logit"][name] = top[:, 0]
        out["energy"][name] = lse
        # (f - mu)' P (f - mu) expanded: [N, D] @ [D, D] once, not per class.
        fp = feats @ precision
        centres = np.einsum("ci,ij,cj->c", means, precision, means)
        distance = (fp * feats).sum(1, keepdims=True) - 2 * fp @ means.T + centres
        out["mahalanobis"][name] = -distance.min(1)
        out.setdefault("_labels", {})[name] = logits.argmax(1)
        out.setdefault("_logits", {})[name] = logits
    return out


def with_calibrated(results: dict, validation_labels: np.ndarray) -> dict:
    """`results` with `calibrated max-softmax`: (max p - 0.1) / 0.9 of the probabilities calibrated
    with the temperature fitted on the validation digits, as `digits train` fits it. (digit_score
    is the same of the probabilities before temperature: the max-softmax rows.)"""
    from digits.batch.scores import digit_scores, softmax
    from digits.trainer.calibrate import apply_temperature, fit_temperature

    logits = results.pop("_logits")
    temperature = fit_temperature(softmax(logits["validation"]), validation_labels)
    results["calibrated max-softmax"] = {
        name: digit_scores(apply_temperature(softmax(z), temperature)).astype(np.float64) for name, z in logits.items()}
    return results


def table(tag: str, results: dict, t10k_labels: np.ndarray, sets: list[str]) -> list[str]:
    lines = []
    for method, by_set in results.items():
        if method.startswith("_"):
            continue
        threshold = np.quantile(by_set["validation"], 1 - KEEP)
        cells = []
        for s in sets:
            cells.append(f"{auroc(by_set['t10k'], by_set[s]):.3f} / {(by_set[s] >= threshold).mean():.1%}")
        rejected = (by_set["t10k"] < threshold).mean()
        accuracy = (results["_labels"]["t10k"] == t10k_labels).mean()
        lines.append(f"| {tag} | {method} | " + " | ".join(cells) + f" | {rejected:.2%} | {accuracy:.4f} |")
    return lines


def stored_threshold_row(folder: Path, data, sets: dict, names: list[str], font_labels) -> str:
    """One table row: a trained model's digit_score at the threshold its metrics.json stores."""
    from digits.batch.scores import digit_scores
    from digits.trainer.model import load_keras_model, predict_keras

    metrics = json.loads((folder / "metrics.json").read_text())
    model = load_keras_model(folder / "model.keras")
    threshold = metrics["digit_score"]["threshold"]
    t10k = predict_keras(model, data.x_test)
    digits = digit_scores(t10k)
    cells = []
    for name in names:
        scores = digit_scores(predict_keras(model, sets[name]))
        cells.append(f"{auroc(digits, scores):.3f} / {(scores >= threshold).mean():.1%}")
    fonts = (predict_keras(model, sets["fonts"]).argmax(1) == font_labels).mean()
    tag = f"{metrics['model']} {metrics['epochs_run']} ep, outliers {metrics.get('outliers', 0):g}"
    return (f"| {tag} | {threshold:.4f} | " + " | ".join(cells)
            + f" | {(digits < threshold).mean():.2%} | {(t10k.argmax(1) == data.y_test).mean():.4f} | {fonts:.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mlp,cnn")
    parser.add_argument("--epochs-mlp", type=int, default=15)
    parser.add_argument("--epochs-cnn", type=int, default=5)
    parser.add_argument("--outliers", default="0,0.5", help="outlier shares to train with, comma-separated")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/digits-ood"))
    parser.add_argument("--sets-only", action="store_true", help="build the sets, save a preview, stop")
    parser.add_argument("--trained", type=Path, action="append", default=[],
                        help="a `digits train` folder: measure its model at its stored threshold, train nothing")
    args = parser.parse_args()

    from dataclasses import replace

    from digits.trainer.data import load_mnist
    from digits.trainer.fit import train
    from digits.trainer.model import default_recipe

    data = load_mnist(ROOT / "data" / "mnist")
    started = time.perf_counter()
    sets = {
        "far": fashion(args.cache),
        "near": in_fonts(NEAR_LETTERS, args.cache, variants=8, seed=1)[0],
        "strokes": strokes(2000, seed=2),
        "partial": partial(data.x_test[:2000], seed=3),
    }
    font_digits, font_labels = in_fonts("0123456789", args.cache, variants=8, seed=4)
    print(f"sets built in {time.perf_counter() - started:.1f} s: "
          + ", ".join(f"{k} {len(v)}" for k, v in sets.items()) + f", font digits {len(font_digits)}", flush=True)
    if args.sets_only:
        from PIL import Image

        grid = np.concatenate([v[np.linspace(0, len(v) - 1, 20).astype(int)] for v in sets.values()])
        grid = grid.reshape(len(sets), 20, 28, 28).transpose(0, 2, 1, 3).reshape(len(sets) * 28, 20 * 28)
        Image.fromarray(grid).resize((20 * 56, len(sets) * 56)).save(args.cache / "sets.png")
        return
    names = list(sets)
    if args.trained:
        print("| model | threshold | " + " | ".join(f"{s}: AUROC / accepted" for s in names)
              + " | t10k rejected | t10k accuracy | font digits accuracy |")
        print("|---|---|" + "---|" * len(names) + "---|---|---|")
        for folder in args.trained:
            print(stored_threshold_row(folder, data, {**sets, "fonts": font_digits}, names, font_labels), flush=True)
        return
    print("| model | score | " + " | ".join(f"{s}: AUROC / accepted" for s in names)
          + " | t10k rejected | t10k accuracy |")
    print("|---|---|" + "---|" * len(names) + "---|---|")
    for kind in args.models.split(","):
        epochs = args.epochs_cnn if kind == "cnn" else args.epochs_mlp
        for share in (float(s) for s in args.outliers.split(",")):
            recipe = replace(default_recipe(kind), epochs=epochs, outliers=share)  # digits train's, at these
            trained = train(data, recipe, verbose=0, summary=lambda line: None)
            seconds = trained.train_seconds / trained.epochs_run
            images = {"validation": trained.validation_digits, "t10k": data.x_test, **sets, "fonts": font_digits}
            # Mahalanobis's class means and covariance: 20,000 training digits (some are validation's; no t10k).
            results = scores(trained.model, data.x_train[:20000], data.y_train[:20000], images)
            results = with_calibrated(results, trained.validation_labels)
            tag = f"{kind} {epochs} ep, outliers {share:g} ({seconds:.1f} s/epoch)"
            for line in table(tag, results, data.y_test, names):
                print(line, flush=True)
            font_acc = (results["_labels"]["fonts"] == font_labels).mean()
            print(f"<!-- {tag}: accuracy on font digits {font_acc:.3f} -->", flush=True)


if __name__ == "__main__":
    main()
