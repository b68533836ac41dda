"""Hostile and careless input, round two (issue 21): the batch runner's classes.

One section per class of the issue, numbered as there. Each test failed before
its fix. Real processes, pipes, signals and files throughout.
"""

import csv
import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.conftest import ROOT, assert_one_line_error, run_digits


def rows_of(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


def _png(path, digit) -> None:
    cv2.imwrite(str(path), digit)


def _digits_process(*args, **popen) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "digits", *map(str, args)], cwd=ROOT, **popen)


# 1. A signal during a piped run loses no row -----------------------------------------------


def test_sigterm_while_rows_go_to_a_slow_pipe_loses_no_row(exported_onnx, tmp_path):
    """The reader takes 4 KiB every 5 ms, far slower than the rows come, so the
    signal lands while a block's write waits on the pipe: the write is cut short,
    and before the fix the rest of the block was dropped (rows missing, two rows
    glued into one line)."""
    array = tmp_path / "big.npy"
    np.save(array, np.random.default_rng(0).integers(0, 256, (100_000, 28, 28), dtype=np.uint8))
    process = _digits_process("classify", exported_onnx, array, "--batch-size", "4096", "-q",
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    chunks, start, sent = [], time.monotonic(), False
    while chunk := os.read(process.stdout.fileno(), 4096):
        chunks.append(chunk)
        time.sleep(0.005)
        if not sent and time.monotonic() - start > 1.5:
            process.send_signal(signal.SIGTERM)
            sent = True
    assert process.wait(timeout=60) == 130, process.stderr.read()
    lines = b"".join(chunks).decode().splitlines()
    assert lines[0] == "source,label,confidence,error"
    rows = [line.split(",") for line in lines[1:]]
    assert rows and all(len(row) == 4 for row in rows)  # no two rows glued into one line
    numbers = [int(row[0].rpartition("#")[2]) for row in rows]
    assert numbers == list(range(len(numbers)))  # none missing from the middle
