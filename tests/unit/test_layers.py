"""The source's imports follow DESIGN §2: dependencies point down the layer table, no cycles.

An AST walk of every module in the layered folders (imports inside functions and ``with``
blocks count; those under ``if TYPE_CHECKING:`` do not, they never run).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Each folder and the project folders it may import (DESIGN §2's table).
MAY_IMPORT = {
    "domain": set(),
    "eventstore": {"domain"},
    "readmodels": {"domain", "eventstore"},
    "activities": {"domain", "eventstore", "readmodels"},
    "workflows": {"domain", "activities"},
    "workers": {"domain", "eventstore", "readmodels", "activities", "workflows"},
}


def _module_name(path: Path) -> str:
    """The installed name: the folders are the ``acci`` package's subpackages."""
    parts = ["acci", *path.relative_to(ROOT).with_suffix("").parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, package: str) -> set[str]:
    """The project modules a module imports (resolved to full dotted names)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the module's own package
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return {name for name in found if _folder(name) in MAY_IMPORT or _bare(name)}


def _folder(name: str) -> str | None:
    """The layer folder of ``acci.<folder>…`` (None for anything else)."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "acci" else None


def _bare(name: str) -> bool:
    """A layer imported by its folder name alone, as if it were a top-level package."""
    return name.split(".")[0] in MAY_IMPORT


def _sources() -> dict[str, tuple[Path, set[str]]]:
    modules = {}
    for folder in MAY_IMPORT:
        for path in sorted((ROOT / folder).rglob("*.py")):
            name = _module_name(path)
            package = name if path.name == "__init__.py" else name.rpartition(".")[0]
            tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
            modules[name] = (path, _imports(tree, package))
    return modules


def test_no_folder_imports_a_folder_above_it() -> None:
    wrong = []
    for name, (path, imported) in _sources().items():
        folder = _folder(name)
        assert folder is not None
        for target in sorted(imported):
            top = _folder(target)
            if top is not None and top != folder and top not in MAY_IMPORT[folder]:
                wrong.append(f"{path.relative_to(ROOT)} imports {target}")
    assert wrong == []


def test_the_layers_are_imported_as_acci_subpackages_only() -> None:
    """Installed, the folders are ``acci.domain``, ``acci.eventstore``, …: an import of a bare
    ``domain`` would work from a checkout and fail (or find the user's own) once installed."""
    bare = [
        f"{path.relative_to(ROOT)} imports {target}"
        for path, imported in (v for v in _sources().values())
        for target in sorted(imported)
        if _bare(target)
    ]
    assert bare == []


def test_no_modules_import_each_other_in_a_cycle() -> None:
    modules = _sources()
    # Edges to modules only ("from pkg import name" may name a function, not a module).
    graph = {
        name: sorted({t for t in imported if t in modules and t != name})
        for name, (_, imported) in modules.items()
    }
    cycles = _cycles(graph)
    assert cycles == [], "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def _cycles(graph: dict[str, list[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                connect(target)
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
            connect(node)
    return found


# Each package's database boundary: the only modules that may name psycopg's error classes
# (DESIGN §2: one boundary module per package translates the driver's errors).
DATABASE_BOUNDARY = {
    "eventstore": {"acci.eventstore.errors", "acci.eventstore.db"},
    # Queries' errors, an outage told from a refused change (the projection engine), the
    # LISTEN loop's: all translated by readmodels/db.py.
    "readmodels": {"acci.readmodels.db"},
}


def _names_psycopg_errors(tree: ast.AST) -> bool:
    """Whether a module names psycopg's errors (``psycopg.Error``, ``psycopg.errors``, ...)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module.startswith("psycopg.errors") or (
                node.module == "psycopg"
                and any(a.name == "errors" or a.name.endswith("Error") for a in node.names)
            ):
                return True
        if isinstance(node, ast.Import) and any(
            a.name.startswith("psycopg.errors") for a in node.names
        ):
            return True
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "psycopg"
            and (node.attr == "errors" or node.attr.endswith("Error"))
        ):
            return True
    return False


def test_only_the_boundary_modules_name_psycopgs_errors() -> None:
    outside = []
    for package, boundary in DATABASE_BOUNDARY.items():
        for path in sorted((ROOT / package).rglob("*.py")):
            name = _module_name(path)
            tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
            if name not in boundary and _names_psycopg_errors(tree):
                outside.append(name)
    assert outside == []
