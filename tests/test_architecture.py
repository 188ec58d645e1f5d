"""The layout is the data flow: no import cycles between library modules, lazy imports included,
and the folders keep to the order video -> store -> extraction -> labels -> probes ->
evaluation -> search/pipeline -> bench -> session -> cli."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"prism_science": ROOT / "prism_science", "prism_training": ROOT / "training"}


def _module_name(package: str, folder: Path, path: Path) -> str:
    parts = [package, *path.relative_to(folder).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    found = {}
    for package, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            found[_module_name(package, folder, path)] = path
    return found


def _imports(path: Path, name: str, known: set[str]) -> set[str]:
    """Every library module ``name`` imports, at module level or inside functions."""
    is_package = path.name == "__init__.py"
    targets = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = name.split(".")
                parent = parent if is_package else parent[:-1]
                parent = parent[: len(parent) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            candidates = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for candidate in candidates:
            # the deepest known module the import names (a submodule, else its package)
            while candidate and candidate not in known:
                candidate = candidate.rpartition(".")[0]
            if candidate and candidate != name:
                targets.add(candidate)
    return targets


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: _imports(path, name, known) for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
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
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _is_package_init_edge(a: str, b: str) -> bool:
    # a package's __init__ re-exports its own submodules: that edge is not a dependency.
    return b.startswith(a + ".")


def test_no_import_cycles_lazy_imports_included():
    graph = {a: {b for b in deps if not _is_package_init_edge(a, b)}
             for a, deps in _graph().items()}
    assert _cycles(graph) == []


# The stages of the data flow, upstream first. A stage may import only stages before it (and
# itself). The store comes before extraction, which writes into it.
STAGES = [
    {"errors", "_version"},
    {"models", "video", "synth", "tracks"},
    {"store"},
    {"extraction"},
    {"labels"},
    {"probes"},
    {"evaluation"},
    {"search", "pipeline"},
    {"bench"},
    {"session"},
    {"demo"},
    {"cli", "__main__"},
]


def _stage(module: str) -> int | None:
    parts = module.split(".")
    if parts[0] != "prism_science":
        return None
    if len(parts) == 1:
        return None  # the package root: __version__ and a lazy load_model
    for number, names in enumerate(STAGES):
        if parts[1] in names:
            return number
    return None


@pytest.mark.parametrize("stage", range(len(STAGES)))
def test_stages_import_only_upstream(stage):
    bad = []
    for module, deps in _graph().items():
        if _stage(module) != stage:
            continue
        for dep in deps:
            dep_stage = _stage(dep)
            if dep_stage is not None and dep_stage > stage and dep != "prism_science":
                bad.append(f"{module} -> {dep}")
    assert bad == []


def test_every_library_folder_has_a_stage():
    top = {p.name.removesuffix(".py") for p in (ROOT / "prism_science").iterdir()
           if (p.suffix == ".py" or (p / "__init__.py").exists())}
    staged = set().union(*STAGES) | {"__init__"}
    assert top - staged == set()
