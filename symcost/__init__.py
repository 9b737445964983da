"""symcost: closed-form, convention-explicit cost formulas for neural-network layers and models."""
from .api import evaluate, layer
from .conventions import CONVENTIONS, Convention, get_convention
from .cost import OP_KINDS, Cost
from .registry import all_layers

__version__ = "0.1.0"
__all__ = ["Cost", "Convention", "CONVENTIONS", "OP_KINDS", "all_layers", "evaluate", "get_convention", "layer",
           "__version__"]
