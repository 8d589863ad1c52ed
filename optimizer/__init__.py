"""pmopt's optimizer and its Python API: ``import optimizer as pm``, then ``pm.margin``, ``pm.risk``,
``pm.optimize``, ``pm.sweep`` and ``pm.validate`` mirror the commands (see :mod:`optimizer.api`).

The API is imported on first use, so the command line starts without pandas.  ``pm.sweep`` is the API function;
the module of the same name stays importable as ``from optimizer.sweep import run_sweep``.
"""

from __future__ import annotations

import sys
import types
from typing import Any

API = ("Infeasible", "Recommendation", "contributions", "load", "margin", "optimize", "risk", "sweep", "validate")

__all__ = list(API)


class _Package(types.ModuleType):
    """Keeps the API names for the API: importing a submodule of the same name (``optimizer.sweep``) does not
    replace the package attribute (the submodule lives on in ``sys.modules``)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in API and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __getattr__(name: str) -> Any:
    if name in API:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'optimizer' has no attribute {name!r}")
