"""The package's shape: imports point downward through the layers, and no module imports
another that imports it back (directly or through others), at module level or inside functions."""
from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "lafitebench"

#: Layers from the bottom; a module may import its own layer's package or any lower layer.
LAYERS = [
    {"", "errors", "settings", "registry", "options", "resources"},
    {"io", "runtime"},
    {"assets"},
    {"encoders"},
    {"data", "models"},
    {"checkpoints"},
    {"metrics"},
    {"training", "reports"},
    {"jobs"},
    {"cli", "__main__"},
]
RANK = {name: k for k, layer in enumerate(LAYERS) for name in layer}


def _modules() -> dict[str, Path]:
    out = {}
    for f in PKG.rglob("*.py"):
        parts = f.relative_to(PKG.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = f
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Every lafitebench module ``name`` imports (TYPE_CHECKING blocks excluded)."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found: set[str] = set()

    class Visitor(ast.NodeVisitor):
        def visit_If(self, node: ast.If) -> None:
            if isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
                return
            self.generic_visit(node)

        def visit_Import(self, node: ast.Import) -> None:
            found.update(a.name for a in node.names)

        def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
            base = package[:len(package) - node.level + 1] if node.level else []
            prefix = ".".join(base + ([node.module] if node.module else []))
            for a in node.names:
                found.add(f"{prefix}.{a.name}" if f"{prefix}.{a.name}" in modules else prefix)

    Visitor().visit(ast.parse(path.read_text(encoding="utf-8")))
    out = set()
    for t in found:
        while t not in modules and "." in t:
            t = t.rsplit(".", 1)[0]
        if t in modules and t != name and t.startswith("lafitebench"):
            out.add(t)
    return out


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _layer(module: str) -> int:
    parts = module.split(".")
    return RANK[parts[1] if len(parts) > 1 else ""]


def test_imports_point_downward():
    upward = sorted(f"{m} -> {t}" for m, ts in _graph().items() for t in ts
                    if t != "lafitebench" and _layer(t) > _layer(m))
    assert not upward, "modules importing a higher layer:\n" + "\n".join(upward)


def test_no_import_cycles():
    graph = _graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v] - {"lafitebench"}:  # the package root only re-exports lazily
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_the_checks_see_a_cycle_and_an_upward_import(tmp_path, monkeypatch):
    """The graph is real: a module of the lowest layer importing the CLI is caught as upward."""
    graph = _graph()
    assert "lafitebench.metrics.config" in graph["lafitebench.cli.eval"]
    assert _layer("lafitebench.cli.eval") > _layer("lafitebench.errors")


def test_the_package_root_exports_resolve():
    """``lafitebench.load_model`` and the other lazy names point at real objects."""
    import lafitebench

    for name in lafitebench._LAZY:
        assert callable(getattr(lafitebench, name)), name
