"""The package's shape, read from its code with ast: no import cycles, the layers import one
way (runtimes read the file contract, never the exporters), and no function grows into a
god function. Imports inside functions count: they are still a dependency."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "edgeify"
# (importer, imported): a dependency that must not exist, by module prefix
FORBIDDEN = [("edgeify.runtimes", "edgeify.export"), ("edgeify.runtimes", "edgeify.targets"),
             ("edgeify.families", "edgeify.export"), ("edgeify.families", "edgeify.runtimes"),
             ("edgeify.calibration", "edgeify.export"), ("edgeify.compress", "edgeify.export"),
             ("edgeify.export", "edgeify.targets"), ("edgeify.contract", "edgeify."),
             ("edgeify.config", "edgeify.pipeline")]
MAX_FUNCTION_LINES = 80
MAX_PIPELINE_LINES = 250


def _module_of(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_of(p): p for p in sorted(ROOT.rglob("*.py"))}


def _imported(module: str, path: Path, tree: ast.AST) -> set[str]:
    """The edgeify modules `module` depends on. A package's __init__ importing its own
    submodules is a registry loading its plugins, not a dependency on them."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            stem = node.module or ""
            if node.level:
                base = module.split(".")[: len(module.split(".")) - node.level + is_package]
                stem = ".".join(base + ([node.module] if node.module else []))
            names = [f"{stem}.{a.name}" if f"{stem}.{a.name}" in MODULES else stem for a in node.names]
        else:
            continue
        for name in names:
            while name and name not in MODULES:
                name = name.rpartition(".")[0]
            if name and name != module and not (is_package and name.startswith(module + ".")):
                found.add(name)
    return found


def _graph() -> dict[str, set[str]]:
    return {m: _imported(m, p, ast.parse(p.read_text(), str(p))) for m, p in MODULES.items()}


def _cycle_from(start: str, graph: dict[str, set[str]]) -> list[str] | None:
    """A path start -> ... -> start, if there is one (depth-first, iterative)."""
    stack, seen = [(start, [start])], set()
    while stack:
        node, path = stack.pop()
        for nxt in sorted(graph[node]):
            if nxt == start:
                return path + [start]
            if nxt not in seen:
                seen.add(nxt)
                stack.append((nxt, path + [nxt]))
    return None


def test_the_walk_sees_the_package():
    graph = _graph()
    assert len(graph) > 50
    assert "edgeify.contract" in graph["edgeify.runtimes.openvino_runner"]  # the reader reads the contract
    assert "edgeify.config" in graph["edgeify.pipeline"]


def test_a_cycle_is_found_when_there_is_one():
    assert _cycle_from("a", {"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle_from("a", {"a": {"b"}, "b": set()}) is None


def test_no_import_cycles():
    graph = _graph()
    cycles = [c for m in graph if (c := _cycle_from(m, graph))]
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


@pytest.mark.parametrize("importer, imported", FORBIDDEN)
def test_layers_import_one_way(importer, imported):
    breaches = [f"{m} imports {t}" for m, ts in _graph().items() if m == importer or m.startswith(importer + ".")
                for t in ts if t == imported or t.startswith(imported if imported.endswith(".") else imported + ".")]
    assert not breaches, "\n".join(breaches)


def test_no_function_over_80_lines():
    long = []
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long.append(f"{module}.{node.name}: {n} lines")
    assert not long, "\n".join(long)


def test_the_pipeline_stays_thin():
    n = len((ROOT / "pipeline.py").read_text().splitlines())
    assert n < MAX_PIPELINE_LINES, f"edgeify/pipeline.py has {n} lines"
