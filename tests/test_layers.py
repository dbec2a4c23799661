"""The package's layers, declared once and held by a walk over every import.

A run flows one way (data -> models -> train/distill -> export -> engines -> bench -> deploy), and
the code is layered to match: a module imports only from its own package, from the layers below
it, and never a private (``_``-prefixed) name from another package. When a lower layer needs
something from a higher one, the thing lives in the wrong place: move it down. Function-level
(lazy) imports count too: they are dependencies all the same.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "edgekd"

# Highest first. Packages in one layer are independent of each other (none imports another).
LAYERS: tuple[tuple[str, ...], ...] = (
    ("cli",),
    ("sweep",),
    ("stages", "doctor"),
    ("distill", "ssl", "bench", "deploy", "export"),
    ("engines",),
    ("train",),
    ("data", "models"),
    ("recipe",),
    ("runtime", "utils"),
)
RANK = {name: i for i, layer in enumerate(LAYERS) for name in layer}


def _package(module: str) -> str:
    """``edgekd.stages.runner`` -> ``stages``; ``edgekd`` (the package root, a version string) -> ``utils``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "utils"


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG.parent).with_suffix("")
        name = ".".join(rel.parts)
        out[name.removesuffix(".__init__")] = path
    return out


def _imports(module: str, path: Path) -> list[tuple[str, list[str], int]]:
    """``(imported edgekd module, imported names, line)`` for every import in the file."""
    tree = ast.parse(path.read_text())
    is_pkg = path.name == "__init__.py"
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, [], node.lineno) for a in node.names if a.name.split(".")[0] == "edgekd"]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                anchor = module.split(".")
                anchor = anchor if is_pkg else anchor[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            if base.split(".")[0] == "edgekd":
                out.append((base, [a.name for a in node.names], node.lineno))
    return out


def test_every_package_has_a_layer():
    missing = sorted({_package(m) for m in _modules()} - set(RANK))
    assert not missing, f"packages without a layer in LAYERS: {missing}"


def _violations() -> list[str]:
    bad = []
    modules = _modules()
    for module, path in modules.items():
        src = _package(module)
        for target, names, line in _imports(module, path):
            dst = _package(target)
            where = f"{path.relative_to(PKG.parent)}:{line} imports {target}"
            if dst != src:
                if src == "recipe" and dst != "utils":
                    bad.append(f"{where}: recipe may import only edgekd.utils")
                elif RANK[dst] < RANK[src]:
                    bad.append(f"{where}: {src} (layer {RANK[src]}) imports upward into {dst} (layer {RANK[dst]})")
                elif RANK[dst] == RANK[src]:
                    bad.append(f"{where}: {src} and {dst} share a layer and must stay independent")
                private = [n for n in names if n.startswith("_") and not n.startswith("__")]
                if private:
                    bad.append(f"{where}: private name(s) {private} across packages")
    return bad


def test_imports_only_go_down_the_layers():
    bad = _violations()
    assert not bad, "layer violations:\n" + "\n".join(bad)


@pytest.mark.parametrize("pkg", ["runtime", "utils"])
def test_the_bottom_layer_imports_nothing_above_it(pkg):
    for module, path in _modules().items():
        if _package(module) == pkg:
            for target, _, line in _imports(module, path):
                assert _package(target) in (pkg, "utils") if pkg == "utils" else _package(target) == pkg, \
                    f"{path}:{line} imports {target}"
