"""A module imported on first use: how the placement registry stays importable where torch is not.

The workflow checks the placements a config names (names, settings) while it builds the DAG, which must not import
torch (every cluster job parses the workflow twice). The placement modules therefore use ``torch = lazy("torch")``:
the real module when it is already imported (always, once ``spot`` itself is imported), else one that imports it on
the first attribute access (:class:`importlib.util.LazyLoader`).
"""
from __future__ import annotations

import importlib
import importlib.util
import sys

__all__ = ["lazy", "lazy_exports"]


def lazy(name: str):
    """``name``'s module, imported now if it already is, else on first attribute access."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    if spec is None:
        raise ImportError(f"{name} is not installed")
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    return module


def lazy_exports(package: str, exports: dict[str, tuple[str, ...]], first: tuple[str, ...] = ()):
    """A package's ``__getattr__``, ``__dir__`` and ``__all__`` for names its modules define (``exports``: module →
    names, the module absolute or relative to ``package``), each module imported on the first use of one of its names
    (after the modules in ``first``, e.g. ones that fill a registry): ``import package`` stays as light as its
    ``__init__``."""
    where = {name: module for module, names in exports.items() for name in names}

    def __getattr__(name: str):
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        for module in first:
            importlib.import_module(module, package)
        value = getattr(importlib.import_module(where[name], package), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__():
        return sorted(set(vars(sys.modules[package])) | set(where))

    return __getattr__, __dir__, sorted(where)
