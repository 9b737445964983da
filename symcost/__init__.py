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
    "trace": "api", "register_op": "tracing.handlers", "unregister_op": "tracing.handlers",
    "fold_batchnorm": "fold",
    "memory": "footprint",
}
__all__ = [*_EXPORTS, "model", "__version__"]


def model(target: str, input_shape: str, *, train: bool = False, use_cache: bool = True,
          sizes: tuple[dict, dict] | None = None, backward: bool = False, config=None,
          custom_mapping: dict | None = None):
    """``symcost.model("torchvision:resnet50", "1x3xHxW")``: the same derivation as `symcost model`, cached;
    ``sizes=({"H": 241}, {"H": 209})`` chooses the two trace sizes; ``backward=True``: one training step
    (``symcost.training.split`` gives its forward and backward parts).

    ``config={"hidden_size": "d", "num_hidden_layers": "n"}`` (or ``"hidden_size=d,…"``): formulas in the model's
    own hyperparameters too, a ``symcost.hyper.ConfigCost`` (see ``symcost.hyper.derive_config``; with
    ``backward=True`` its ``parts()`` and ``per_token()`` split the training step).
    ``custom_mapping={"mylib.op": handler}``: handlers for ops symcost does not cost, this call only (see
    ``symcost.register_op``; the cache is not used).
    """
    target, input_shape = _checked_arguments(target, input_shape)
    if config is not None:
        if custom_mapping:
            from .errors import UsageError

            raise UsageError("config= takes no custom_mapping=: register the handler with symcost.register_op")
        if sizes:
            from .errors import UsageError

            raise UsageError("config= derives at symcost's own trace sizes: drop sizes=")
        from .hyper import derive_config

        return derive_config(target, input_shape, config, train=train, use_cache=use_cache, backward=backward)
    from .derive import derive

    return derive(target, input_shape, train=train, use_cache=use_cache, progress=False, trace_sizes=sizes,
                  backward=backward, custom_mapping=custom_mapping)


def _checked_arguments(target, input_shape) -> tuple[str, str]:
    """``model``'s target (a name) and input (``"1x3xHxW"``, or a tuple of ints and symbol names as ``trace``
    takes it), or one UsageError saying what was given (not an AttributeError from deep inside)."""
    from .errors import UsageError

    if not isinstance(target, str):
        kind = type(target).__name__
        hint = ": an nn.Module goes to symcost.trace(module, shape)" if hasattr(target, "named_modules") else ""
        raise UsageError(f"model() takes a target name such as 'torchvision:resnet50', not "
                         f"{'an' if kind[0] in 'aeiouAEIOU' else 'a'} {kind}{hint}")
    if isinstance(input_shape, (tuple, list)) and all(
            isinstance(d, str) or (isinstance(d, int) and not isinstance(d, bool)) for d in input_shape):
        input_shape = "x".join(map(str, input_shape))   # parsed and checked as the string would be
    if not isinstance(input_shape, str):
        raise UsageError(f"model() takes the input shape as a string such as '1x3xHxW' or a tuple of integers and "
                         f"symbol names, not {input_shape!r}")
    return target, input_shape


class _Package(types.ModuleType):
    """Keeps ``symcost.model`` the function above: importing the submodule ``symcost.model`` (as ``ModelCost``
    does) would otherwise replace the package attribute with the module, and ``symcost.model(...)`` would fail
    with "'module' object is not callable".  The submodule stays importable (``sys.modules``)."""

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
