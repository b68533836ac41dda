"""Issue 25 item 5: the custom worker pool (batch/workers.py) against a plain multiprocessing pool.

A: `batch.api.classify` on a PNG folder, --workers at its default (one per usable core): the
   local engine and its WorkerPool, as `digits classify FOLDER --quiet` runs it.
B: the same walk (batch/inputs.py, cut into blocks as batch/run.py cuts them), the same model
   load and row format, and a fork-context `multiprocessing.Pool` whose initializer takes the
   parent's classifier as the fork leaves it (Classifier.forked, as the workers do), `imap`
   (ordered) over the blocks calling `classify_block`, the parent writing each block's rows in
   order with the same RowWriter.
C: as B with a concurrent.futures.ProcessPoolExecutor (fork, the same initializer), 4 blocks per
   worker submitted ahead: the stdlib pool that reports a killed worker (BrokenProcessPool), where
   multiprocessing.Pool loses its block and can hang (docs/decisions.md, issue 25).

Each run is its own process (this script with --child), so all pay the same start-up, imports,
walk and model load. Runs alternate A B C, C B A ... on a 200,000-file folder (the steady state)
and on its first 10,000 files. Reported: medians of wall seconds, digits/s, and the run's own
process's CPU microseconds per image (RUSAGE_SELF in the child; its workers' from
RUSAGE_CHILDREN), and the projected 16-core speedup `make bench` computes: min(16 / whole-run
ratio, 1 / main-process ratio), each CPU per image against one core's decode loop
(benchmarks/peers/decode_loop.py), start-up differenced out (200,000 minus 10,000 files;
the loop's 10,000 minus 2,000). Before timing, B's and C's rows must equal A's byte for byte on
2,000 files.

    python benchmarks/pool_ab.py [--n 200000] [--short 10000] [--reps 5] [--folder /tmp/pool_ab]
"""

import argparse
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import PY, ROOT, decode_loop, link_folder  # noqa: E402

MODEL = ROOT / "tests" / "data" / "mlp.onnx"
CHECKED = 2000  # files whose rows A, B and C must give byte for byte
VARIANTS = {"A": "custom (batch/workers.py)", "B": "multiprocessing.Pool imap", "C": "ProcessPoolExecutor"}


