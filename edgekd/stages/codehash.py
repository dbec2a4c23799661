"""The code a stage runs, as part of its reuse key: an edited stage re-runs by itself.

A stage's code is its entry module and every edgekd module it imports, transitively, lazy imports
inside functions included; importing a package counts as importing each module in it (registries
such as the KD losses discover their modules at run time). Each file is hashed by its syntax tree
with docstrings dropped, so editing a comment or a docstring re-runs nothing, while any change to
what runs does. Run bookkeeping (the stage table, the run directory, the runner, recipe parsing
and validation) decides which stages run, not what they compute, and is left out: adding a stage
to the table does not re-run every other one. Recipe values are in the key through the sections.
"""

from __future__ import annotations

import ast
import functools
import hashlib
from pathlib import Path

__all__ = ["code_fingerprint"]

PKG = Path(__file__).resolve().parents[1]  # the edgekd package directory
BOOKKEEPING = frozenset({"edgekd.stages.table", "edgekd.stages.rundir", "edgekd.stages.runner",
                         "edgekd.stages.validate", "edgekd.stages.codehash", "edgekd.stages", "edgekd.recipe",
                         "edgekd"})


def _file_of(module: str) -> Path | None:
    if module == "edgekd":
        return PKG / "__init__.py"
    rel = Path(*module.split(".")[1:])
    for candidate in (PKG / rel.with_suffix(".py"), PKG / rel / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _package_modules(module: str) -> list[str]:
    """The modules of package ``module`` (its ``__init__`` and each ``*.py`` beside it)."""
    directory = PKG / Path(*module.split(".")[1:])
    if not (directory / "__init__.py").is_file():
        return []
    return [f"{module}.{p.stem}" for p in sorted(directory.glob("*.py")) if p.stem != "__init__"]


def _imports(module: str, path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    is_pkg = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "edgekd")
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".") if is_pkg else module.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            if base.split(".")[0] != "edgekd":
                continue
            found.add(base)
            for alias in node.names:  # `from edgekd.data import cache` imports a module too
                if _file_of(f"{base}.{alias.name}") is not None:
                    found.add(f"{base}.{alias.name}")
    return found


def _code_hash(path: Path) -> str:
    """sha256 of the file's syntax tree without docstrings (comments are not in the tree)."""
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                node.body = node.body[1:] or [ast.Pass()]
    return hashlib.sha256(ast.dump(tree).encode()).hexdigest()[:16]


@functools.lru_cache(maxsize=None)
def code_fingerprint(entry_module: str) -> dict[str, str]:
    """``{file relative to the repository: hash}`` of every module ``entry_module`` runs."""
    seen: set[str] = set()
    todo = [entry_module]
    while todo:
        module = todo.pop()
        if module in seen or module in BOOKKEEPING:
            continue
        seen.add(module)
        path = _file_of(module)
        if path is None:
            continue
        if path.name == "__init__.py":
            todo.extend(_package_modules(module))
        todo.extend(_imports(module, path))
    out = {}
    for module in sorted(seen - BOOKKEEPING):
        path = _file_of(module)
        if path is not None:
            out[path.relative_to(PKG.parent).as_posix()] = _code_hash(path)
    return out
