"""`--engine ray` on more than one Ray node, and on a listing of a million entries.

Two nodes on one machine (`ray.cluster_utils.Cluster`: a head and a worker node,
each its own raylet with its own CPUs): the model and our code reach the node
that is not the driver's through Ray (the object store and `py_modules`), the rows
are the local engine's, and a node removed mid-job still gives every row once.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time

import cv2
import numpy as np
import pytest

from tests.conftest import ROOT, run_digits

ray = pytest.importorskip("ray", reason="the [ray] extra is not installed")

pytestmark = [pytest.mark.slow, pytest.mark.ray]

from tests.batch.test_ray import assert_same_rows, rows_of, summary_line  # noqa: E402


@pytest.fixture(scope="module")
def two_nodes():
    """A head node (2 CPUs) and a worker node (1 CPU), started here; yields (cluster, worker node)."""
    from ray.cluster_utils import Cluster

    environ = dict(os.environ)
    store = 200 * 2**20
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False,
                                                            "object_store_memory": store})
    try:
        worker = cluster.add_node(num_cpus=1, object_store_memory=store)
        cluster.wait_for_nodes()
        yield cluster, worker
    finally:
        cluster.shutdown()
        os.environ.clear()
        os.environ.update(environ)


@pytest.fixture(scope="module")
def inputs(sample, tmp_path_factory):
    """5,000 real digits as PNGs in three folders (2,000, 2,000, 1,000), one broken image, a 60,000-row array."""
    root = tmp_path_factory.mktemp("inputs")
    digits = np.concatenate([sample.x_train, sample.x_test])
    for part in range(3):
        folder = root / f"part{part}"
        folder.mkdir()
        for i, digit in enumerate(digits[part * 2000 : part * 2000 + 2000]):
            cv2.imwrite(str(folder / f"{i:05d}.png"), digit)
    (root / "part1" / "00100-broken.png").write_bytes(b"\x89PNG not really")
    array = root / "digits.npy"
    np.save(array, np.resize(digits, (60_000, 28, 28)))
    return [root / "part0", root / "part1", root / "part2", array]


def _nodes_of_job(stderr: str) -> str:
    return next(line for line in stderr.splitlines() if line.startswith("ray: ready"))


def test_two_nodes_give_the_local_rows(exported_onnx, two_nodes, inputs, tmp_path):
    cluster, _ = two_nodes
    local = run_digits("classify", exported_onnx, *inputs, "-o", tmp_path / "local.csv")
    ours = run_digits("classify", exported_onnx, *inputs, "-o", tmp_path / "ray.csv", "--engine", "ray",
                      "--address", cluster.address, "--concurrency", "2")
    assert ours.returncode == local.returncode == 3, ours.stderr
    # SPREAD: one actor on each node; the worker node has no model file and gets the code from Ray.
    assert "2 model actors on 3 CPUs of 2 nodes" in _nodes_of_job(ours.stderr), ours.stderr
    assert summary_line(ours.stderr) == summary_line(local.stderr)
    assert_same_rows(*(rows_of((tmp_path / n).read_text()) for n in ("ray.csv", "local.csv")))


def test_a_node_removed_mid_job_still_gives_every_row_once(exported_onnx, two_nodes, inputs, tmp_path):
    cluster, worker = two_nodes
    local = run_digits("classify", exported_onnx, *inputs, "-o", tmp_path / "local.csv")
    out = tmp_path / "ray.csv"
    # Small model batches keep each shard busy for a while, so that the node goes mid-job.
    job = subprocess.Popen([sys.executable, "-m", "digits", "classify", *map(str, [exported_onnx, *inputs]),
                            "-o", str(out), "--batch-size", "16", "--engine", "ray", "--address", cluster.address,
                            "--concurrency", "2"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
    try:
        removed_at, deadline = None, time.monotonic() + 180
        while removed_at is None and time.monotonic() < deadline and job.poll() is None:
            if out.exists() and sum(1 for _ in open(out)) > 1000:
                cluster.remove_node(worker)  # its raylet and every worker on it, killed
                removed_at = sum(1 for _ in open(out)) - 1
            time.sleep(0.02)
        _, stderr = job.communicate(timeout=300)
    finally:
        if job.poll() is None:
            job.kill()
    assert removed_at is not None, "the job ended before the node could be removed"
    assert removed_at < 65_001, removed_at
    assert job.returncode == 3, stderr
    ray_rows = rows_of(out.read_text())
    assert len({r["source"] for r in ray_rows}) == len(ray_rows) == 65_001  # every row, once
    assert_same_rows(ray_rows, rows_of((tmp_path / "local.csv").read_text()))
    assert summary_line(stderr) == summary_line(local.stderr)


def _empty_file_tree(root: str, entries: int) -> None:
    """`entries` empty .png files in folders of 1,000: hard links to one file (fast to make)."""
    os.makedirs(root)
    blank = os.path.join(root, "blank")
    open(blank, "wb").close()
    for first in range(0, entries, 1000):
        folder = os.path.join(root, f"{first // 1000:04d}")
        os.mkdir(folder)
        for i in range(min(1000, entries - first)):
            os.link(blank, os.path.join(folder, f"{i:03d}.png"))
    os.unlink(blank)


def _driver_peak_rss_mb(args: list) -> tuple[float, str]:
    """The digits process's peak RSS: joined to a cluster, it is the driver alone (the
    cluster's raylets start the workers, not it)."""
    job = subprocess.Popen([sys.executable, "-m", "digits", "classify", *map(str, args)], cwd=ROOT,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    stderr = job.stderr.read()
    _, status, usage = os.wait4(job.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 3, stderr
    return usage.ru_maxrss / 1024, stderr


def test_a_million_entry_listing_keeps_the_driver_small(exported_onnx, two_nodes, tmp_path):
    cluster, _ = two_nodes
    base = "/dev/shm" if os.access("/dev/shm", os.W_OK) else str(tmp_path)  # tmpfs: a million links in seconds
    work = tempfile.mkdtemp(prefix="digits-1m-", dir=base)
    try:
        small, large = os.path.join(work, "small"), os.path.join(work, "large")
        _empty_file_tree(small, 10_000)
        _empty_file_tree(large, 1_000_000)
        job = ["--engine", "ray", "--address", cluster.address, "-o", os.devnull]
        small_mb, small_err = _driver_peak_rss_mb([exported_onnx, small, *job])
        large_mb, large_err = _driver_peak_rss_mb([exported_onnx, large, *job])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    assert summary_line(small_err) == "done: 10,000 items, 10,000 failed, 0 skipped"
    assert summary_line(large_err) == "done: 1,000,000 items, 1,000,000 failed, 0 skipped"
    print(f"driver peak RSS: {small_mb:.0f} MB for 10,000 entries, {large_mb:.0f} MB for 1,000,000")
    assert large_mb <= 1.5 * small_mb, (small_mb, large_mb)
