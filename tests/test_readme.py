"""The README stays true: its commands exist as written, and its Python example runs."""

import os
import re
import shlex
import subprocess
import sys

import numpy as np
import typer

from digits.cli import app
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text()


def fenced(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


def command_lines() -> list[list[str]]:
    """Every `digits ...` and `make ...` invocation in the sh blocks, as argument lists."""
    commands = []
    for block in fenced("sh"):
        for line in block.splitlines():
            line = line.split("  #")[0].strip()
            for part in line.split("|"):
                words = shlex.split(part.strip())
                if words and words[0] in ("digits", "make"):
                    commands.append(words)
    return commands


def test_readme_has_the_two_commands_and_every_subcommand():
    commands = command_lines()
    assert ["make", "demo"] in commands and ["make", "test"] in commands
    used = {c[1] for c in commands if c[0] == "digits" and len(c) > 1}
    assert {"train", "evaluate", "export", "inspect", "bench", "classify"} <= used


def test_every_digits_command_in_the_readme_parses():
    group = typer.main.get_command(app)
    for words in command_lines():
        if words[0] != "digits" or words[1:] == ["--help"]:
            continue
        command = group.commands.get(words[1])
        assert command is not None, f"README runs unknown command: {' '.join(words)}"
        known = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
        for word in words[2:]:
            if word.startswith("--"):
                assert word.split("=")[0] in known, f"README uses unknown option {word}: {' '.join(words)}"
        # Parsing (not running) checks arity and values: a bad line raises a usage error.
        command.make_context("digits", words[2:], resilient_parsing=False)


def test_every_make_target_in_the_readme_exists():
    makefile = (ROOT / "Makefile").read_text()
    for words in command_lines():
        if words[0] == "make":
            assert re.search(rf"^{words[1]}:", makefile, flags=re.M), words


def test_python_examples_run(exported_onnx, small, tmp_path):
    """Each Python block, in a folder holding the files it names (the demo's model and test
    digits; model.onnx and a scans/ folder of PNGs)."""
    import cv2

    (tmp_path / "runs" / "demo").mkdir(parents=True)
    (tmp_path / "runs" / "demo" / "model.onnx").symlink_to(exported_onnx)
    (tmp_path / "model.onnx").symlink_to(exported_onnx)
    np.save(tmp_path / "runs" / "demo" / "test-digits.npy", small.x_test[:10])
    (tmp_path / "scans").mkdir()
    for i in range(5):
        cv2.imwrite(str(tmp_path / "scans" / f"{i}.png"), small.x_test[i])
    examples = fenced("python")
    assert len(examples) == 2
    for example in examples:
        result = subprocess.run([sys.executable, "-c", example], cwd=tmp_path, capture_output=True, text=True,
                                env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip(), example


def test_benchmark_table_is_the_one_make_bench_wrote():
    block = README.split("<!-- make bench: start -->\n")[1].split("<!-- make bench: end -->")[0]
    results = (ROOT / "benchmarks" / "results.md").read_text()
    measured, _, table = block.partition("\n\n")
    assert measured.startswith("Measured ") and " by `make bench` on " in measured  # names the machine
    assert measured in results and table.strip() and table.strip() in results
