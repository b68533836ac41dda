"""Every runtime a model ships to, side by side: agreement with Python's onnxruntime, and speed.

    python benchmarks/edge_runtimes.py runs/demo/model.onnx   (its .int8.onnx and .ort beside it)

Needs `make edge-deps` (onnxruntime-node, onnxruntime-web, Debian's chromium). On 2,000
real digits (the bundled sample, test digits first), each runtime classifies the whole
batch 7 times after a warm-up; the table gives the median rate, label agreement and the
max absolute difference of the probabilities against Python's onnxruntime, and the rate
at batch 1 (200 single digits, median of 5), the rate a drawing page lives by.
"""

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from digits.batch.model import OnnxClassifier  # noqa: E402
from digits.exporter.export import sibling  # noqa: E402
from digits.trainer.data.sample import load_sample  # noqa: E402

REPEATS = 7
SINGLES = 200

NODE_BENCH = """
const ort = require("onnxruntime-node");
const fs = require("fs");
(async () => {
  const [model, digits, repeats, singles] = process.argv.slice(1);
  const pixels = new Uint8Array(fs.readFileSync(digits));
  const n = pixels.length / 784;
  const session = await ort.InferenceSession.create(model);
  const run = (p, k) => session.run({ image: new ort.Tensor("uint8", p, [k, 28, 28]) }, ["probabilities"]);
  const { probabilities } = await run(pixels, n);
  const batch = [], single = [];
  for (let r = 0; r < repeats; r++) {
    const t = performance.now();
    await run(pixels, n);
    batch.push(n / (performance.now() - t) * 1000);
  }
  for (let r = 0; r < 5; r++) {
    const t = performance.now();
    for (let i = 0; i < singles; i++) await run(pixels.subarray(i * 784, (i + 1) * 784), 1);
    single.push(singles / (performance.now() - t) * 1000);
  }
  process.stdout.write(JSON.stringify({ probabilities: Array.from(probabilities.data), batch, single }));
})();
"""

BROWSER_BENCH = """async ([model, digits, repeats, singles]) => {
  const { load } = await import("./digits.js");
  const classifier = await load(model);
  const pixels = new Uint8Array(await (await fetch(digits)).arrayBuffer());
  const n = pixels.length / 784;
  const { probabilities } = await classifier.classify(pixels, n);
  const batch = [], single = [];
  for (let r = 0; r < repeats; r++) {
    const t = performance.now();
    await classifier.classify(pixels, n);
    batch.push(n / (performance.now() - t) * 1000);
  }
  for (let r = 0; r < 5; r++) {
    const t = performance.now();
    for (let i = 0; i < singles; i++) await classifier.classify(pixels.slice(i * 784, (i + 1) * 784), 1);
    single.push(singles / (performance.now() - t) * 1000);
  }
  return { probabilities: Array.from(probabilities), batch, single };
}"""


def python_bench(model: Path, digits: np.ndarray) -> dict:
    classifier = OnnxClassifier(model)
    probabilities = classifier.predict(digits)
    batch, single = [], []
    for _ in range(REPEATS):
        start = time.perf_counter()
        classifier.predict(digits)
        batch.append(len(digits) / (time.perf_counter() - start))
    for _ in range(5):
        start = time.perf_counter()
        for i in range(SINGLES):
            classifier.predict(digits[i : i + 1])
        single.append(SINGLES / (time.perf_counter() - start))
    return {"probabilities": probabilities, "batch": batch, "single": single}


def main() -> None:
    from playwright.sync_api import sync_playwright

    model = Path(sys.argv[1])
    models = {"model.onnx": model, "model.int8.onnx": sibling(model, ".int8.onnx"), "model.ort": sibling(model, ".ort")}
    sample = load_sample()
    digits = np.concatenate([sample.x_test, sample.x_train])[:2000]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp, "digits.u8")
        raw.write_bytes(digits.tobytes())
        server = subprocess.Popen([sys.executable, str(ROOT / "web" / "serve.py"), "--port", "0"],
                                  stdout=subprocess.PIPE, text=True)
        url = server.stdout.readline().split()[-1]
        playwright = sync_playwright().start()
        try:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=[
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run"])
            page = browser.new_page()
            files = {"digits": raw, **models}
            page.route("**/fixtures/**",
                       lambda route: route.fulfill(path=str(files[route.request.url.split("/fixtures/")[1]])))
            page.goto(url)
            version = browser.version
            for name, path in models.items():
                if not path.is_file():
                    continue
                python = python_bench(path, digits)
                node = json.loads(subprocess.run(
                    ["node", "-e", NODE_BENCH, str(path), str(raw), str(REPEATS), str(SINGLES)],
                    cwd=ROOT / "examples" / "node", capture_output=True, text=True, check=True).stdout)
                web = page.evaluate(BROWSER_BENCH, [f"fixtures/{name}", "fixtures/digits", REPEATS, SINGLES])
                for runtime, result in (("Python onnxruntime", python), ("onnxruntime-node", node),
                                        (f"onnxruntime-web, Chromium {version.split('.')[0]}", web)):
                    probs = np.asarray(result["probabilities"], np.float32).reshape(-1, 10)
                    rows.append((name, runtime, float((probs.argmax(1) == python["probabilities"].argmax(1)).mean()),
                                 float(np.abs(probs - python["probabilities"]).max()),
                                 statistics.median(result["batch"]), statistics.median(result["single"])))
            browser.close()
        finally:
            playwright.stop()
            server.terminate()
    print(f"{'model':<17}{'runtime':<32}{'labels':>8}{'max abs diff':>14}{'digits/s (2,000)':>18}{'digits/s (1)':>14}")
    for name, runtime, agree, diff, batch, single in rows:
        print(f"{name:<17}{runtime:<32}{agree:>8.2%}{diff:>14.1e}{batch:>18,.0f}{single:>14,.0f}")


if __name__ == "__main__":
    main()
