"""The layers, checked on the import graph: the producer never imports worker code, shared imports neither side,
and no module imports another that imports it back (no cycle of any length).

The graph is read statically with `ast` from every file of producer/, worker/ and shared/, so it sees every
import: module-level, function-level (lazy) and those under `if TYPE_CHECKING:` alike. Running the code would
miss the lazy ones, which are exactly the ones that slip in.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("producer", "worker", "shared")
# package -> the packages it must never import
FORBIDDEN = {"producer": {"worker"}, "shared": {"producer", "worker"}}

Graph = Mapping[str, set[str]]


def modules(root: Path = ROOT) -> dict[str, Path]:
    """Every module of our packages by dotted name (a package by its own name, for its __init__.py)."""
    found = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def imported_names(source: str, module: str, is_package: bool) -> Iterator[tuple[str, ...]]:
    """For each name an import in `source` binds, the modules it may come from, most exact first: `import a.b`
    gives (a.b,); `from a import b` gives (a.b, a), as b is a submodule or a name defined in a. Relative
    imports are resolved against `module`."""
    here = module.split(".") if is_package else module.split(".")[:-1]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from ((alias.name,) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = here[:len(here) - node.level + 1] if node.level else []
            parent = ".".join([*base, *([node.module] if node.module else [])])
            yield from ((f"{parent}.{alias.name}", parent) for alias in node.names)


def import_graph(sources: Mapping[str, tuple[str, bool]]) -> dict[str, set[str]]:
    """module -> the modules of `sources` it imports; `sources` is module -> (its source, whether a package)."""
    graph: dict[str, set[str]] = {}
    for module, (source, is_package) in sources.items():
        targets = set()
        for candidates in imported_names(source, module, is_package):
            found = next((c for c in candidates if c in sources), None)
            if found is not None and found != module:
                targets.add(found)
        graph[module] = targets
    return graph


def repo_graph(root: Path = ROOT) -> dict[str, set[str]]:
    return import_graph({m: (p.read_text(), p.name == "__init__.py") for m, p in modules(root).items()})


def layer_violations(graph: Graph) -> list[str]:
    found = []
    for module, targets in sorted(graph.items()):
        banned = FORBIDDEN.get(module.split(".")[0], set())
        found += [f"{module} imports {t}" for t in sorted(targets) if t.split(".")[0] in banned]
    return found


def cycles(graph: Graph) -> list[list[str]]:
    """Each strongly connected component of more than one module (Tarjan's algorithm), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


# --- the rules, on the repository --------------------------------------------------------------------------

def test_the_graph_covers_every_package() -> None:
    graph = repo_graph()
    assert {m.split(".")[0] for m in graph} == set(PACKAGES)
    assert "shared.settings" in graph["shared.redis_conn"]  # a module-level import is seen


def test_the_producer_never_imports_worker_code_and_shared_neither_side() -> None:
    found = layer_violations(repo_graph())
    assert found == [], "layer violations:\n" + "\n".join(found)


def test_no_module_imports_another_that_imports_it_back() -> None:
    found = cycles(repo_graph())
    said = "\n".join(", ".join(c) for c in found)
    assert found == [], f"modules that import each other (directly or round a cycle):\n{said}"


# --- the checker can fail: synthetic graphs and sources with violations --------------------------------------

def test_a_lazy_relative_or_type_only_import_is_an_edge() -> None:
    sources = {
        "producer": ("", True),
        "producer.cli": ("from producer import __version__\n\ndef main():\n    from worker import launcher\n", False),
        "producer.commands": ("from . import fleet\n", True),
        "producer.commands.fleet": ("from ..cli import main\n", False),
        "shared.store": ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import producer.cli\n", False),
        "worker": ("", True),
        "worker.launcher": ("import os\n", False),
    }
    graph = import_graph(sources)
    assert graph["producer.cli"] == {"producer", "worker.launcher"}
    assert graph["producer.commands"] == {"producer.commands.fleet"}
    assert graph["producer.commands.fleet"] == {"producer.cli"}
    assert graph["shared.store"] == {"producer.cli"}
    assert graph["worker.launcher"] == set()  # the standard library is not ours


def test_layer_violations_are_found() -> None:
    graph = {"producer.cli": {"worker.launcher", "shared.settings"}, "shared.settings": {"producer.cli"},
             "shared.store": {"worker.ops"}, "worker.launcher": {"shared.settings", "producer.cli"}}
    assert layer_violations(graph) == ["producer.cli imports worker.launcher", "shared.settings imports producer.cli",
                                       "shared.store imports worker.ops"]


def test_cycles_of_two_and_longer_are_found() -> None:
    graph = {"worker.mlp": {"worker.fastpath"}, "worker.fastpath": {"worker.mlp"},
             "shared.a": {"shared.b"}, "shared.b": {"shared.c"}, "shared.c": {"shared.a", "shared.d"},
             "shared.d": set()}
    assert cycles(graph) == [["shared.a", "shared.b", "shared.c"], ["worker.fastpath", "worker.mlp"]]
    assert cycles({"shared.a": {"shared.b"}, "shared.b": set()}) == []
