"""No import circle inside panosamic: neither between modules nor between its packages.

Every ``import`` counts, also those inside functions and under ``TYPE_CHECKING``:
a circle that only shows at run time is still a circle to a reader.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "panosamic"
# Scripts, not library: the model card runs them by path (python panosamic/evaluation/evaluate.py).
SCRIPT_SHIMS = {"panosamic.evaluation.evaluate", "panosamic.evaluation.train"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> the panosamic modules it imports."""
    modules = {
        module_name(p): p for p in PACKAGE.rglob("*.py") if module_name(p) not in SCRIPT_SHIMS
    }
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets |= {a.name for a in node.names if a.name.split(".")[0] == "panosamic"}
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    origin = ".".join(base + ([node.module] if node.module else []))
                else:
                    origin = node.module or ""
                if origin.split(".")[0] != "panosamic":
                    continue
                for alias in node.names:  # `from . import options` imports a module
                    full = f"{origin}.{alias.name}"
                    targets.add(full if full in modules else origin)
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the directed graph as a list of nodes (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def package_of(module: str) -> str:
    """``panosamic.model.config`` -> ``panosamic.model``; top-level modules stand for themselves."""
    return ".".join(module.split(".")[:2])


def test_no_circle_between_modules():
    graph = import_graph()
    assert len(graph) > 50 and graph["panosamic.model.panosamic"]  # the scan found the code
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_no_circle_between_packages():
    packages: dict[str, set[str]] = {}
    for module, targets in import_graph().items():
        mine = package_of(module)
        packages.setdefault(mine, set()).update(
            package_of(t) for t in targets if package_of(t) != mine
        )
    assert find_cycle(packages) is None, " -> ".join(find_cycle(packages) or [])
    # the layering the design page describes: the bottom knows nothing of the top
    assert packages["panosamic.utils"] == set()
    assert packages["panosamic.instances"] <= {"panosamic.utils", "panosamic.modalities"}
    assert "panosamic.model" not in packages["panosamic.hub"]


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None
