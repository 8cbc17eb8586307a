"""The house keeps its shape: imports flow one way through the layers, and no files import each other in a circle.

    atomic, paths, hardware < config, aliases < models < data < retrieval, generate < filters, evaluate < train, rag
    < pipeline < cli

Every `import` and `from ... import` of every module under src/ragtune counts, also those inside functions (the
lazy ones) and under TYPE_CHECKING. A module may import its own layer and the layers below, never one above.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"

LAYERS: dict[str, int] = {
    # leaf utilities: the package face (__version__), atomic writers, where data and caches live (and their
    # listing and pruning), devices
    "ragtune": 0, "ragtune.atomic": 0, "ragtune.paths": 0, "ragtune.cache": 0, "ragtune.hardware": 0,
    "ragtune.config": 1,  # config classes, YAML + key=value loading (writes through atomic)
    "ragtune.aliases": 1,  # other tools' key names for ragtune's config keys (read by config)
    "ragtune.models": 2,  # default names, name -> local path, the causal-LM loader (raises ConfigError)
    "ragtune.data": 3,
    "ragtune.retrieval": 4, "ragtune.generate": 4,
    "ragtune.filters": 5, "ragtune.evaluate": 5,
    "ragtune.train": 6, "ragtune.rag": 6,
    "ragtune.pipeline": 7,
    "ragtune.cli": 8, "ragtune.cli_tables": 8, "ragtune.cli_plain": 8, "ragtune.cli_cache": 8,
}


def module_names(src: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file under src (packages by their __init__)."""
    out = {}
    for path in sorted(src.rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def imported(module: str, path: Path, known: set[str]) -> set[str]:
    """The modules of `known` that `module` imports anywhere in its file (functions included)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import: climb from this module's package
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            # `from ragtune.x import y` imports the module ragtune.x.y when there is one
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        for name in names:
            while name and name not in known:  # `import ragtune.data.beir.x`-style names: the longest known module
                name = name.rpartition(".")[0]
            if name and name != module:
                found.add(name)
    return found


def import_graph(src: Path) -> dict[str, set[str]]:
    modules = module_names(src)
    known = set(modules)
    return {m: imported(m, p, known) for m, p in modules.items()}


def layer(module: str) -> int:
    # a package's prefix covers its submodules; "ragtune" itself is only the package face
    owner = max((p for p in LAYERS if module == p or (p != "ragtune" and module.startswith(p + "."))), key=len,
                default=None)
    if owner is None:
        raise KeyError(f"{module} belongs to no layer: add it to LAYERS in {Path(__file__).name}")
    return LAYERS[owner]


def upward(graph: dict[str, set[str]]) -> list[str]:
    return sorted(f"{a} (layer {layer(a)}) imports {b} (layer {layer(b)})"
                  for a, targets in graph.items() for b in targets if layer(b) > layer(a))


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
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
    return found


def test_every_module_has_a_layer():
    for module in import_graph(SRC):
        layer(module)


def test_no_lower_layer_imports_a_higher_one():
    assert upward(import_graph(SRC)) == []


def test_no_import_cycles():
    assert cycles(import_graph(SRC)) == []


def _tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_a_planted_upward_import_is_caught(tmp_path):
    """data/ reaching up into pipeline/ from inside a function, and a relative import reaching up to cli."""
    src = _tree(tmp_path, {
        "ragtune/__init__.py": "",
        "ragtune/data/__init__.py": "",
        "ragtune/data/beir.py": "def load():\n    from ragtune.pipeline.loop import RunConfig\n    return RunConfig\n",
        "ragtune/data/trec.py": "from .. import cli\n",
        "ragtune/pipeline/__init__.py": "",
        "ragtune/pipeline/loop.py": "from ragtune.data import beir\nRunConfig = object\n",
        "ragtune/cli.py": "",
    })
    graph = import_graph(src)
    assert graph["ragtune.data.beir"] == {"ragtune.pipeline.loop"} and graph["ragtune.data.trec"] == {"ragtune.cli"}
    assert upward(graph) == ["ragtune.data.beir (layer 3) imports ragtune.pipeline.loop (layer 7)",
                             "ragtune.data.trec (layer 3) imports ragtune.cli (layer 8)"]
    assert cycles(graph) == [["ragtune.data.beir", "ragtune.pipeline.loop"]]


def test_a_planted_circle_in_one_layer_is_caught(tmp_path):
    src = _tree(tmp_path, {
        "ragtune/__init__.py": "",
        "ragtune/data/__init__.py": "",
        "ragtune/data/formats.py": "from ragtune.data.records import Record\n",
        "ragtune/data/records.py": "import ragtune.data.validate\nRecord = object\n",
        "ragtune/data/validate.py": "def check():\n    from ragtune.data import formats\n",
    })
    graph = import_graph(src)
    assert upward(graph) == []
    assert cycles(graph) == [["ragtune.data.formats", "ragtune.data.records", "ragtune.data.validate"]]


def test_a_module_outside_every_layer_is_reported(tmp_path):
    src = _tree(tmp_path, {"ragtune/__init__.py": "", "ragtune/plugins/x.py": ""})
    with pytest.raises(KeyError, match="ragtune.plugins.x belongs to no layer"):
        [layer(m) for m in import_graph(src)]
