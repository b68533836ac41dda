"""`digits classify --resume`: a run killed at any moment, resumed, gives what one clean run gives."""

import json
import os
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

from tests.conftest import ROOT, assert_one_line_error, run_digits


@pytest.fixture(scope="module")
def job(tmp_path_factory, sample):
    """Inputs that take a couple of seconds: an array, a folder big enough for decode workers, an array."""
    root = tmp_path_factory.mktemp("resume")
    first, second = root / "first.npy", root / "second.npy"
    np.save(first, np.resize(sample.x_test, (12_000, 28, 28)))
    np.save(second, np.resize(sample.x_train, (24_000, 28, 28)))
    folder = root / "scans"
    folder.mkdir()
    for i, digit in enumerate(np.resize(sample.x_train, (1_500, 28, 28))):
        cv2.imwrite(str(folder / f"{i:04d}.png"), digit)
    (folder / "0500.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")  # a failed row in the middle
    return [first, folder, second]


def classify_args(model, inputs, out, *extra):
    return [sys.executable, "-m", "digits", "classify", model, *inputs, "--output", out, "--batch-size", "16",
            "--quiet", *extra]


@pytest.fixture(scope="module")
def clean(exported_onnx, job, tmp_path_factory):
    """The rows of one uninterrupted run, csv and jsonl."""
    texts = {}
    for name in ("clean.csv", "clean.jsonl"):
        out = tmp_path_factory.mktemp("clean") / name
        result = subprocess.run(classify_args(exported_onnx, job, out), cwd=ROOT, capture_output=True, text=True)
        assert result.returncode == 3, result.stderr  # the fake PNG fails
        texts[name.split(".")[1]] = out.read_text()
    return texts


def children(pid: int) -> list[int]:
    try:
        return [int(c) for c in open(f"/proc/{pid}/task/{pid}/children").read().split()]
    except OSError:
        return []


