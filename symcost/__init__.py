"""symcost: closed-form, convention-explicit cost formulas for neural-network layers and models.

Everything is imported on first use (PEP 562): ``import symcost`` is instant, layer formulas need only sympy,
and ``trace``, ``model`` and ``fold_batchnorm`` import torch when first called.
"""
from __future__ import annotations

import importlib
import sys
import types

from .version import __version__

#: public name -> the module that defines it
_EXPORTS = {
    "layer": "api", "evaluate": "api", "numbers": "api",
    "CONVENTIONS": "conventions", "Convention": "conventions", "get_convention": "conventions",
    "Cost": "cost", "OP_KINDS": "cost",
    "ModelCost": "model",
    "all_layers": "registry",
    "model": "api", "trace": "api", "register_op": "tracing.handlers", "unregister_op": "tracing.handlers",
    "fold_batchnorm": "fold",
    "memory": "footprint",
}
__all__ = [*_EXPORTS, "__version__"]


class _Package(types.ModuleType):
    """Keeps ``symcost.model`` the function (``api.model``): importing the submodule ``symcost.model`` (as
    ``ModelCost`` does) would otherwise replace the package attribute with the module, and ``symcost.model(...)``
    would fail with "'module' object is not callable".  The submodule stays importable (``sys.modules``)."""

    def __setattr__(self, name, value):
        if name == "model" and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'symcost' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
