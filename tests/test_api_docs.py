"""Every public name of the library API carries a docstring: the package `__all__`
(README's "Library use") and the `__all__`s of the column model and the template
language, including the public methods of their classes, on both core backends."""

import inspect

import pytest

import fhirhose
from fhirhose import columns, errors, template

from .support.backends import BACKENDS


def _own_doc(obj) -> str:
    doc = vars(obj).get("__doc__") if inspect.isclass(obj) else getattr(obj, "__doc__", None)
    doc = (doc or "").strip()
    name = getattr(obj, "__name__", "")
    # Generated text is not documentation: a dataclass's signature, Cython's embedded signature.
    first, _, rest = doc.partition("\n")
    if "(" in first and first.rstrip().endswith(")") and first.split("(")[0].split(".")[-1] == name:
        return rest.strip()
    return doc


def _api():
    for module in (fhirhose, columns, template, errors):
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.isclass(obj) or inspect.isfunction(obj) or inspect.isbuiltin(obj):
                yield f"{module.__name__}.{name}", obj


def _members(cls):
    for name, attr in vars(cls).items():
        if name.startswith("_"):
            continue
        if isinstance(attr, (classmethod, staticmethod)):
            attr = attr.__func__
        if isinstance(attr, property):
            attr = attr.fget
        # Plain data attributes (__slots__, Cython `readonly`) are described in the class docstring.
        if callable(attr):
            yield name, attr


API = dict(_api())
# The core classes are exported from whichever backend loaded; check both.
for core in BACKENDS:
    for cls in (core.OutBuffer, core.Writer):
        API[f"{core.__name__}.{cls.__name__}"] = cls


@pytest.mark.parametrize("qualname", sorted(API))
def test_public_name_and_its_methods_have_docstrings(qualname):
    obj = API[qualname]
    assert _own_doc(obj), f"{qualname} has no docstring"
    if inspect.isclass(obj) and not issubclass(obj, BaseException):
        undocumented = [name for name, member in _members(obj)
                        if not _own_doc(member) and not _inherits_doc(obj, name)]
        assert not undocumented, f"{qualname}: undocumented public members {undocumented}"


def _inherits_doc(cls, name) -> bool:
    # An override (Val.has_values) keeps the documented meaning of the base method.
    return any(name in vars(base) and _own_doc(vars(base)[name]) for base in cls.__mro__[1:]
               if base is not object and base.__module__.startswith("fhirhose"))
