"""The shape of the code, checked from its imports: no cycles, no upward arrows.

Every import of the three packages is read with `ast` — module level and
inside functions alike — and resolved to the project module it names. Two
rules follow from docs/ARCHITECTURE.md:

- no import cycle among the project's modules (a package's ``__init__``
  counts as a module of its own; importing ``pkg.mod`` does not count as
  importing ``pkg``'s ``__init__``);
- the rooms point one way: ``statemachine`` imports nothing of ours;
  ``activities`` imports nothing of ``engine`` (it may use the pure language's
  quotas and errors); ``engine`` imports both.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("statemachine", "activities", "engine")
# room -> the rooms it may import
ALLOWED = {
    "statemachine": {"statemachine"},
    "activities": {"activities", "statemachine"},
    "engine": {"engine", "activities", "statemachine"},
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            found[_module_name(path)] = path
    return found


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The project modules that module `name` imports, anywhere in its body."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    targets: set[str] = set()

    def resolve(base: str, names: list[str]) -> None:
        for item in names:
            candidate = f"{base}.{item}" if base else item
            if candidate in known:
                targets.add(candidate)  # `from pkg import submodule`
            elif base in known:
                targets.add(base)  # `from module import name`

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in known:
                    targets.add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = name if is_package else name.rpartition(".")[0]
                for _ in range(node.level - 1):
                    package = package.rpartition(".")[0]
                base = f"{package}.{node.module}" if node.module else package
            else:
                base = node.module or ""
            resolve(base, [alias.name for alias in node.names])
    targets.discard(name)
    return targets


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: _imports(name, path, known) for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
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


def test_the_graph_is_read() -> None:
    graph = _graph()
    # A sanity floor: the reader resolves the imports it must see.
    assert "engine.api" in graph and "engine.store" in graph["engine.api"]
    assert "statemachine.errors" in graph["statemachine"]


def test_no_import_cycles() -> None:
    cycles = _cycles(_graph())
    assert cycles == [], "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_rooms_point_one_way() -> None:
    upward = [
        f"{name} imports {target}"
        for name, targets in sorted(_graph().items())
        for target in sorted(targets)
        if target.split(".")[0] not in ALLOWED[name.split(".")[0]]
    ]
    assert upward == []


def test_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
