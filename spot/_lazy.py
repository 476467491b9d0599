"""A module imported on first use: how the placement registry stays importable where torch is not.

The workflow checks the placements a config names (names, settings) while it builds the DAG, which must not import
torch (every cluster job parses the workflow twice). The placement modules therefore use ``torch = lazy("torch")``:
the real module when it is already imported (always, once ``spot`` itself is imported), else one that imports it on
the first attribute access (:class:`importlib.util.LazyLoader`).
"""
from __future__ import annotations

import importlib.util
import sys

__all__ = ["lazy"]


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
