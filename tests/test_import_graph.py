"""The serving core's imports: no torch or training code on `cache-proxy serve`, no cycles."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("cache_proxy", "cache_tools")
# What the serving core must never load (the offline tools' extras).
OFFLINE_ONLY = ("torch", "sentence_transformers", "transformers", "sklearn", "matplotlib",
                "onnx", "tqdm", "joblib", "cache_tools.evaluation", "cache_tools.export.embedder",
                "cache_tools.verifiers")  # fmt: skip

SERVE = """
import json, sys
import cache_proxy.app, cache_proxy.cli
from cache_proxy.config import EmbeddingSettings
from cache_proxy.embedding.loader import load_embedder
load_embedder(EmbeddingSettings(onnx_dir=sys.argv[1])).encode(["warm-up"])
cache_proxy.cli.build_parser()
print(json.dumps(sorted(sys.modules)))
"""


def test_serving_loads_no_torch_and_no_tool_code(onnx_export_dir: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", SERVE, onnx_export_dir],
        capture_output=True, text=True, check=True, cwd=REPO,
    )  # fmt: skip
    loaded = json.loads(result.stdout)
    found = [m for m in loaded if any(m == o or m.startswith(o + ".") for o in OFFLINE_ONLY)]
    assert found == []
    assert "onnxruntime" in loaded and "cache_proxy.embedding.onnx" in loaded  # it did run


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """Project modules `path` imports anywhere in its body (function-level imports included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        found.update(name for name in names if name in modules)
    return found


def import_graph() -> dict[str, set[str]]:
    files = [p for package in PACKAGES for p in (REPO / package).rglob("*.py")]
    modules = {_module_name(p): p for p in files}
    graph = {name: _imports(path, set(modules)) for name, path in modules.items()}
    for name, edges in graph.items():  # a submodule importing its own package is no cycle
        edges.difference_update({n for n in edges if name.startswith(n + ".")})
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while (top := stack.pop()) != node:
                component.append(top)
            component.append(node)
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles() -> None:
    graph = import_graph()
    assert len(graph) > 50  # it read the packages
    assert cycles(graph) == []


def test_the_runtime_never_imports_the_tools() -> None:
    graph = import_graph()
    allowed = {("cache_proxy.cli", "cache_tools.commands")}  # the CLI dispatches to the tools
    crossing = {
        (name, target)
        for name, edges in graph.items()
        if name.startswith("cache_proxy")
        for target in edges
        if target.startswith("cache_tools")
    }
    assert crossing == allowed


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
