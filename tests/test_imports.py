"""nexec's modules import each other in one direction only, and nothing inside uses the facades.

Every import counts, at module level or inside a function (a function-level import hides a
cycle from Python's import machinery, not from the design); only imports under
``if TYPE_CHECKING:`` are skipped, since they never run. ``importlib.import_module("...")``
with a literal name counts too. Importing ``a.b.c`` also runs the package ``a.b`` (its
``__init__``), so that is an edge as well, except for the root package ``nexec``: it is the
facade that imports everything, and it always runs first.
"""
from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1] / "nexec"

#: The one edge against the layering: the registry registers nexec's own built-in plugin.
SANCTIONED = {("nexec.plugins.manager", "nexec.plugins.builtin")}

#: Public facades for users and plugin authors; nothing inside nexec imports them.
FACADES = {"nexec", "nexec.plugin", "nexec.testing"}
#: The modules that are facades themselves (``nexec.plugin`` re-exports ``nexec.testing``).
FACADE_MODULES = {"nexec", "nexec.plugin"}


# ----- the import graph -------------------------------------------------------------------
def module_files(root: pathlib.Path) -> dict[str, pathlib.Path]:
    """Every module of the package at ``root`` by dotted name (a package by its own name)."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imported_names(source: str, module: str, is_package: bool) -> list[str]:
    """Absolute names imported by ``source`` (the module ``module``), anywhere but under
    ``if TYPE_CHECKING:``. ``from a import b`` gives ``a`` and ``a.b`` (``b`` may be a
    module or a name in ``a``); relative imports are made absolute."""
    package = module if is_package else module.rpartition(".")[0]
    names: list[str] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            names.append(base)
            names.extend(f"{base}.{alias.name}" for alias in node.names)
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr == "import_module" and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            names.append(node.args[0].value)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(source))
    return names


def resolve(name: str, modules: set[str]) -> str | None:
    """The module ``name`` runs: itself, or the longest module it names something inside."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def import_graph(root: pathlib.Path = ROOT) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """(explicit, all) edges between modules: ``explicit`` holds what each module names,
    ``all`` adds the packages each import runs on the way (below the root package)."""
    files = module_files(root)
    modules = set(files)
    explicit: dict[str, set[str]] = {m: set() for m in files}
    full: dict[str, set[str]] = {m: set() for m in files}
    for module, path in files.items():
        for name in imported_names(path.read_text(), module, path.name == "__init__.py"):
            target = resolve(name, modules)
            if target is None or target == module:
                continue
            explicit[module].add(target)
            parts = target.split(".")
            for i in range(2, len(parts) + 1):  # a.b.c runs a.b first (the root a is left out)
                step = ".".join(parts[:i])
                if step in modules and step != module and not module.startswith(step + "."):
                    full[module].add(step)
    return explicit, full


def strongly_connected(edges: dict[str, set[str]]) -> list[list[str]]:
    """The cycles of a directed graph: its strongly connected components of two or more
    nodes, each sorted (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return sorted(found)


def _describe(component: list[str], edges: dict[str, set[str]]) -> str:
    inside = set(component)
    arrows = [f"{a} -> {b}" for a in component for b in sorted(edges[a] & inside)]
    return f"{', '.join(component)} ({'; '.join(arrows)})"


# ----- the checks of the checker ----------------------------------------------------------
def test_cycle_finder_finds_cycles_and_only_cycles():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"f"}, "f": {"e"},
             "g": set()}
    assert strongly_connected(graph) == [["a", "b", "c"], ["e", "f"]]
    assert strongly_connected({"a": {"b"}, "b": {"c"}, "c": set(), "d": {"a", "c"}}) == []
    chain = {str(i): {str(i + 1)} for i in range(3000)} | {"3000": {"0"}}  # deep: no recursion
    assert len(strongly_connected(chain)[0]) == 3001


def test_import_walk_counts_function_level_imports_and_skips_type_checking():
    source = '''
import typing
from typing import TYPE_CHECKING
from . import sibling
from ..up import thing
if TYPE_CHECKING:
    from pkg.hidden import Hidden
if typing.TYPE_CHECKING:
    import pkg.hidden2
else:
    import pkg.shown_else


def late():
    import importlib
    from pkg.lazy import x
    return importlib.import_module("pkg.by_name")
'''
    names = imported_names(source, "pkg.sub.mod", is_package=False)
    for name in ("pkg.sub", "pkg.sub.sibling", "pkg.up", "pkg.up.thing", "pkg.shown_else",
                 "pkg.lazy", "pkg.lazy.x", "pkg.by_name"):
        assert name in names, name
    assert not any("hidden" in n for n in names)
    modules = {"pkg", "pkg.sub", "pkg.sub.mod", "pkg.sub.sibling", "pkg.up", "pkg.lazy"}
    assert resolve("pkg.lazy.x", modules) == "pkg.lazy"
    assert resolve("numpy.linalg", modules) is None


def test_a_cycle_in_a_package_is_found(tmp_path):
    pkg = tmp_path / "toy"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from toy.sub.b import g\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "b.py").write_text("from toy import a\n")
    explicit, full = import_graph(pkg)
    assert explicit["toy.a"] == {"toy.sub.b"} and full["toy.a"] == {"toy.sub", "toy.sub.b"}
    assert strongly_connected(full) == [["toy.a", "toy.sub.b"]]


# ----- nexec ------------------------------------------------------------------------------
def test_nexec_has_no_import_cycles():
    _, edges = import_graph()
    for a, b in SANCTIONED:
        assert b in edges[a], f"the sanctioned edge {a} -> {b} is gone: drop it from SANCTIONED"
        edges[a].discard(b)
    cycles = strongly_connected(edges)
    assert not cycles, "import cycles: " + " | ".join(_describe(c, edges) for c in cycles)


@pytest.mark.parametrize("low, above", [
    ("nexec.graph", {"nexec.layers", "nexec.model", "nexec.planner", "nexec.plugins"}),
    ("nexec.plugins.manager", {"nexec.layers", "nexec.ops", "nexec.model", "nexec.planner",
                               "nexec.kernels.cpu", "nexec.runtime", "nexec.training"}),
    ("nexec.planner.lowering", {"nexec.model"}),
    ("nexec.planner.plan", {"nexec.model"}),
    ("nexec.model", {"nexec.saving", "nexec.summary", "nexec.plot", "nexec.cli"}),
    ("nexec.io", {"nexec"}),
])
def test_low_modules_do_not_reach_up(low, above):
    explicit, edges = import_graph()
    for a, b in SANCTIONED:
        edges[a].discard(b)
    reached, todo = set(), [low]
    while todo:
        for nxt in edges[todo.pop()] - reached:
            reached.add(nxt)
            todo.append(nxt)
    bad = sorted(m for m in reached | explicit[low]
                 if any(m == a or m.startswith(a + ".") for a in above))
    assert not bad, f"{low} imports (directly or not) {bad}"


def test_the_registry_imports_only_errors_hookspecs_and_activations():
    explicit, _ = import_graph()
    inside = {m for m in explicit["nexec.plugins.manager"]} - {t for _, t in SANCTIONED}
    assert inside <= {"nexec.errors", "nexec.plugins.hookspecs", "nexec.activations"}, inside


def test_nothing_inside_imports_the_public_facades():
    explicit, _ = import_graph()
    offenders = {m: sorted(explicit[m] & FACADES) for m in explicit
                 if m not in FACADE_MODULES and explicit[m] & FACADES}
    assert not offenders, offenders
