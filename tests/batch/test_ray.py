"""`digits classify --engine ray` on a real local Ray cluster: the local engine's rows, from Ray.

The module starts one Ray cluster (2 CPUs, no dashboard) in this process and
every `digits classify --engine ray --address ...` joins it, as a user's
program joins a real cluster. The references are the local engine's own rows.
"""

import contextlib
import csv
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

from tests.conftest import ROOT, assert_one_line_error, run_digits

ray = pytest.importorskip("ray", reason="the [ray] extra is not installed")

pytestmark = [pytest.mark.slow, pytest.mark.ray]


def rows_of(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


def assert_same_rows(ray_rows: list[dict], local_rows: list[dict]) -> None:
    """Same sources in the same order, same labels and errors, confidences within 1e-6."""
    assert len(ray_rows) == len(local_rows)
    assert [r["source"] for r in ray_rows] == [r["source"] for r in local_rows]
    assert [r["label"] for r in ray_rows] == [r["label"] for r in local_rows]
    assert [r["error"] for r in ray_rows] == [r["error"] for r in local_rows]
    for column in [c for c in local_rows[0] if c.startswith(("confidence", "prob_"))]:
        ours = np.array([float(r[column]) if r[column] else np.nan for r in ray_rows])
        theirs = np.array([float(r[column]) if r[column] else np.nan for r in local_rows])
        assert np.array_equal(np.isnan(ours), np.isnan(theirs))
        # Printed with 6 significant digits: one step of the last digit is 1e-6 at most.
        assert np.nanmax(np.abs(ours - theirs), initial=0) <= 1e-6 + 1e-12, column


def summary_line(stderr: str) -> str:
    """'N items, F failed, S skipped' from the summary, without the timing that differs per run, and
    without the classified count: which real digits a model doubts is the model's (tests/batch/test_not_digits.py)."""
    line = next(line for line in stderr.splitlines() if line.startswith("done:"))
    return re.sub(r", [\d,]+ classified", "", line.split(" in ")[0])


@pytest.fixture(scope="module")
def png_folder(sample, tmp_path_factory):
    """10,000 real digits as PNGs in two subfolders, three broken images and a skipped text file."""
    root = tmp_path_factory.mktemp("pngs")
    digits = np.concatenate([sample.x_train, sample.x_test])  # 5,000 real digits
    for half in range(2):
        folder = root / f"part{half}"
        folder.mkdir()
        for i, digit in enumerate(digits):
            cv2.imwrite(str(folder / f"{i:05d}.png"), digit)
    whole = (root / "part0" / "00000.png").read_bytes()
    (root / "part0" / "02500-truncated.png").write_bytes(whole[: len(whole) // 2])
    (root / "part1" / "00007-empty.png").write_bytes(b"")
    (root / "part1" / "04999-garbage.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (root / "notes.txt").write_text("not an image: skipped")
    return root


@pytest.fixture(scope="module")
def big_npy(sample, tmp_path_factory):
    """100,000 rows of real digits: the 5,000 sample digits 20 times, each copy shifted a pixel."""
    digits = np.concatenate([sample.x_train, sample.x_test])
    copies = [np.roll(digits, shift=k % 3 - 1, axis=1 + k % 2) for k in range(20)]
    path = tmp_path_factory.mktemp("npy") / "digits-100k.npy"
    np.save(path, np.concatenate(copies))
    return path


@pytest.fixture(scope="module")
def cluster():
    """A real local Ray cluster, started here once: 2 CPUs, no dashboard. Yields its address."""
    environ = dict(os.environ)
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=512 * 2**20,
             logging_level="ERROR", log_to_driver=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
        # ray.init leaves RAY_ADDRESS and RAY_AUTH_MODE behind; later tests' programs must not see them.
        os.environ.clear()
        os.environ.update(environ)


def run_ray(*args, address, **kwargs) -> subprocess.CompletedProcess:
    return run_digits("classify", *args, "--engine", "ray", "--address", address, **kwargs)


# ---- without a cluster ---------------------------------------------------------

def test_unreachable_address_is_one_line_exit_1(exported_onnx, tmp_path):
    with socket.socket() as s:  # a port nothing listens on: bound, never listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        result = run_digits("classify", exported_onnx, tmp_path, "--engine", "ray", "--address", f"127.0.0.1:{port}")
    assert_one_line_error(result, 1, f"127.0.0.1:{port}", "cannot reach the Ray cluster")


def test_starts_its_own_local_ray_without_address(exported_onnx, sample, tmp_path):
    array = tmp_path / "a.npy"
    np.save(array, sample.x_test[:300])
    (tmp_path / "broken.png").write_bytes(b"\x89PNG broken")
    floats = tmp_path / "f.npy"  # float arrays are checked whole before any of their rows
    np.save(floats, (sample.x_test[:50] / 255.0).astype(np.float32))
    nan = tmp_path / "nan.npy"
    np.save(nan, np.where(np.arange(50)[:, None, None] == 40, np.nan, sample.x_test[:50] / 255.0))
    args = (exported_onnx, array, tmp_path / "broken.png", floats, nan, tmp_path / "missing.png")
    local = run_digits("classify", *args)
    ours = run_digits("classify", *args, "--engine", "ray", env={"RAY_ADDRESS": ""})
    assert ours.returncode == local.returncode == 3, ours.stderr
    assert ours.stdout == local.stdout  # stdout csv, byte for byte
    assert summary_line(ours.stderr) == summary_line(local.stderr) == \
        "done: 353 items, 3 failed, 0 skipped"
    counts = [line for line in ours.stderr.splitlines() if not line.startswith("not digits:")]
    assert "Traceback" not in ours.stderr and len(counts) == 3, ours.stderr
    assert ours.stderr.startswith("ray: ready in ") and "s to start Ray" in ours.stderr


# ---- on the module's cluster -------------------------------------------------

def test_png_folder_with_broken_files_gives_the_local_rows(exported_onnx, png_folder, cluster, tmp_path):
    local = run_digits("classify", exported_onnx, png_folder, "-o", tmp_path / "local.csv")
    ours = run_ray(exported_onnx, png_folder, "-o", tmp_path / "ray.csv", address=cluster)
    assert ours.returncode == local.returncode == 3, ours.stderr
    assert summary_line(ours.stderr) == summary_line(local.stderr) == \
        "done: 10,003 items, 3 failed, 1 skipped"
    ray_rows, local_rows = (rows_of((tmp_path / n).read_text()) for n in ("ray.csv", "local.csv"))
    assert_same_rows(ray_rows, local_rows)
    errors = {os.path.basename(r["source"]): r["error"] for r in ray_rows if r["error"]}
    assert set(errors) == {"02500-truncated.png", "00007-empty.png", "04999-garbage.jpg"}
    assert errors["00007-empty.png"] == "empty file"
    assert ours.stderr.splitlines()[-1] == local.stderr.splitlines()[-1]  # per-label counts


def test_100k_npy_gives_the_local_rows_with_top_k_and_jsonl(exported_onnx, big_npy, cluster, tmp_path):
    local = run_digits("classify", exported_onnx, big_npy, "-o", tmp_path / "local.csv", "--top-k", "3")
    ours = run_ray(exported_onnx, big_npy, "-o", tmp_path / "ray.csv", "--top-k", "3", address=cluster)
    assert ours.returncode == local.returncode == 0, ours.stderr
    assert summary_line(ours.stderr) == "done: 100,000 items, 0 failed, 0 skipped"
    ray_rows, local_rows = (rows_of((tmp_path / n).read_text()) for n in ("ray.csv", "local.csv"))
    assert ray_rows[-1]["source"] == f"{big_npy}#99999"
    assert_same_rows(ray_rows, local_rows)

    head = tmp_path / "head.npy"
    np.save(head, np.load(big_npy)[:2000])
    local = run_digits("classify", exported_onnx, head, "--format", "jsonl")
    ours = run_ray(exported_onnx, head, "--format", "jsonl", address=cluster)
    assert ours.returncode == 0, ours.stderr
    ours_json, local_json = ([json.loads(line) for line in r.stdout.splitlines()] for r in (ours, local))
    assert [(r["source"], r["label"]) for r in ours_json] == [(r["source"], r["label"]) for r in local_json]


def test_stdin_list_and_sharded_parquet_output(exported_onnx, png_folder, sample, cluster, tmp_path):
    import pyarrow.dataset as pads

    array = tmp_path / "a.npy"
    np.save(array, sample.x_test[:500])
    listed = f"{png_folder / 'part1'}\n{array}\n{tmp_path / 'missing.png'}\n"
    local = run_digits("classify", exported_onnx, "-", "--glob", "000*", "--top-k", "2", stdin=listed)
    shards = tmp_path / "shards"
    ours = run_ray(exported_onnx, "-", "--glob", "000*", "--top-k", "2", "--output-dir", shards,
                   "--format", "parquet", stdin=listed, address=cluster)
    assert ours.returncode == local.returncode == 3, ours.stderr
    assert summary_line(ours.stderr) == summary_line(local.stderr)
    table = pads.dataset(shards, format="parquet").to_table()
    assert table.column_names == ["source", "label", "confidence", "label_1", "prob_1", "label_2", "prob_2",
                                  "digit_score", "not_digit", "error"]
    written = {r["source"]: r for r in table.to_pylist()}
    expected = rows_of(local.stdout)
    assert len(written) == len(expected) == 100 + 1 + 500 + 1  # 00000-00099, 00007-empty, rows, missing
    for row in expected:
        got = written[row["source"]]
        assert (got["error"] or "") == row["error"]
        assert ("" if got["label"] is None else str(got["label"])) == row["label"]
        if row["label"]:
            assert abs(got["confidence"] - float(row["confidence"])) <= 1e-6
            assert got["label_2"] == int(row["label_2"])
            assert abs(got["digit_score"] - float(row["digit_score"])) <= 1e-6
        assert got["not_digit"] == (None if row["error"] else row["not_digit"] == "1")


def _descendants(pid: int) -> list[int]:
    children = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parent = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if parent == pid:
                children.append(int(entry))
    return children + [d for c in children for d in _descendants(c)]


def _classify_actors() -> list[int]:
    """Processes of this test's cluster (descendants of this process) running the model actor."""
    found = []
    for pid in _descendants(os.getpid()):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if b"ShardWorker" in f.read():
                    found.append(pid)
        except OSError:
            continue
    return found


def test_a_killed_worker_still_yields_every_row_once(exported_onnx, png_folder, big_npy, cluster, tmp_path):
    args = (exported_onnx, png_folder, big_npy)
    local = run_digits("classify", *args, "-o", tmp_path / "local.csv")
    out = tmp_path / "ray.csv"
    # Small model batches: ~1,700 actor calls, so the actor is busy for seconds, not a blink.
    job = subprocess.Popen([sys.executable, "-m", "digits", "classify", *map(str, args), "-o", str(out),
                            "--batch-size", "64", "--engine", "ray", "--address", cluster], cwd=ROOT,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # Kill the model actor once rows are flowing, well before the end; then see it restarted.
        killed, rows_then, restarted, deadline = None, 0, None, time.monotonic() + 120
        while restarted is None and time.monotonic() < deadline and job.poll() is None:
            rows = sum(1 for _ in open(out)) - 1 if out.exists() else 0
            actors = _classify_actors()
            if killed is None and rows >= 1000 and actors:
                os.kill(actors[0], signal.SIGKILL)
                killed, rows_then = actors[0], rows
            elif killed is not None:
                restarted = next((pid for pid in actors if pid != killed), None)
            time.sleep(0.02)
        rows_at_restart = sum(1 for _ in open(out)) - 1
        _, stderr = job.communicate(timeout=300)
    finally:
        if job.poll() is None:
            job.kill()
    assert killed is not None, "the job ended before a worker could be killed"
    assert restarted is not None, "no new actor after the kill"
    # Killed mid-job, and a new actor was up before the last row was written.
    assert rows_then <= rows_at_restart < 110_003, (rows_then, rows_at_restart)
    assert job.returncode == local.returncode == 3, stderr
    ray_rows = rows_of(out.read_text())
    assert len({r["source"] for r in ray_rows}) == len(ray_rows) == 110_003  # every row, once
    assert_same_rows(ray_rows, rows_of((tmp_path / "local.csv").read_text()))
    assert summary_line(stderr) == summary_line(local.stderr)


def test_uris_are_listed_and_read_with_pyarrow(exported_onnx, png_folder, cluster, tmp_path):
    # file:// goes through the same pyarrow listing and reads as s3:// or gs:// would.
    folder = png_folder / "part1"
    local = run_digits("classify", exported_onnx, folder, "--glob", "0000*")
    ours = run_ray(exported_onnx, f"file://{folder}", f"file://{tmp_path}/missing.png", "--glob", "0000*",
                   address=cluster)
    assert ours.returncode == local.returncode == 3, ours.stderr
    local_rows, ray_rows = rows_of(local.stdout), rows_of(ours.stdout)
    assert [r["source"] for r in ray_rows] == [f"file://{r['source']}" for r in local_rows] + \
        [f"file://{tmp_path}/missing.png"]
    assert [(r["label"], r["error"]) for r in ray_rows[:-1]] == [(r["label"], r["error"]) for r in local_rows]
    assert ray_rows[-1]["error"] == "no such file or folder"
    assert summary_line(ours.stderr) == "done: 12 items, 2 failed, 0 skipped"


def test_the_library_call_reads_the_stdin_it_is_given(exported_onnx, sample, cluster, tmp_path):
    # The engine once read sys.stdin itself, dropping the `stdin` given to batch.api.classify.
    np.save(tmp_path / "a.npy", sample.x_test[:5])
    options = f"ClassifyOptions(engine='ray', address={cluster!r}, output={str(tmp_path / 'rows.csv')!r})"
    code = ("import io\nfrom digits.batch.api import ClassifyOptions, classify\n"
            f"summary = classify({str(exported_onnx)!r}, ['-'], {options}, "
            f"stdin=io.BytesIO({str(tmp_path / 'a.npy').encode()!r}))\n"
            "print(summary.items)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                            stdin=subprocess.DEVNULL, timeout=300)
    assert result.stdout.split() == ["5"], result.stderr
    assert len(rows_of((tmp_path / "rows.csv").read_text())) == 5


def test_ctrl_c_stops_the_job_with_whole_rows(exported_onnx, big_npy, cluster, tmp_path):
    out = tmp_path / "rows.csv"
    job = subprocess.Popen([sys.executable, "-m", "digits", "classify", str(exported_onnx), *[str(big_npy)] * 4,
                            "-o", str(out), "--engine", "ray", "--address", cluster], cwd=ROOT,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and job.poll() is None:
            if out.exists() and sum(1 for _ in open(out)) > 1000:
                job.send_signal(signal.SIGINT)
                break
            time.sleep(0.02)
        _, stderr = job.communicate(timeout=120)
    finally:
        if job.poll() is None:
            job.kill()
    assert job.returncode == 130, stderr
    assert "Traceback" not in stderr and "interrupted after" in stderr
    text = out.read_text()
    assert text.endswith("\n")
    rows = rows_of(text)
    assert 1000 < len(rows) < 400_000
    assert [r["source"] for r in rows] == [f"{big_npy}#{i % 100_000}" for i in range(len(rows))]
    assert all(r["label"] and r["confidence"] for r in rows)
    assert f"interrupted after {len(rows):,} items" in stderr


def test_sharded_jsonl_and_csv_output(exported_onnx, png_folder, cluster, tmp_path):
    folder = png_folder / "part1"
    local = {r["source"]: r for r in rows_of(run_digits("classify", exported_onnx, folder, "--glob", "0000*").stdout)}
    for fmt in ("jsonl", "csv"):
        shards = tmp_path / fmt
        ours = run_ray(exported_onnx, folder, "--glob", "0000*", "--output-dir", shards, "--format", fmt,
                       address=cluster)
        assert ours.returncode == 3, ours.stderr
        assert summary_line(ours.stderr) == "done: 11 items, 1 failed, 0 skipped"
        if fmt == "jsonl":
            written = [json.loads(line) for f in sorted(shards.iterdir()) for line in f.read_text().splitlines()]
        else:
            written = [r for f in sorted(shards.iterdir()) for r in rows_of(f.read_text())]
        assert len(written) == len(local) == 11
        for row in written:
            expected = local[row["source"]]
            assert str(row["label"] if row["label"] is not None else "") == expected["label"]
            assert (row.get("error") or "") == expected["error"]


def test_unwritable_output_dir_is_one_line_exit_1(exported_onnx, png_folder, cluster, tmp_path):
    (tmp_path / "a-file").write_text("not a folder")
    result = run_ray(exported_onnx, png_folder / "part1", "--glob", "0000*", "--output-dir",
                     tmp_path / "a-file" / "shards", address=cluster)
    assert_one_line_error(result, 1, "a-file/shards", "cannot write the output")


# ---- hostile input (issue 21, classes 5, 14, 22, 23, 24) --------------------------

def test_output_dir_that_holds_files_is_refused_untouched(exported_onnx, png_folder, cluster, tmp_path):
    # Class 5: a stale shard was read back with the job's own (exit 3), and a second job
    # into the same folder doubled every row.
    shards = tmp_path / "shards"
    shards.mkdir()
    (shards / "part-000000.csv").write_text("source,label,confidence,error\nold.png,,,stale\n")
    result = run_ray(exported_onnx, png_folder / "part1", "--glob", "0000*", "--output-dir", shards,
                     address=cluster)
    assert_one_line_error(result, 1, str(shards), "must be new or empty")
    assert sorted(os.listdir(shards)) == ["part-000000.csv"]
    fresh = tmp_path / "fresh"
    first = run_ray(exported_onnx, png_folder / "part1", "--glob", "0000*", "--output-dir", fresh, address=cluster)
    assert first.returncode == 3, first.stderr
    written = sorted(os.listdir(fresh))
    again = run_ray(exported_onnx, png_folder / "part1", "--glob", "0000*", "--output-dir", fresh, address=cluster)
    assert_one_line_error(again, 1, "must be new or empty")
    assert sorted(os.listdir(fresh)) == written
    assert sum(len(rows_of(f.read_text())) for f in fresh.iterdir()) == 11


def _silent_listener():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()  # the kernel completes connections; nothing ever answers
    return listener


def test_address_of_a_program_that_is_not_ray_is_one_line_exit_1(exported_onnx, tmp_path):
    # Class 14: a non-Ray program on the port hung the job for minutes, deaf to SIGTERM.
    import threading

    def http_1(server):
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.recv(1024)
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

    silent, http = _silent_listener(), _silent_listener()
    threading.Thread(target=http_1, args=(http,), daemon=True).start()
    try:
        for listener in (silent, http):
            address = f"127.0.0.1:{listener.getsockname()[1]}"
            started = time.monotonic()
            result = subprocess.run([sys.executable, "-m", "digits", "classify", str(exported_onnx), str(tmp_path),
                                     "--engine", "ray", "--address", address], cwd=ROOT, capture_output=True,
                                    text=True, timeout=120)
            assert time.monotonic() - started < 60
            assert_one_line_error(result, 1, address, "is not a Ray cluster")
    finally:
        silent.close()
        http.close()


def test_non_utf8_file_name_into_parquet_shards(exported_onnx, sample, cluster, tmp_path):
    # Class 22: one file name that is not UTF-8 failed a whole --output-dir job, leaving partial shards.
    import pyarrow.dataset as pads

    folder = tmp_path / "scans"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"{i}.png"), sample.x_test[i])
    odd = os.path.join(os.fsencode(folder), b"caf\xe9.png")
    with open(odd, "wb") as f:
        f.write((folder / "0.png").read_bytes())
    shards = tmp_path / "shards"
    result = run_ray(exported_onnx, folder, "--output-dir", shards, "--format", "parquet", address=cluster)
    assert result.returncode == 0, result.stderr
    assert summary_line(result.stderr) == "done: 4 items, 0 failed, 0 skipped"
    table = pads.dataset(shards, format="parquet").to_table().to_pylist()
    assert len(table) == 4 and all(r["error"] is None for r in table)
    assert f"{folder}/caf\\xe9.png" in {r["source"] for r in table}
    # In csv the name is written as its own bytes, as the local engine writes it.
    local, ours = (subprocess.run([sys.executable, "-m", "digits", "classify", str(exported_onnx), str(folder), *extra],
                                  cwd=ROOT, capture_output=True, timeout=600)
                   for extra in ([], ["--engine", "ray", "--address", cluster]))
    assert ours.returncode == local.returncode == 0, ours.stderr
    assert ours.stdout == local.stdout and b"caf\xe9.png" in ours.stdout


def test_shards_that_cannot_be_written_are_one_line(exported_onnx, png_folder, cluster, tmp_path):
    # The folder could not be made on the driver's side check (a URI), so every shard's write fails.
    result = run_ray(exported_onnx, png_folder / "part1", "--glob", "0000*", "--output-dir",
                     "file:///proc/digits-no-such-folder", address=cluster)
    assert_one_line_error(result, 1, "file:///proc/digits-no-such-folder", "cannot write the output")
    assert len(result.stderr.splitlines()) == 1, result.stderr


def test_empty_folder_gets_the_local_engines_note(exported_onnx, sample, cluster, tmp_path):
    # Class 24: the Ray engine left out the note that a named folder held nothing to classify.
    (tmp_path / "empty").mkdir()
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "notes.txt").write_text("no digits")
    array = tmp_path / "a.npy"
    np.save(array, sample.x_test[:3])
    args = (exported_onnx, tmp_path / "empty", array, tmp_path / "text")
    local = run_digits("classify", *args)
    ours = run_ray(*args, address=cluster)
    assert ours.returncode == local.returncode == 0, ours.stderr
    notes = [line for line in local.stderr.splitlines() if line.startswith("note:")]
    assert len(notes) == 2
    assert [line for line in ours.stderr.splitlines() if line.startswith("note:")] == notes
    assert ours.stdout == local.stdout


def _processes_naming(text: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if text.encode() in f.read():
                        found.append(int(entry))
            except OSError:
                continue
    return found


@pytest.mark.parametrize("when", ["early", "late"])
def test_sigterm_while_ray_starts_is_one_line_exit_130_and_leaves_nothing(exported_onnx, sample, when):
    # Class 23: SIGTERM during Ray's start-up exited 15 (or aborted, 134) with no message,
    # and left Ray's processes running for minutes.
    import shutil
    import tempfile

    ray_tmp = tempfile.mkdtemp(prefix="dr", dir="/tmp")  # short: Ray's socket paths live under it
    array = os.path.join(ray_tmp, "a.npy")
    np.save(array, sample.x_test[:5])
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env["RAY_TMPDIR"] = ray_tmp
    job = subprocess.Popen([sys.executable, "-m", "digits", "classify", str(exported_onnx), array, "--engine", "ray"],
                           cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        # early: as soon as Ray's first process runs; late: once its raylet does.
        wanted = "gcs_server" if when == "early" else "raylet"
        while time.monotonic() < deadline and job.poll() is None:
            if any(wanted.encode() in open(f"/proc/{pid}/cmdline", "rb").read()
                   for pid in _processes_naming(ray_tmp) if os.path.exists(f"/proc/{pid}")):
                break
            time.sleep(0.05)
        assert job.poll() is None, job.communicate()
        job.send_signal(signal.SIGTERM)
        stdout, stderr = job.communicate(timeout=120)
        assert job.returncode == 130, stderr
        assert_one_line_error(subprocess.CompletedProcess(job.args, job.returncode, stdout, stderr), 130,
                              "interrupted while Ray was starting")
        assert stdout == ""
        deadline = time.monotonic() + 20
        while _processes_naming(ray_tmp) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _processes_naming(ray_tmp) == []
    finally:
        if job.poll() is None:
            job.kill()
        for pid in _processes_naming(ray_tmp):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(ray_tmp, ignore_errors=True)


def test_more_actors_than_cpus_are_capped_not_waited_for(exported_onnx, sample, cluster, tmp_path):
    # Each actor holds a CPU: a third actor on this 2-CPU cluster would have waited forever.
    array = tmp_path / "a.npy"
    np.save(array, sample.x_test[:20])
    result = subprocess.run([sys.executable, "-m", "digits", "classify", str(exported_onnx), str(array),
                             "--engine", "ray", "--address", cluster, "--concurrency", "5"], cwd=ROOT,
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr
    assert "2 model actors on 2 CPUs of 1 node)" in result.stderr
    assert len(rows_of(result.stdout)) == 20


def _model_failing_above_the_probe(path) -> None:
    """A float model that runs on the load probe's digits and fails on any other batch
    (a Reshape to exactly [PROBE_DIGITS, 784]): onnxruntime fails inside a shard."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from digits.batch.scores import PROBE_DIGITS

    weights = np.random.default_rng(0).normal(size=(784, 10)).astype(np.float32)
    nodes = [helper.make_node("Reshape", ["pixels", "two"], ["flat"]),
             helper.make_node("MatMul", ["flat", "w"], ["z"]),
             helper.make_node("Softmax", ["z"], ["scores"])]
    graph = helper.make_graph(nodes, "two-only",
                              [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["n", 784])],
                              [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["n", 10])],
                              [numpy_helper.from_array(weights, "w"),
                               numpy_helper.from_array(np.array([PROBE_DIGITS, 784], np.int64), "two")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def test_a_model_failing_in_a_shard_is_one_line_naming_input_and_cause(sample, cluster, tmp_path):
    # Class 22: a failed job flooded stderr with Ray Data's logs and ended with a line about
    # retry backoff that named neither the input nor the cause.
    model = tmp_path / "two-only.onnx"
    _model_failing_above_the_probe(model)
    array = tmp_path / "a.npy"
    np.save(array, sample.x_test[:100])
    result = run_ray(model, array, address=cluster)
    assert_one_line_error(result, 1, f"the shard from {array}", "ModelError", "onnxruntime failed on a batch of 100")
    assert len(result.stderr.splitlines()) == 1, result.stderr


@pytest.mark.parametrize("name", ["rows.png", "deeper/rows.npy"])
def test_an_output_inside_an_input_folder_is_not_walked(exported_onnx, sample, cluster, tmp_path, name):
    # As the local engine: the walk passes over the run's own output, the second run over
    # the first run's rows included (rows.npy would be an error row, rows.png one more row).
    folder = tmp_path / "scans"
    (folder / "deeper").mkdir(parents=True)
    for i, digit in enumerate(sample.x_test[:12]):
        cv2.imwrite(str(folder / f"{i:02}.png"), digit)
    out = folder / name
    for _ in range(2):
        result = run_ray(exported_onnx, "scans", "-o", out, address=cluster, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert [r["source"] for r in rows_of(out.read_text())] == [f"scans/{i:02}.png" for i in range(12)]


def test_relative_paths_are_the_drivers_on_a_joined_cluster(exported_onnx, sample, cluster, tmp_path):
    # The actors' working folder is the cluster's: relative inputs and --output-dir once
    # named files there (every input an error row; shards written into the cluster's folder).
    (tmp_path / "scans").mkdir()
    for i, digit in enumerate(sample.x_test[:5]):
        cv2.imwrite(str(tmp_path / "scans" / f"{i}.png"), digit)
    np.save(tmp_path / "a.npy", sample.x_test[:3])
    result = run_ray(exported_onnx, "scans", "a.npy", "--output-dir", "shards", address=cluster, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = [row for part in sorted((tmp_path / "shards").glob("part-*.csv")) for row in rows_of(part.read_text())]
    assert [r["source"] for r in rows] == [f"scans/{i}.png" for i in range(5)] + [f"a.npy#{i}" for i in range(3)]
    assert all(not r["error"] for r in rows)
