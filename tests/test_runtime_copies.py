"""The torch-free runtime (copied into deploy bundles) may not import edgekd, so it keeps its own
copies of two helpers. These tests keep each copy identical to the library's, so a bundle computes
exactly what the run measured."""

from __future__ import annotations

import ast
import inspect
import textwrap

import pytest

from edgekd.engines import openvino_engine
from edgekd.runtime import backends, bundle
from edgekd.utils import hashing


def _body(fn) -> str:
    """The function's code without its docstring, as an AST dump (formatting does not matter)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(fn))).body[0]
    body = tree.body[1:] if isinstance(tree.body[0], ast.Expr) and isinstance(tree.body[0].value, ast.Constant) \
        else tree.body
    return ast.dump(ast.Module(body=body, type_ignores=[])) + ast.dump(tree.args)


@pytest.mark.parametrize("library, copy", [(openvino_engine.compile_config, backends.compile_config),
                                           (hashing.sha256_file, bundle.sha256_file)])
def test_runtime_copy_is_the_library_function(library, copy):
    assert _body(library) == _body(copy)


def test_compile_config_values():
    for threads in (None, 1, 4):
        for hint in (None, "f32", "bf16"):
            assert openvino_engine.compile_config(threads, hint) == backends.compile_config(threads, hint)
    assert backends.compile_config(2, "f32") == {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": 2,
                                                 "INFERENCE_PRECISION_HINT": "f32"}
