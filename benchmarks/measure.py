"""What the benchmarks measure with: whole processes, their summaries and their CPU time."""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
DIGITS = [PY, "-m", "digits"]
PEERS = ROOT / "benchmarks" / "peers"


def run(cmd: list, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, cwd=ROOT, **kwargs)
    if result.returncode != 0:
        raise SystemExit(f"benchmark command failed ({result.returncode}): {' '.join(map(str, cmd))}\n"
                         f"{result.stderr[-2000:]}")
    return result


def classify(model, inputs: list, *options, cores: list[int] | None = None) -> dict:
    """`digits classify` as a whole process; its --summary-json, with `wall` (the process's
    seconds) and `cpu` (main and workers, from the summary) added. `cores`: pinned to those."""
    with tempfile.TemporaryDirectory() as folder:
        summary_path = Path(folder) / "summary.json"
        cmd = [*DIGITS, "classify", model, *inputs, "--quiet", "--summary-json", summary_path, *options]
        if "--output" not in options:
            cmd += ["--output", Path(folder) / "rows.csv"]
        result, wall = timed(cmd, cores)
        summary = json.loads(summary_path.read_text())
    summary["wall"] = wall
    return summary


def decode_loop(folder, cores: list[int] | None = None) -> dict:
    """The peer's JSON (decoded, files, seconds), with `cpu`: the whole process's CPU seconds."""
    proc = _start([PY, PEERS / "decode_loop.py", folder], cores, stdout=subprocess.PIPE)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if status:
        raise SystemExit(f"decode loop failed on {folder}")
    result = json.loads(out)
    result["cpu"] = usage.ru_utime + usage.ru_stime
    return result


def timed(cmd: list, cores: list[int] | None = None) -> tuple[int, float]:
    import time

    start = time.perf_counter()
    proc = _start(cmd, cores, stdout=subprocess.DEVNULL)
    _, status, _ = os.wait4(proc.pid, 0)
    if status:
        raise SystemExit(f"benchmark command failed: {' '.join(map(str, cmd))}")
    return status, time.perf_counter() - start


def _start(cmd: list, cores: list[int] | None, **kwargs) -> subprocess.Popen:
    pin = (lambda: os.sched_setaffinity(0, cores)) if cores else None
    return subprocess.Popen([str(c) for c in cmd], cwd=ROOT, stderr=subprocess.DEVNULL, preexec_fn=pin, **kwargs)


def link_folder(source: Path, target: Path, count: int, shards: int = 1) -> list[Path]:
    """`shards` folders beside each other holding, as hard links, `count` of the files in
    `source` (cycled): file i goes to shard i % shards. Made once; kept for later runs."""
    folders = [target / f"{k:02d}" for k in range(shards)] if shards > 1 else [target]
    if all(f.is_dir() for f in folders):
        return folders
    partial = target.with_suffix(".partial")
    import shutil

    shutil.rmtree(partial, ignore_errors=True)
    for k in range(shards):
        (partial / f"{k:02d}" if shards > 1 else partial).mkdir(parents=True)
    names = sorted(os.listdir(source))
    for i in range(count):
        shard = partial / f"{i % shards:02d}" if shards > 1 else partial
        os.link(source / names[i % len(names)], shard / f"{i:07d}.png")
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    return folders
