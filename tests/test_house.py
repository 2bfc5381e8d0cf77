"""The house rules that code review keeps asking for, checked on the source itself: no import
cycle inside ``paper_lib`` and no Python file over 400 lines."""

from __future__ import annotations

import ast
from pathlib import Path

from paper_lib import paths

PACKAGE = paths.root / "paper_lib"
MAX_LINES = 400
CHECKED_FOLDERS = ("paper_lib", "tests", "benchmarks", "notebooks")


def module_name(path: Path) -> str:
    """``paper_lib/predict/rows.py`` → ``paper_lib.predict.rows`` (a package: its __init__)."""
    parts = path.relative_to(paths.root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, modules: set[str]) -> set[str]:
    """The ``paper_lib`` modules that ``path`` imports anywhere: at module level, inside
    functions, under ``if TYPE_CHECKING``. ``from pkg import name`` counts as importing
    ``pkg.name`` where that is a module, else ``pkg``."""
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found |= {f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                      for alias in node.names}
    return {name for name in found if name in modules and name != here}


def import_graph() -> dict[str, set[str]]:
    """Module → the paper_lib modules it imports."""
    files = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(f) for f in files}
    return {module_name(f): imported_modules(f, modules) for f in files}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return out


def test_the_cycle_finder_finds_a_function_level_cycle(tmp_path):
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_imports_are_read_at_every_level(tmp_path, monkeypatch):
    source = tmp_path / "paper_lib" / "stage" / "one.py"
    source.parent.mkdir(parents=True)
    source.write_text("from typing import TYPE_CHECKING\nfrom . import two\nif TYPE_CHECKING:\n"
                      "    from ..leaf import X\ndef f():\n    from .three import g\n")
    monkeypatch.setattr(paths, "root", tmp_path)
    modules = {"paper_lib.stage.one", "paper_lib.stage.two", "paper_lib.stage.three",
               "paper_lib.leaf"}
    assert imported_modules(source, modules) == modules - {"paper_lib.stage.one"}


def test_no_import_cycle_in_paper_lib():
    found = cycles(import_graph())
    assert not found, "import cycles (module- or function-level imports): " + "; ".join(
        " ↔ ".join(component) for component in found)


def test_no_python_file_over_400_lines():
    long = {str(f.relative_to(paths.root)): n for folder in CHECKED_FOLDERS
            for f in sorted((paths.root / folder).rglob("*.py"))
            if ".ipynb_checkpoints" not in f.parts
            and (n := len(f.read_text().splitlines())) > MAX_LINES}
    assert not long, f"files over {MAX_LINES} lines (split them): {long}"
