"""The package's layout rules (docs/architecture.md): modules small enough to read in one sitting,
and no import cycles, counting the imports inside functions that a top-level reading misses."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "sortsight"
MAX_LINES = 500


def _module_name(path: Path, package: Path = PACKAGE) -> str:
    parts = list(path.relative_to(package.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str], root: Path = PACKAGE) -> set[str]:
    """Every sortsight module ``path`` imports, at the top or inside a function (TYPE_CHECKING
    blocks left out: they never run)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    checking = {
        id(node)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
        for stmt in block.body
        for node in ast.walk(stmt)
    }
    me = _module_name(path, root)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in checking:
            continue
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                kept = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(kept + ([base] if base else []))
            names = [f"{base}.{a.name}" for a in node.names] + [base]
        else:
            continue
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name != me and not me.startswith(name + "."):
                found.add(name)
    return found


def _graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    files = {_module_name(p, package): p for p in package.rglob("*.py")}
    return {name: _imports(path, set(files), package) for name, path in files.items()}


def _cycles(graph: dict[str, set[str]]) -> list[str]:
    cycles: list[str] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*stack[stack.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return cycles


def test_no_module_is_over_500_lines():
    long = {
        str(p.relative_to(PACKAGE.parent)): n
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert long == {}


def test_the_package_has_no_import_cycle_even_through_function_level_imports():
    graph = _graph()
    assert "sortsight.training.loop" in graph["sortsight.training.tags"]  # function-level imports count
    assert "sortsight.training.plan" not in graph["sortsight.training.run_dir"]  # TYPE_CHECKING ones don't
    assert _cycles(graph) == []


def test_the_cycle_finder_sees_a_cycle_through_function_level_and_relative_imports(tmp_path):
    pkg = tmp_path / "sortsight"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from sortsight.sub import b\n")
    (pkg / "sub" / "b.py").write_text("def g():\n    from ..a import f\n")
    graph = _graph(pkg)
    assert graph["sortsight.a"] == {"sortsight.sub", "sortsight.sub.b"}  # a package runs its __init__
    assert graph["sortsight.sub.b"] == {"sortsight.a"}
    assert _cycles(graph) == ["sortsight.a -> sortsight.sub.b -> sortsight.a"]
