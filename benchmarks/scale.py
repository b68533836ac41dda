"""`make bench-scale`: does classify use every core? The same PNG folder at 1, 2, 4 ... cores.

At each core count (pinned by CPU affinity to the first N usable cores) it runs
`digits classify` on the folder, and as many plain decode loops side by side as
there are cores, each pinned to its own core on its own share of the folder:
what the machine itself can decode, the real limit. It prints both rates and
their ratio (target: classify >= 0.75 of the loops at every count).

    python benchmarks/scale.py [--files N] [--model M.onnx]
"""

import argparse
import os
import statistics
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import ROOT, classify, decode_loop, link_folder  # noqa: E402

WORK = ROOT / "benchmarks" / ".work"


def counts(cores: int) -> list[int]:
    n, out = 1, []
    while n < cores:
        out.append(n)
        n *= 2
    return out + [cores]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=30_000, help="PNGs in the folder (default 30,000)")
    parser.add_argument("--model", type=Path, default=ROOT / "tests" / "data" / "mlp.onnx")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    pngs = WORK / "pngs"
    if not pngs.is_dir():
        raise SystemExit("benchmarks/.work/pngs is missing: "
                         "run `make bench` (or `python benchmarks/run.py --prepare`) first")
    usable = sorted(os.sched_getaffinity(0))
    folder = link_folder(pngs, WORK / f"scale_{args.files}", args.files)[0]
    print(f"{args.files:,} 28x28 PNGs, {args.model.name}; {len(usable)} usable cores; medians of {args.repeats}\n")
    print("| cores | classify digits/s | decode loops side by side, PNGs/s | ratio | classify CPU s (main + workers) |")
    print("|---|---|---|---|---|")
    for n in counts(len(usable)):
        cores = usable[:n]
        ours = [classify(args.model, [folder], cores=cores) for _ in range(args.repeats)]
        rate = statistics.median(s["digits_per_second"] for s in ours)
        cpu = statistics.median(s["cpu_seconds"]["main"] + s["cpu_seconds"]["workers"] for s in ours)
        shards = link_folder(pngs, WORK / f"scale_{args.files}_{n}", args.files, shards=n) if n > 1 else [folder]
        loops = []
        for _ in range(args.repeats):
            with ThreadPoolExecutor(n) as pool:
                results = list(pool.map(lambda folder, core: decode_loop(folder, cores=[core]), shards, cores))
            # Side by side: the folder is done when the slowest loop is.
            loops.append(sum(r["files"] for r in results) / max(r["seconds"] for r in results))
        loop_rate = statistics.median(loops)
        print(f"| {n} | {rate:,.0f} | {loop_rate:,.0f} | {rate / loop_rate:.2f} | {cpu:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
