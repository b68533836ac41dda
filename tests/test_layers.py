"""The package graph stays a picture a newcomer can trust: layers, imports downward only, no cycles.

Read from the code with `ast` (module-level and lazy imports alike), as
../shared/tools/layers.py does.
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Each package may import only those below it.
LAYERS = ["core", "batch", "trainer", "exporter", "digits"]


def _modules() -> dict[str, Path]:
    modules = {}
    for package in LAYERS:
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            modules[name.removesuffix(".__init__")] = path
    return modules


def _imports(path: Path, modules: dict) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            if name.split(".")[:2] in [["digits", layer] for layer in LAYERS[:-1]]:
                name = name.removeprefix("digits.")  # digits.batch.run is the folder batch/'s run.py
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name:
                found.add(name)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(path, modules) - {name} for name, path in modules.items()}


def test_every_import_points_down_the_layers():
    upward = []
    for module, imported in _graph().items():
        level = LAYERS.index(module.split(".")[0])
        for target in imported:
            if LAYERS.index(target.split(".")[0]) > level:
                upward.append(f"{module} -> {target}")
    assert not upward, "imports that point up the layers " + " > ".join(LAYERS) + ": " + ", ".join(sorted(upward))


def test_the_core_package_imports_nothing_of_ours_but_itself():
    outside = [f"{m} -> {t}" for m, ts in _graph().items() if m.startswith("core") for t in ts
               if not t.startswith("core")]
    assert not outside, outside


def test_no_module_imports_itself_in_a_cycle():
    graph = _graph()
    cycles, state = [], {}

    def visit(node, path):
        state[node] = "open"
        for target in graph[node]:
            if state.get(target) == "open":
                cycles.append(path[path.index(target):] + [target])
            elif target not in state:
                visit(target, path + [target])
        state[node] = "done"

    for module in graph:
        if module not in state:
            visit(module, [module])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_the_check_sees_an_upward_import(tmp_path, monkeypatch):
    """The checks above can fail: a core module importing batch is an upward import."""
    module = ROOT / "core" / "contract.py"
    found = _imports(module, _modules())
    assert not any(name.startswith("batch") for name in found)
    fake = tmp_path / "fake.py"
    fake.write_text("def f():\n    from digits.batch.run import classify\n")
    assert "batch.run" in _imports(fake, _modules())
