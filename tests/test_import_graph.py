"""The project's own modules import one way and stay small (STYLE.md 6 and 6a).

Read from the source with `ast`, nothing is imported. Every import is an edge, wherever it is:
a function-level import that dodges a circle hides the circle, it does not remove it (as
../shared/tools/structure.py counts them). Only imports under `if TYPE_CHECKING:` are left out.
Importing `a.b` also runs `a/__init__.py`; that implicit edge is left out, so a package that
re-exports its submodules is a circle only when one of them imports the package back.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = (
    "aiworkforce",
    "employees",
    "tasks",
    "approvals",
    "mailboxes",
    "dashboard",
    "office",
    "anomalies",
    "evaluations",
)
SKIPPED_DIRS = {"migrations", "tests", "benchmarks", "__pycache__"}
MAX_LINES = 600


def project_modules() -> dict[str, Path]:
    """Dotted module name -> source file, for every module of the project's packages."""
    modules = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = path.relative_to(ROOT)
            if SKIPPED_DIRS.intersection(relative.parts[:-1]):
                continue
            parts = list(relative.with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def all_imports(body: list[ast.stmt]):
    """Every Import and ImportFrom node in this body, nested ones included, but for the
    blocks under `if TYPE_CHECKING:` (they never run)."""
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from all_imports(node.orelse)
        else:
            for field in ("body", "orelse", "finalbody", "handlers", "cases"):
                for child in getattr(node, field, None) or []:
                    if isinstance(child, ast.stmt):
                        yield from all_imports([child])
                    else:  # an except handler or a match case: statements inside
                        yield from all_imports(child.body)


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The project module `name` names, or the nearest project package above it."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in all_imports(ast.parse(path.read_text(), str(path)).body):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    above = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*above, base] if base else above)
                # `from pkg import name` is pkg.name when that is a module, else pkg itself.
                targets = [f"{base}.{alias.name}" for alias in node.names]
            for target in targets:
                resolved = _resolve(target, modules)
                if resolved is not None and resolved != name:
                    graph[name].add(resolved)
    return graph


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative; the components of more than one module, sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            for successor in successors:
                if successor not in index:
                    index[successor] = low[successor] = len(index)
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(sorted(graph[successor]))))
                    break
                if successor in on_stack:
                    low[node] = min(low[node], index[successor])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        components.append(sorted(component))
    return sorted(components)


def _describe(component: list[str], graph: dict[str, set[str]]) -> str:
    inside = set(component)
    edges = [f"{a} -> {b}" for a in component for b in sorted(graph[a] & inside)]
    return f"circle of {len(component)}: {', '.join(component)}\n    " + "\n    ".join(edges)


def test_the_project_modules_import_one_another_without_circles():
    graph = import_graph(project_modules())
    circles = strongly_connected(graph)
    assert not circles, "import circles:\n" + "\n".join(
        _describe(component, graph) for component in circles
    )


def test_no_project_module_is_over_600_lines():
    sizes = {
        path.relative_to(ROOT).as_posix(): len(path.read_text().splitlines())
        for path in project_modules().values()
    }
    oversized = sorted(((lines, path) for path, lines in sizes.items() if lines > MAX_LINES))
    assert not oversized, f"modules over {MAX_LINES} lines (make them packages):\n" + "\n".join(
        f"    {path}: {lines} lines" for lines, path in reversed(oversized)
    )


def test_the_graph_sees_circles_through_function_level_imports(tmp_path):
    """The reader itself: circles are found wherever the imports are, but TYPE_CHECKING's."""
    (tmp_path / "a.py").write_text("from b import x\n")
    (tmp_path / "b.py").write_text("import c\n")
    (tmp_path / "c.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import b\ntry:\n    import a\n"
        "except ImportError:\n    pass\n"
    )
    (tmp_path / "d.py").write_text("def f():\n    import a\n")
    (tmp_path / "e.py").write_text("import d\n")
    modules = {path.stem: path for path in tmp_path.glob("*.py")}

    graph = import_graph(modules)

    assert graph == {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"d"}}
    assert strongly_connected(graph) == [["a", "b", "c"]]
    (tmp_path / "a.py").write_text("from b import x\ndef f():\n    import e\n")

    assert strongly_connected(import_graph(modules)) == [["a", "b", "c", "d", "e"]]
