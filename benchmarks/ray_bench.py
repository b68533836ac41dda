"""`make bench`'s Ray rows: `--engine ray` against the local engine, on a joined local Ray.

Called from benchmarks/run.py (`measure(paths, run, row)`). A local Ray with
RAY_BENCH_CPUS CPUs (default 2) is started here, with no dashboard, and every
`digits classify --engine ray --address ...` joins it, as a user's job joins a
cluster. Both engines run the same inputs alternately.

Rates are steady rates, taken the same way for both engines: the difference
between the summary's seconds for the inputs named three times and named once,
over the 2N extra digits. That cancels what each job pays once (for Ray: its
actors and their sessions, which the summary reports as cluster_seconds; for the
local engine: its worker processes). The Ray summary's own seconds start when the
actors are ready; cluster_seconds gives the rest, shown as its own row. Numbers
come from `--summary-json`, never from the summary line.
"""

import os
import statistics
import sys
import time

from measure import classify


def measure(p: dict, run, row) -> list[dict]:
    try:
        import ray
    except ImportError:
        print("bench_ray: the [ray] extra is not installed; skipped", file=sys.stderr)
        return []
    cpus = int(os.environ.get("RAY_BENCH_CPUS", "2"))
    digits = [sys.executable, "-m", "digits", "classify", p["onnx"]]
    out = ["--output", p["pngs"].parent / "ray.csv"]  # for the whole-process runs below
    ray.init(num_cpus=cpus, include_dashboard=False, object_store_memory=512 * 2**20,
             logging_level="ERROR", log_to_driver=False)
    address = ray.get_runtime_context().gcs_address
    on_ray = ["--engine", "ray", "--address", address]
    rows, median = [], statistics.median
    targets = {"PNGs": 0.6, ".npy": 0.5}
    try:
        ready = []
        for name, one, count, kind in (("10,000 PNGs", p["pngs"], 10_000, "PNGs"),
                                       ("100k-digit .npy", p["npy"], 100_000, ".npy")):
            times = {("ray", 1): [], ("ray", 3): [], ("local", 1): [], ("local", 3): []}
            for _ in range(3):
                for engine, extra in (("ray", on_ray), ("local", [])):
                    for copies in (1, 3):
                        summary = classify(p["onnx"], [one] * copies, *extra)
                        times[engine, copies].append(summary["seconds"])
                        if engine == "ray":
                            ready.append(summary["cluster_seconds"])
            rate = {engine: 2 * count / (median(times[engine, 3]) - median(times[engine, 1]))
                    for engine in ("ray", "local")}
            rows.append(row(f"classify {name}, --engine ray joined to a local {cpus}-CPU Ray: steady rate",
                            rate["ray"], rate["local"], "digits/s",
                            "ray / local engine, steady rates (A/B in one run)", ">=", targets[kind]))
            rows.append(row(f"classify {name}, --engine ray ({cpus} CPUs): the job after Ray is ready",
                            median(times["ray", 1]), median(times["local", 1]), "s",
                            "ray / local engine (summary's seconds)", None, None))
        rows.append(row(f"--engine ray joined to a local {cpus}-CPU Ray: ready (join + actors with sessions)",
                        median(ready), median(times["local", 1]), "s",
                        "ray's ready time / the local engine's whole .npy job, for scale", None, None))
    finally:
        ray.shutdown()
    own, local = [], []
    for _ in range(2):
        start = time.perf_counter()
        run(digits + [p["pngs"]] + out + ["--engine", "ray"], env={**os.environ, "RAY_ADDRESS": ""})
        own.append(time.perf_counter() - start)
        start = time.perf_counter()
        run(digits + [p["pngs"]] + out)
        local.append(time.perf_counter() - start)
    rows.append(row("classify 10,000 PNGs, --engine ray starting its own local Ray: whole process",
                    median(own), median(local), "s", "ray / local engine (for reference)", None, None))
    return rows
