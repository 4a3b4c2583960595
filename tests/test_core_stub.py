"""The compiled core, its pure-Python twin and the type stub `_core.pyi` name the same API.

A name added to one of the three and forgotten in another is a type checker blind spot
(stub) or a backend that fails only where the extension is absent (twin)."""

import ast
import inspect
from pathlib import Path

from fhirhose import _core_py

STUB = Path(_core_py.__file__).with_name("_core.pyi")


def _stub_names() -> set[str]:
    tree = ast.parse(STUB.read_text(), filename=str(STUB))
    return {
        node.name
        for node in tree.body
        if isinstance(node, ast.ClassDef | ast.FunctionDef) and not node.name.startswith("_")
    }


def _defined_here(module) -> set[str]:
    # Public names the module defines itself, not ones it imports (np, TemplateError, ...).
    return {
        name
        for name, obj in vars(module).items()
        if not name.startswith("_")
        and (inspect.isclass(obj) or callable(obj))
        and getattr(obj, "__module__", None) == module.__name__
    }


def test_stub_matches_twin_all():
    assert _stub_names() == set(_core_py.__all__)


def test_twin_all_lists_every_public_definition():
    assert _defined_here(_core_py) == set(_core_py.__all__)


def test_compiled_module_matches_twin_all(cext):
    assert _defined_here(cext) == set(_core_py.__all__)

