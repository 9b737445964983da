"""symcost: closed-form, convention-explicit cost formulas for neural-network layers and models.

Layer formulas need only sympy; ``trace``, ``model`` and ``fold_batchnorm`` import torch when first used.
"""
from .api import evaluate, layer, numbers
from .conventions import CONVENTIONS, Convention, get_convention
from .cost import OP_KINDS, Cost
from .model import ModelCost
from .registry import all_layers

__version__ = "0.1.0"
__all__ = ["Cost", "Convention", "CONVENTIONS", "ModelCost", "OP_KINDS", "all_layers", "evaluate",
           "fold_batchnorm", "get_convention", "layer", "model", "numbers", "trace", "__version__"]


def model(target: str, input_shape: str, *, train: bool = False, use_cache: bool = True) -> ModelCost:
    """``symcost.model("torchvision:resnet50", "1x3xHxW")``: the same derivation as `symcost model`, cached."""
    from .commands.models import derive

    return derive(target, input_shape, train=train, use_cache=use_cache, progress=False)


def __getattr__(name: str):
    if name == "trace":  # torch is imported on first use only
        from .tracing import trace

        return trace
    if name == "fold_batchnorm":
        from .fold import fold_batchnorm

        return fold_batchnorm
    raise AttributeError(f"module 'symcost' has no attribute {name!r}")
