"""Every shell and Python block in README.md and docs/*.md, run for real in a folder of
small files (the committed models, PNGs and arrays of the bundled sample, the sample as
MNIST's .npz and IDX forms). A block shows its output in a ```console block: `$ ` lines
are commands, the lines under one its standard output (`...` alone: any lines; within a
line: any text).

A block that cannot run here carries `<!-- not run: reason -->` on the line before it;
test_not_run_markers counts them, so a new one shows in the diff of NOT_RUN.
"""

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.conftest import ROOT, write_npz

NOT_RUN = 8  # the markers below; raise it only with a reason in the marker
MARKER = re.compile(r"^<!-- not run: (.+?) -->$", flags=re.M)
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
TRAINS = re.compile(r"\bdigits (train|export|demo)\b|\.keras\b")


@dataclass
class Block:
    page: str
    line: int
    language: str
    text: str
    not_run: str | None

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"


def blocks() -> list[Block]:
    found = []
    for page in PAGES:
        text = page.read_text()
        for m in re.finditer(r"```(sh|console|bash|python)\n(.*?)```", text, flags=re.S):
            before = text[: m.start()].rstrip().rsplit("\n", 1)[-1]
            marker = MARKER.fullmatch(before.strip())
            found.append(Block(str(page.relative_to(ROOT)), text[: m.start()].count("\n") + 1, m.group(1),
                               m.group(2), marker.group(1) if marker else None))
    return found


def _param(block: Block):
    marks = [pytest.mark.slow, pytest.mark.tf] if TRAINS.search(block.text) else []
    if "--engine ray" in block.text:
        marks += [pytest.mark.slow, pytest.mark.ray]
    return pytest.param(block, marks=marks, id=block.id)


RUN = [_param(b) for b in blocks() if b.not_run is None]


def test_not_run_markers():
    """Each marker gives its reason and stands right before a block; their number is NOT_RUN."""
    marked = [b for b in blocks() if b.not_run]
    print("\n".join(f"not run: {b.id}: {b.not_run}" for b in marked))
    assert all(len(b.not_run) > 10 for b in marked)
    stray = sum(len(MARKER.findall(page.read_text())) for page in PAGES) - len(marked)
    assert stray == 0, "a marker that stands before no block"
    assert len(marked) == NOT_RUN
    assert len(RUN) >= 8


@pytest.fixture
def workspace(tmp_path, small, sample, request) -> Path:
    """The files the blocks name, in a fresh folder; `digits` on PATH runs this checkout."""
    from tests.trainer.test_data import write_idx_folder

    (tmp_path / "scans").mkdir()
    for i in range(20):
        cv2.imwrite(str(tmp_path / "scans" / f"{i:02}.png"), sample.x_test[i])
    cv2.imwrite(str(tmp_path / "a.png"), sample.x_test[20])
    cv2.imwrite(str(tmp_path / "b.jpg"), 255 - cv2.resize(sample.x_test[21], (84, 84)))  # dark ink on paper
    np.save(tmp_path / "digits.npy", sample.x_test[:10])
    np.save(tmp_path / "big.npy", sample.x_test)
    shutil.copyfile(ROOT / "tests" / "data" / "mlp.onnx", tmp_path / "model.onnx")
    (tmp_path / "runs" / "demo").mkdir(parents=True)
    shutil.copyfile(ROOT / "tests" / "data" / "mlp.onnx", tmp_path / "runs" / "demo" / "model.onnx")
    np.save(tmp_path / "runs" / "demo" / "test-digits.npy", sample.x_test[:100])
    write_npz(sample, tmp_path / "mnist.npz")
    write_idx_folder(tmp_path / "mnist-idx", sample)
    write_idx_folder(tmp_path / "data" / "mnist", sample)
    block = request.node.callspec.params["block"] if hasattr(request.node, "callspec") else None
    if block is not None and "runs/mine/model.keras" in block.text and "--out runs/mine" not in block.text:
        trained = request.getfixturevalue("trained_mlp")
        (tmp_path / "runs" / "mine").mkdir()
        for name in ("model.keras", "metrics.json"):
            shutil.copyfile(trained.parent / name, tmp_path / "runs" / "mine" / name)
    (tmp_path / "examples").symlink_to(ROOT / "examples")  # examples/node, its node_modules from make
    (tmp_path / "bin").mkdir()
    shim = tmp_path / "bin" / "digits"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m digits "$@"\n')
    shim.chmod(0o755)
    return tmp_path


def _env(workspace: Path) -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "PATH": f"{workspace / 'bin'}:{os.environ['PATH']}",
            "MPLBACKEND": "Agg"}


def _shell(command: str, workspace: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-e", "-o", "pipefail", "-c", command], cwd=workspace, env=_env(workspace),
                          capture_output=True, text=True, timeout=900)


def _expected(lines: list[str]) -> re.Pattern:
    parts = ["(?:.*\n)*?" if line == "..." else ".*".join(map(re.escape, line.split("..."))) + "\n"
             for line in lines]
    return re.compile("".join(parts))


def _console(text: str) -> list[tuple[str, list[str]]]:
    steps = []
    for line in text.splitlines():
        if line.startswith("$ "):
            steps.append((line[2:], []))
        else:
            steps[-1][1].append(line)
    return steps


@pytest.mark.parametrize("block", RUN)
def test_block_runs(block: Block, workspace):
    if block.language == "python":
        result = subprocess.run([sys.executable, "-c", block.text], cwd=workspace, env=_env(workspace),
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
        assert result.stdout.strip(), "a Python block prints what it shows"
        return
    if block.language in ("sh", "bash"):
        result = _shell(block.text, workspace)
        assert result.returncode == 0, f"exit {result.returncode}\n{result.stderr[-3000:]}"
        return
    for command, shown in _console(block.text):
        result = _shell(command, workspace)
        assert result.returncode == 0, f"{command}: exit {result.returncode}\n{result.stderr[-3000:]}"
        assert _expected(shown).fullmatch(result.stdout), f"{command}:\n{result.stdout}\nshown:\n" + "\n".join(shown)
