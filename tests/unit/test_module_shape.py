"""Modules a newcomer can find their way in: each says what it owns, none grows too long.

An AST walk of the layered packages. A module over ``MAX_MODULE_LINES`` or a function over
``MAX_FUNCTION_LINES`` must say why at its top: a line starting with ``Size:`` in the module's
or the function's docstring.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Where the limits apply (issue 10): the engine packages. workers/ (CLI wiring) and domain/
# are only asked for their opening docstring.
LIMITED = ("eventstore", "readmodels", "activities", "workflows")
DOCUMENTED = (*LIMITED, "domain", "workers")
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def _modules(folders: tuple[str, ...]) -> list[tuple[Path, ast.Module]]:
    found = []
    for folder in folders:
        for path in sorted((ROOT / folder).rglob("*.py")):
            found.append((path, ast.parse(path.read_text(encoding="utf-8"), str(path))))
    return found


def _says_why(node: ast.Module | ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    doc = ast.get_docstring(node) or ""
    return any(line.strip().startswith("Size:") for line in doc.splitlines())


def test_every_module_opens_with_what_it_owns() -> None:
    silent = [
        str(path.relative_to(ROOT))
        for path, tree in _modules(DOCUMENTED)
        if not (ast.get_docstring(tree) or "").strip()
    ]
    assert silent == []


def test_no_module_is_longer_than_the_limit_without_saying_why() -> None:
    long = []
    for path, tree in _modules(LIMITED):
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > MAX_MODULE_LINES and not _says_why(tree):
            long.append(f"{path.relative_to(ROOT)}: {lines} lines")
    assert long == []


def test_no_function_is_longer_than_the_limit_without_saying_why() -> None:
    long = []
    for path, tree in _modules(LIMITED):
        for node in ast.walk(tree):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            assert node.end_lineno is not None
            lines = node.end_lineno - node.lineno + 1
            if lines > MAX_FUNCTION_LINES and not _says_why(node):
                long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {lines} lines")
    assert long == []
