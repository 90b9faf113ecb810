"""The import graph of the project's own code (read from the sources, imports inside
functions included): no cycles, and the decision core reaches no I/O library."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Bottom to top: each may import only those before it (itself included).
PACKAGES = ("backends", "profiles", "serving", "loadtest", "costroute")
# Pure and synchronous: latency and cost models, the grid, tracking, policies, sizing and
# scaling, the simulator. What they import, directly or through each other, must be neither
# a server, a client, an engine nor Ray.
DECISION_CORE = ("profiles.grid", "profiles.latency", "profiles.cost", "profiles.tracking",
                 "serving.policies", "serving.sizing", "serving.scaling", "loadtest.simulator")
IO_LIBRARIES = {"ray", "fastapi", "starlette", "httpx", "vllm", "onnxruntime", "torch",
                "uvicorn", "aiohttp", "requests"}


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for f in (ROOT / pkg).rglob("*.py"):
            parts = f.relative_to(ROOT).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return out


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """Every module `name` imports (absolute names; `from a import b` also counts a.b)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            out.add(base)
            out.update(f"{base}.{a.name}" for a in node.names)
    return out


def _own(imported: str) -> str | None:
    """The project module an import resolves to, or None for another library."""
    while imported and imported not in MODULES:
        imported = imported.rpartition(".")[0]
    return imported or None


GRAPH = {m: {o for i in _imports(m, p) if (o := _own(i)) and o != m} for m, p in MODULES.items()}


def _cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found = []
    for root in sorted(GRAPH):
        if root in index:
            continue
        work = [(root, iter(sorted(GRAPH[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on.add(root)
        while work:
            v, children = work[-1]
            for w in children:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(GRAPH[w]))))
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    component = []
                    while True:
                        w = stack.pop()
                        on.discard(w)
                        component.append(w)
                        if w == v:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def test_the_graph_sees_the_project() -> None:
    assert "serving.policies.base" in GRAPH["serving.policies.cost_slo"]
    assert "loadtest.sweep" in GRAPH["loadtest.commands"]


def test_no_upward_edges() -> None:
    up = sorted(f"{m} -> {d}" for m, deps in GRAPH.items() for d in deps
                if PACKAGES.index(d.split(".")[0]) > PACKAGES.index(m.split(".")[0]))
    assert up == []


def test_no_import_cycles() -> None:
    assert _cycles() == []


def test_the_decision_core_imports_no_io_library() -> None:
    for start in DECISION_CORE:
        seen, todo = set(), [start]
        while todo:
            m = todo.pop()
            if m in seen:
                continue
            seen.add(m)
            todo.extend(GRAPH[m])
        libraries = {i.split(".")[0] for m in seen for i in _imports(m, MODULES[m])} & IO_LIBRARIES
        assert not libraries, f"{start} reaches {sorted(libraries)} through {sorted(seen)}"
