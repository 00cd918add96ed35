"""flux's imports form a DAG (docs/architecture.md, "Layout": imports only go down).

Every module under ``flux/`` is parsed with :mod:`ast` (nothing is imported), and each
``import``/``from ... import`` inside it, at module level or inside a function, is an edge;
imports under ``if TYPE_CHECKING:`` are left out (they never run). A name imported from a
package that is one of its submodules (``from flux.integrations import _report``) is an edge
to that submodule. Importing ``a.b.c`` also runs the packages ``a`` and ``a.b``, but that is
not an edge here: a package's ``__init__`` is already being initialised whenever one of its
submodules is, so it never waits on them.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

# The source tree, read as text: nothing under it is imported.
ROOT = Path(__file__).resolve().parents[1] / "flux"
PACKAGE = "flux"

# Known circles still to break, each edge of each listed once. Remove an entry when it is
# fixed: the test then fails until it is gone from here too. (None left.)
KNOWN_CYCLES: set[frozenset[tuple[str, str]]] = set()


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    # A stub stands for a native module (flux._flux): a node that imports nothing of flux.
    paths = [*ROOT.rglob("*.py"), *ROOT.rglob("*.pyi")]
    return {_module_name(path): path for path in sorted(paths)}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement that can run: TYPE_CHECKING blocks (not their else) skipped."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                yield from _imports(ast.Module(body=[child], type_ignores=[]))
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        yield from _imports(node)


def _absolute(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    if not is_package:
        base.pop()
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def import_graph() -> dict[str, set[str]]:
    """``module -> modules of flux it imports``, for every module under ``flux/``."""
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        if path.suffix == ".pyi":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in _imports(tree):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                source = _absolute(node, name, path.name == "__init__.py")
                # `from package import submodule` imports the submodule; any other name
                # is the package's own.
                targets = [
                    f"{source}.{alias.name}" if f"{source}.{alias.name}" in modules else source
                    for alias in node.names
                ]
            for target in targets:
                if target in modules and target != name:
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
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
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _edges_within(graph: dict[str, set[str]], members: list[str]) -> frozenset[tuple[str, str]]:
    inside = set(members)
    return frozenset((a, b) for a in members for b in graph[a] if b in inside)


def test_the_import_graph_has_no_cycle_but_the_known_ones() -> None:
    graph = import_graph()
    found = {_edges_within(graph, component) for component in cycles(graph)}
    unknown = [sorted(edges) for edges in found - KNOWN_CYCLES]
    assert not unknown, f"import cycles (imports only go down): {unknown}"
    fixed = [sorted(edges) for edges in KNOWN_CYCLES - found]
    assert not fixed, f"fixed, so take them off KNOWN_CYCLES: {fixed}"


# Faces over the integrations: the decorator, and flux.middleware (kept only so that
# `flux.middleware.GlobalLimits` still imports). The integrations serve them, never import them.
FACES = ("flux.decorators", "flux.middleware")


def test_the_integrations_import_no_face_above_them() -> None:
    graph = import_graph()
    upward = sorted(
        (module, target)
        for module, targets in graph.items()
        if module.startswith("flux.integrations")
        for target in targets
        if target in FACES
    )
    assert not upward, f"imports going up: {upward}"
    users = sorted(module for module, targets in graph.items() if "flux.middleware" in targets)
    assert not users, f"flux.middleware is a compatibility name only; import _global: {users}"


def test_the_graph_sees_function_level_imports_and_skips_type_checking() -> None:
    graph = import_graph()
    # The reporter imports the analytics entry points inside a function: a real edge.
    assert "flux.analytics.events" in graph["flux.integrations._report"]
    # Only under TYPE_CHECKING (for annotations) in _policies: no edge.
    assert "flux.integrations._check" not in graph["flux.integrations._policies"]


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]


# The request path in flux/integrations (and the identity, its second step), in the order a
# request meets it (docs/architecture.md, "Layout"): each imports only modules listed before it.
PIPELINE = [
    "flux.integrations._report",
    "flux.integrations._common",
    "flux.integrations",
    "flux.identity",
    "flux.integrations._unavailable",
    "flux.integrations._declared",
    "flux.integrations._policies",
    "flux.integrations._rule",
    "flux.integrations._chosen",
    "flux.integrations._pending",
    "flux.integrations._hit",
    "flux.integrations._check",
    "flux.integrations._failure",
    "flux.integrations._evaluate",
    "flux.integrations._global",
    "flux.integrations.django",
    "flux.integrations.fastapi",
    "flux.integrations.flask",
]


def test_the_request_path_imports_only_what_comes_before() -> None:
    graph = import_graph()
    integrations = sorted(
        m for m in graph if m.startswith("flux.integrations") or m == "flux.identity"
    )
    assert sorted(PIPELINE) == integrations, "a new module: give it its place in PIPELINE"
    later = sorted(
        (module, target)
        for at, module in enumerate(PIPELINE)
        for target in graph[module]
        if target in PIPELINE[at + 1 :]
    )
    assert not later, f"imports going up the request path: {later}"
