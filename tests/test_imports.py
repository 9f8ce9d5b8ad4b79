"""`import orbitset` and `import orbitset.loaders` need only numpy, torch and webdataset; the import graph of the
package has no cycle and production code never imports the test helpers."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

ALLOWED = ("numpy", "torch", "webdataset")

BLOCKER = textwrap.dedent(
    f"""
    import sys, importlib.abc
    for name in {ALLOWED!r}:
        __import__(name)
    preloaded = {{m.split('.')[0] for m in sys.modules}}

    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            top = name.split('.')[0]
            if top in preloaded or top in sys.stdlib_module_names or top == 'orbitset':
                return None
            raise ImportError(f'blocked third-party import: {{name}}')

    sys.meta_path.insert(0, Blocker())
    """
)


def test_import_needs_only_numpy_torch_webdataset():
    code = BLOCKER + "import orbitset, orbitset.loaders, orbitset.geometry, orbitset.schema, orbitset.shards\nprint('ok')"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_heavy_packages_are_not_imported_by_the_package():
    code = "import sys, orbitset, orbitset.loaders, orbitset.cli\n" "print(sorted(m for m in ('bpy', 'pyrender', 'ray', 'torchvision', 'matplotlib', 'trimesh') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


# --- the import graph of the package ---------------------------------------------------------------------------

PACKAGE = Path(__file__).resolve().parents[1] / "orbitset"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(tree: ast.Module, module: str, is_package: bool, modules: set[str], module_level: bool) -> set[str]:
    """orbitset modules imported by `tree` (the module `module`): at module level only, or anywhere; imports under
    ``if TYPE_CHECKING:`` count (a type-only import still ties two modules together)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if module_level and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    for statement in tree.body:
        visit(statement)
    return {name for name in found if name in modules and name != module}


def _graph(module_level: bool) -> dict[str, set[str]]:
    files = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
    modules = set(files)
    return {
        name: _imports(ast.parse(path.read_text(encoding="utf-8")), name, path.name == "__init__.py", modules, module_level)
        for name, path in files.items()
    }


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of `graph` as a list of modules (first == last), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def walk(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := walk(nxt)) is not None:
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := walk(node)) is not None:
            return found
    return None


def test_cycle_finder_finds_a_cycle_and_accepts_a_tree():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None
    tree = ast.parse("from . import x\nfrom .y import z\nimport orbitset.q\ndef f():\n    import orbitset.late\n")
    modules = {"orbitset.p", "orbitset.p.x", "orbitset.p.y", "orbitset.q", "orbitset.late"}
    assert _imports(tree, "orbitset.p", True, modules, module_level=True) == {"orbitset.p.x", "orbitset.p.y", "orbitset.q"}
    assert "orbitset.late" in _imports(tree, "orbitset.p", True, modules, module_level=False)
    typed = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from orbitset.q import T\n")
    assert "orbitset.q" in _imports(typed, "orbitset.p", True, modules, module_level=True)


def test_package_has_no_module_level_import_cycle():
    graph = _graph(module_level=True)
    assert len(graph) > 50 and graph["orbitset.render.dataset"] >= {"orbitset.shards"}
    assert _cycle(graph) is None, f"import cycle: {' -> '.join(_cycle(graph))}"


def test_no_cycle_even_counting_imports_inside_functions():
    """A deferred import still ties two modules together; the command modules and the CLI may not loop."""
    graph = _graph(module_level=False)
    assert _cycle(graph) is None, f"import cycle (counting deferred imports): {' -> '.join(_cycle(graph))}"


def test_no_production_module_imports_the_test_helpers():
    graph = _graph(module_level=False)
    offenders = sorted(name for name, targets in graph.items() if "orbitset.testing" in targets and name != "orbitset.testing")
    assert offenders == [], f"{offenders} import orbitset.testing (test helpers); take constants from the library instead"
