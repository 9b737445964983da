"""The two sides of a refusal test: does torch run a layer configuration (and to which output shape), and does
symcost count it (to which output shape) or refuse it with a ``LayerError``."""
from __future__ import annotations

import warnings

import torch

import symcost
from symcost.empirical import resolve
from symcost.errors import LayerError
from symcost.registry import get_layer_class

#: what torch raises when it refuses arguments or inputs
TORCH_REFUSES = (RuntimeError, ValueError, IndexError, AssertionError, NotImplementedError)

REFUSED = "refused"


def torch_outcome(name: str, kwargs: dict, shapes) -> tuple | str:
    """torch's output shape for the layer's torch counterpart on random inputs of ``shapes``, or ``REFUSED``."""
    cls = get_layer_class(name)
    plain = {k: v for k, v in kwargs.items() if v is not None}
    train = plain.get("mode") == "train"
    shapes = [tuple(s) for s in shapes]
    if cls.family == "attention" and len(shapes) < 3:
        shapes += [shapes[-1]] * (3 - len(shapes))
    if cls.family in ("elementwise", "matmul") and len(shapes) == 1 and len(cls.default_inputs) > 1:
        shapes = shapes * len(cls.default_inputs)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = run_torch(cls.torch_name, plain, shapes, train)
    except TORCH_REFUSES:
        return REFUSED
    return tuple((out[0] if isinstance(out, tuple) else out).shape)


#: catalog arguments that are not torch's: batch norm's mode (eval, train, folded), forward-time arguments
_FORWARD = {"need_weights", "is_causal"}


def run_torch(torch_name: str, kwargs: dict, shapes, train: bool):
    """Call the torch module or function on real random tensors (no dispatch mode in between: FlopCounterMode lets
    some sizes through that torch's own kernels refuse).  Attention runs torch's math kernel, the one symcost counts
    and ``symcost check`` runs: the CPU flash kernel takes keys and values of different lengths (2x3x2 and 2x2x2)
    that the math kernel refuses."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel(SDPBackend.MATH):
        return _call(torch_name, kwargs, shapes, train)


def _call(torch_name: str, kwargs: dict, shapes, train: bool):
    target = resolve(torch_name)
    ctor = {k: v for k, v in kwargs.items() if k not in _FORWARD and not (k == "mode" and v in ("eval", "train"))}
    fwd = {k: v for k, v in kwargs.items() if k in _FORWARD}
    if "num_embeddings" in kwargs:
        inputs = [torch.randint(0, kwargs["num_embeddings"], s) for s in shapes]
    else:
        inputs = [torch.randn(s) for s in shapes]
    if isinstance(target, type):
        module = target(**ctor)
        module.train(train)
        return module(*inputs, **fwd)
    return target(*inputs, **ctor, **fwd)


def symcost_outcome(name: str, kwargs: dict, shapes) -> tuple | str:
    """symcost's output shape (concrete sizes), or ``REFUSED`` when it raises ``LayerError``."""
    try:
        cost = symcost.layer(name, symbolic=False, **kwargs).cost(*shapes)
    except LayerError:
        return REFUSED
    return tuple(int(d) for d in cost.output_shape)