def make_pngs(folder: Path, n: int) -> Path:
    """`n` 28x28 PNGs of MNIST digits (test set, then training set, repeated as needed) in
    folder/png_N, written once: later calls find them there."""
    target = folder / f"png_{n}"
    if target.is_dir():
        return target
    import shutil

    import cv2
    import numpy as np

    from digits.trainer.data.idx import load_idx_folder

    mnist = load_idx_folder(ROOT / "data" / "mnist")
    digits = np.concatenate([mnist.x_test, mnist.x_train])
    partial = target.with_suffix(".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    for i in range(n):
        cv2.imwrite(str(partial / f"{i:07d}.png"), digits[i % len(digits)])
    partial.rename(target)
    return target


# The child: one run of one variant, rows to standard output, its numbers to --result.


def run_custom(model: Path, folder: Path) -> int:
    from digits.batch.api import ClassifyOptions, classify

    return classify(model, [str(folder)], ClassifyOptions()).workers


def run_plain(model: Path, folder: Path, executor: bool = False) -> int:
    """B (`executor`: C, a concurrent.futures.ProcessPoolExecutor, IMAGE_BLOCK blocks 4 per worker ahead)."""
    import multiprocessing

    from digits.batch.api import ClassifyOptions
    from digits.batch.cores import usable_cores
    from digits.batch.inputs import Expanded, iter_runs
    from digits.batch.model import load_classifier
    from digits.batch.run import _blocks  # the run's own cut: blocks of IMAGE_BLOCK paths, names within a slot
    from digits.batch.writer import RowWriter

    options = ClassifyOptions()
    classifier = load_classifier(model, threads=1, spin=False)  # loaded and probed, as api._load does
    gc.freeze()  # as api._local does before its workers fork
    row_format = options.row_format(classifier)
    writer = RowWriter(sys.stdout, row_format)
    blocks = _blocks(iter_runs([str(folder)], out=Expanded()), None)
    workers = usable_cores()
    context, init = multiprocessing.get_context("fork"), (classifier, options.decoding, row_format)
    if executor:
        from collections import deque
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(workers, context, initializer=_init_worker, initargs=init) as pool:
            ahead: deque = deque()
            for block in blocks:
                ahead.append(pool.submit(_classify, block))
                if len(ahead) >= 4 * workers:
                    writer.write(ahead.popleft().result().text)
            for future in ahead:
                writer.write(future.result().text)
        return workers
    pool = context.Pool(workers, initializer=_init_worker, initargs=init)
    for rows in pool.imap(_classify, blocks):
        writer.write(rows.text)
    pool.close()
    pool.join()
    return workers


_worker: tuple = ()


def _init_worker(classifier, invert, row_format) -> None:
    import numpy as np

    from digits.core.contract import IMAGE_BLOCK, IMAGE_SIZE
    from digits.core.files import to_devnull

    global _worker
    to_devnull(2)
    _worker = (classifier.forked(), invert, row_format, np.zeros((IMAGE_BLOCK, IMAGE_SIZE, IMAGE_SIZE), np.uint8))


def _classify(paths):
    from digits.batch.block import classify_block

    if not isinstance(paths, list):
        raise SystemExit(f"not a block of image paths: {paths!r}")  # the folder holds PNGs only
    classifier, invert, row_format, digits = _worker
    return classify_block(paths, invert, classifier, row_format, out=digits[: len(paths)])


def child(variant: str, folder: Path, result: Path) -> None:
    workers = run_custom(MODEL, folder) if variant == "A" else run_plain(MODEL, folder, executor=variant == "C")
    sys.stdout.flush()
    own, workers_usage = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    result.write_text(json.dumps({"workers": workers, "cpu_main": own.ru_utime + own.ru_stime,
                                  "cpu_workers": workers_usage.ru_utime + workers_usage.ru_stime}))


# The parent: runs the children, checks, times, tabulates.


def run_child(variant: str, folder: Path, out) -> dict:
    """One child run; its numbers with `wall`: seconds from its start to its end, as a whole process."""
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "result.json"
        env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
        start = time.perf_counter()
        proc = subprocess.Popen([PY, __file__, "--child", variant, str(folder), str(result)], cwd=ROOT, env=env,
                                stdout=out, stderr=subprocess.PIPE)
        stderr = proc.stderr.read()
        _, status, _ = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        if status:
            raise SystemExit(f"variant {variant} on {folder} failed ({status}):\n{stderr.decode()[-2000:]}")
        return {**json.loads(result.read_text()), "wall": wall}


def check_same_rows(folder: Path, work: Path) -> None:
    """B's and C's rows are A's, byte for byte, on `folder`; SystemExit if not."""
    texts = {}
    for variant in VARIANTS:
        path = work / f"rows_{variant}.csv"
        with open(path, "wb") as out:
            run_child(variant, folder, out)
        texts[variant] = path.read_bytes()
    rows = texts["A"].count(b"\n") - 1
    if texts["A"] != texts["B"] or texts["A"] != texts["C"] or rows != CHECKED:
        raise SystemExit(f"rows differ from A's on {folder} (A: {rows} rows; see {work}/rows_[ABC].csv)")
    print(f"rows identical on {CHECKED:,} files ({len(texts['A']):,} bytes)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000, help="files in the steady-state folder (default 200,000)")
    parser.add_argument("--short", type=int, default=10_000, help="files in the short run (default 10,000)")
    parser.add_argument("--reps", type=int, default=5, help="runs of each variant and size (default 5)")
    parser.add_argument("--folder", type=Path, default=Path("/tmp/pool_ab"), help="where the PNGs are kept")
    parser.add_argument("--child", nargs=3, metavar=("VARIANT", "FOLDER", "RESULT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], Path(args.child[1]), Path(args.child[2]))
        return 0
    if not CHECKED < args.short < args.n:
        raise SystemExit(f"give {CHECKED} < --short < --n")
    big = make_pngs(args.folder, args.n)
    sizes = {args.n: big, args.short: link_folder(big, args.folder / f"png_{args.n}_first_{args.short}",
                                                  args.short)[0]}
    checked = link_folder(big, args.folder / f"png_{args.n}_first_{CHECKED}", CHECKED)[0]
    check_same_rows(checked, args.folder)
    runs: dict = {(v, n): [] for v in VARIANTS for n in sizes}
    loops = []
    for rep in range(args.reps):
        for n, folder in sizes.items():
            order = list(VARIANTS) if rep % 2 == 0 else list(VARIANTS)[::-1]  # ABC, then CBA: drift hits all alike
            for variant in order:
                runs[variant, n].append(run_child(variant, folder, subprocess.DEVNULL))
        short_loop, small_loop = decode_loop(sizes[args.short]), decode_loop(checked)
        loops.append((short_loop["cpu"] - small_loop["cpu"]) / (args.short - CHECKED))
        print(f"rep {rep + 1}/{args.reps} done", file=sys.stderr)
    loop = statistics.median(loops)
    cores = runs["A", args.n][0]["workers"]
    print(f"\n{args.n:,} and {args.short:,} 28x28 PNGs, {MODEL.name}, {cores} workers; medians of {args.reps} "
          f"(`python benchmarks/pool_ab.py --n {args.n} --short {args.short} --reps {args.reps}`)\n")
    print("| pool | files | wall s | digits/s | main CPU us/image | workers CPU us/image |")
    print("|---|---|---|---|---|---|")
    for variant, name in VARIANTS.items():
        for n in sizes:
            r = runs[variant, n]
            wall = statistics.median(x["wall"] for x in r)
            main_cpu, workers_cpu = (statistics.median(x[key] for x in r) / n * 1e6 for key in ("cpu_main",
                                                                                             "cpu_workers"))
            print(f"| {name} | {n:,} | {wall:.2f} | {n / wall:,.0f} | {main_cpu:.1f} | {workers_cpu:.1f} |")
    print(f"\nSteady state ({args.n:,} minus {args.short:,} files), against one core's decode loop "
          f"({loop * 1e6:.1f} us/image):\n")
    print("| pool | main CPU us/image | whole run CPU us/image | projected 16-core speedup |")
    print("|---|---|---|---|")
    for variant, name in VARIANTS.items():
        extra = args.n - args.short
        main_cpu = [(b["cpu_main"] - s["cpu_main"]) / extra for b, s in zip(runs[variant, args.n],
                                                                               runs[variant, args.short])]
        whole = [(b["cpu_main"] + b["cpu_workers"] - s["cpu_main"] - s["cpu_workers"]) / extra
                 for b, s in zip(runs[variant, args.n], runs[variant, args.short])]
        main_ratio, whole_ratio = statistics.median(main_cpu) / loop, statistics.median(whole) / loop
        print(f"| {name} | {statistics.median(main_cpu) * 1e6:.1f} | {statistics.median(whole) * 1e6:.1f} "
              f"| {min(16 / whole_ratio, 1 / main_ratio):.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