def kill_when(cmd, out, size: int) -> list[int]:
    """Start the run, SIGKILL it once `out` holds `size` bytes; the pids of its children at that moment."""
    proc = subprocess.Popen([str(c) for c in cmd], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while (not out.exists() or out.stat().st_size < size) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    workers = children(proc.pid)
    proc.kill()
    proc.wait()
    return workers


def assert_gone(pids: list[int]) -> None:
    deadline = time.monotonic() + 10
    while any(os.path.exists(f"/proc/{p}") for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    alive = [p for p in pids if os.path.exists(f"/proc/{p}") and "Z" not in open(f"/proc/{p}/stat").read().split()[2]]
    assert not alive, f"worker processes outlived the killed run: {alive}"


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_sigkill_at_several_points_then_resume_gives_the_clean_rows(exported_onnx, job, clean, tmp_path, fmt):
    reference = clean[fmt]
    for fraction in (0.0, 0.2, 0.45, 0.7, 0.95):
        out = tmp_path / f"rows-{fraction}.{fmt}"
        cmd = classify_args(exported_onnx, job, out)
        assert_gone(kill_when(cmd, out, int(len(reference) * fraction) + 1))
        before = out.read_text() if out.exists() else ""
        assert reference.startswith(before[: before.rfind("\n") + 1])  # whole rows so far, in order

        # Killed again while resuming, then resumed to the end.
        kill_when(cmd + ["--resume"], out, int(len(reference) * (fraction + 1) / 2) + 1)
        result = subprocess.run([str(c) for c in cmd + ["--resume"]], cwd=ROOT, capture_output=True, text=True)
        assert result.returncode == 3, result.stderr  # as the clean run: the fake PNG's row is an error row
        assert out.read_text() == reference, f"killed at {fraction:.0%}"


def test_torn_last_line_is_dropped_and_finished_rows_are_kept(exported_onnx, job, clean, tmp_path):
    reference = clean["csv"]
    lines = reference.splitlines(keepends=True)
    out = tmp_path / "rows.csv"
    out.write_text("".join(lines[:5_000]) + lines[5_000][:7])  # as if killed in the middle of a write
    result = run_digits("classify", exported_onnx, *job, "--output", out, "--resume", "--batch-size", "256")
    assert result.returncode == 3, result.stderr
    assert out.read_text() == reference
    assert "kept 4,999 rows already in the output (0 failed)" in result.stderr  # the header is no row
    # Nothing left to do: a second resume adds nothing and still reports the failed row it kept.
    result = run_digits("classify", exported_onnx, *job, "--output", out, "--resume")
    assert result.returncode == 3 and out.read_text() == reference
    assert "0 items" in result.stderr and "(1 failed)" in result.stderr


def test_torn_header_and_missing_file_start_afresh(exported_onnx, job, tmp_path):
    array = job[0]
    fresh = run_digits("classify", exported_onnx, array, "--output", tmp_path / "fresh.csv")
    out = tmp_path / "torn.csv"
    out.write_text("source,lab")
    assert run_digits("classify", exported_onnx, array, "--output", out, "--resume").returncode == 0
    assert out.read_text() == (tmp_path / "fresh.csv").read_text()
    missing = tmp_path / "missing.csv"
    assert run_digits("classify", exported_onnx, array, "--output", missing, "--resume").returncode == 0
    assert missing.read_text() == out.read_text()
    assert fresh.returncode == 0


def test_resume_refuses_an_output_it_did_not_write(exported_onnx, job, tmp_path):
    array = job[0]
    top3 = tmp_path / "top3.csv"
    assert run_digits("classify", exported_onnx, array, "--output", top3, "--top-k", "3").returncode == 0
    kept = top3.read_text()
    result = run_digits("classify", exported_onnx, array, "--output", top3, "--resume")
    assert_one_line_error(result, 1, "top3.csv", "cannot resume", "label_1,prob_1", "--top-k")
    assert top3.read_text() == kept  # refused before anything was written

    jsonl = tmp_path / "rows.jsonl"
    assert run_digits("classify", exported_onnx, array, "--output", jsonl).returncode == 0
    result = run_digits("classify", exported_onnx, array, "--output", jsonl, "--resume", "--top-k", "2")
    assert_one_line_error(result, 1, "rows.jsonl", "cannot resume")
    result = run_digits("classify", exported_onnx, array, "--output", jsonl, "--resume", "--format", "csv")
    assert_one_line_error(result, 1, "rows.jsonl", "cannot resume")
    assert [json.loads(line)["source"] for line in jsonl.read_text().splitlines()][:2] == [f"{array}#0", f"{array}#1"]

    result = run_digits("classify", exported_onnx, array, "--resume")
    assert result.returncode == 2 and "--output" in result.stderr


def test_resume_fills_rows_missing_from_the_middle_of_an_array(exported_onnx, job, tmp_path):
    """Rows are matched by source, not by position: any subset of an array's rows may be done."""
    array = job[0]
    out = tmp_path / "rows.csv"
    assert run_digits("classify", exported_onnx, array, "--output", out).returncode == 0
    lines = out.read_text().splitlines(keepends=True)
    header, rows = lines[0], lines[1:]
    kept = rows[100:200] + rows[5_000:5_001] + rows[-3:]
    out.write_text(header + "".join(kept))
    result = run_digits("classify", exported_onnx, array, "--output", out, "--resume")
    assert result.returncode == 0, result.stderr
    final = out.read_text().splitlines(keepends=True)
    assert final[0] == header and sorted(final[1:]) == sorted(rows)
    assert f"{len(rows) - len(kept):,} items" in result.stderr


@pytest.mark.slow
def test_a_killed_worker_ends_the_run_with_one_line_and_resume_finishes(exported_onnx, job, clean, tmp_path):
    """A worker process that dies (OOM killer, a crash in a codec) stops the run with one clear
    line, exit code 1, every written row whole; --resume then completes the job."""
    folder = job[1]
    big = tmp_path / "big"
    big.mkdir()
    names = sorted(os.listdir(folder))
    for i in range(60_000):  # hard links: a folder that takes seconds to classify, made in one
        os.link(folder / names[i % len(names)], big / f"{i:05d}.png")
    out = tmp_path / "rows.csv"
    cmd = [sys.executable, "-m", "digits", "classify", exported_onnx, big, "--output", out]
    proc = subprocess.Popen([str(c) for c in cmd], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 120
    while (not out.exists() or out.stat().st_size < 100_000 or not children(proc.pid)) and time.monotonic() < deadline:
        time.sleep(0.002)
    os.kill(children(proc.pid)[0], 9)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 1, stderr
    assert "Traceback" not in stderr and "digits: error: a worker process ended" in stderr, stderr
    assert out.read_text().endswith("\n")

    result = run_digits("classify", exported_onnx, big, "--output", out, "--resume")
    assert result.returncode == 3, result.stderr  # 0500.png's 40 links are error rows
    sources = [line.split(",")[0] for line in out.read_text().splitlines()[1:]]
    assert sources == [str(big / f"{i:05d}.png") for i in range(60_000)]
