"""The README stays short and true, and the docs pages it links to exist; their commands
exist as written (tests/test_docs.py runs them)."""

import re
import shlex

import typer

from digits.cli import app
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text()
PAGES = ("classify", "train", "export", "edge", "cluster", "reliability", "performance", "decisions")
DOCS = {path.name: path.read_text() for path in sorted((ROOT / "docs").glob("*.md"))}


def command_lines() -> list[list[str]]:
    """Every `digits ...` and `make ...` invocation in the shell blocks of the README and the
    docs pages, as argument lists (a console block's commands are its `$ ` lines)."""
    commands = []
    for text in (README, *DOCS.values()):
        for language, block in re.findall(r"```(sh|console|bash)\n(.*?)```", text, flags=re.S):
            for line in block.splitlines():
                if language == "console":
                    if not line.startswith("$ "):
                        continue
                    line = line[2:]
                line = line.split("  #")[0].strip()
                for part in line.split("|"):
                    words = shlex.split(part.strip())
                    if words and words[0] in ("digits", "make"):
                        commands.append(words)
    return commands


def test_readme_is_read_in_five_minutes_and_links_every_page():
    assert len(README.splitlines()) <= 300
    for page in PAGES:
        assert f"(docs/{page}.md)" in README, page
        assert f"{page}.md" in DOCS, page
    assert "(benchmarks/results.md)" in README


def test_readme_has_the_two_commands_and_every_subcommand_is_documented():
    commands = command_lines()
    assert ["make", "demo"] in commands and ["make", "test"] in commands
    used = {c[1] for c in commands if c[0] == "digits" and len(c) > 1}
    assert {"train", "evaluate", "export", "inspect", "bench", "classify", "models"} <= used


def test_every_digits_command_in_the_docs_parses():
    group = typer.main.get_command(app)
    for words in command_lines():
        if words[0] != "digits" or words[1:] == ["--help"]:
            continue
        command = group.commands.get(words[1])
        assert command is not None, f"docs run unknown command: {' '.join(words)}"
        known = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
        for word in words[2:]:
            if word.startswith("--"):
                assert word.split("=")[0] in known, f"docs use unknown option {word}: {' '.join(words)}"
        # Parsing (not running) checks arity and values: a bad line raises a usage error.
        command.make_context("digits", words[2:], resilient_parsing=False)


def test_every_make_target_in_the_docs_exists():
    makefile = (ROOT / "Makefile").read_text()
    for words in command_lines():
        if words[0] == "make":
            assert re.search(rf"^{words[1]}:", makefile, flags=re.M), words


def test_make_bench_numbers_live_in_results_md_alone():
    """The pages link to benchmarks/results.md; none copies its table."""
    results = (ROOT / "benchmarks" / "results.md").read_text()
    header = next(line for line in results.splitlines() if line.startswith("| benchmark |"))
    rows = [line for line in results.split("\n## ")[0].splitlines() if line.startswith("| ") and "---" not in line]
    for name, text in {"README.md": README, **DOCS}.items():
        assert header not in text, name
        for row in rows[1:]:
            measured = row.split(" | ")[1]
            assert f"{measured} " not in text and f"{measured})" not in text, (name, measured)
