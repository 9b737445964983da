"""The public functions the CLI is a thin shell over."""
from __future__ import annotations

from typing import Any, Sequence

from .conventions import get_convention
from .cost import Cost, to_int
from .layers.base import how_many_inputs
from .registry import get_layer_class


def layer(name: str, *, symbolic: bool = True, **kwargs: Any):
    """A layer object by its symcost name, arguments named as in ``torch.nn``.

    With ``symbolic=True`` (the default) every argument you omit becomes a symbol
    (``kernel_size`` -> K_h, K_w; ``bias`` -> the 0/1 flag b); with ``symbolic=False``
    omitted arguments take torch's defaults.

    >>> import sympy
    >>> c = layer("linear", bias=True).cost()
    >>> c.params
    F_in*F_out + F_out
    """
    return get_layer_class(name)(symbolic=symbolic, **kwargs)


def evaluate(name: str, input_shapes: Sequence[Sequence[int]], convention: str = "flops", **kwargs: Any) -> dict:
    """Numbers for one layer call: the dictionary ``symcost eval --json`` prints."""
    return numbers(get_layer_class(name)(symbolic=False, **kwargs), input_shapes, convention)


def numbers(lay, input_shapes: Sequence[Sequence[int]], convention: str = "flops") -> dict:
    """Exact integers for a layer object on concrete input shapes, under one convention."""
    conv = get_convention(convention)
    low, high = lay.user_input_count()
    if len(input_shapes) > high:  # a tracer-only input (upsample's output shape) is not the user's to give
        lay.fail(f"takes {how_many_inputs(low, high)}, got {len(input_shapes)}")
    cost: Cost = lay.cost(*input_shapes)
    return {
        "layer": lay.name,
        "torch": lay.torch_name,
        "args": lay.plain_args(),
        "convention": conv.name,
        "input_shape": [int(d) for d in input_shapes[0]],
        "input_shapes": [[int(d) for d in s] for s in input_shapes],
        "output_shape": [to_int(d, "output size") for d in cost.output_shape],
        "params": to_int(cost.params, "params"),
        "buffers": to_int(cost.buffers, "buffers"),
        "macs": to_int(cost.macs, "MACs"),
        "flops": to_int(conv.count(cost), "FLOPs"),
        "reads": to_int(cost.reads, "reads"),
        "writes": to_int(cost.writes, "writes"),
        "ops": {k: to_int(v, k) for k, v in cost.ops.items()},
        "units": {"reads": "elements", "writes": "elements"},
    }


def trace(model, input_shape, *, config=None, **options):
    """``symcost.trace``: a module's per-layer costs as formulas in the input's symbols, a ``ModelCost`` (the options
    are ``symcost.tracing.trace``'s: ``train``, ``sizes``, ``input_dtype``, ``default_shape``, ``backward``,
    ``custom_mapping``).

    ``config={"width": "w", "depth": "n"}`` with ``model`` a factory (a callable taking those integer arguments and
    returning an ``nn.Module``): totals in the factory's arguments and the input's symbols together, a
    ``symcost.hyper.ConfigCost`` (see ``symcost.hyper.derive_config``, which traces the factory's models itself).
    """
    if config is None:
        from .tracing import trace as trace_module

        return trace_module(model, input_shape, **options)
    import torch

    from .errors import UsageError
    from .hyper import derive_config

    if isinstance(model, torch.nn.Module) or not callable(model):
        raise UsageError("config= needs a factory (a callable taking the config fields as integer arguments and "
                         f"returning an nn.Module), not a {type(model).__name__}")
    if options.get("sizes"):
        raise UsageError("config= derives at symcost's own trace sizes: drop sizes=")
    if options.get("custom_mapping"):
        raise UsageError("config= takes no custom_mapping=: register the handler with symcost.register_op")
    unknown = set(options) - {"train", "backward", "input_dtype", "sizes", "custom_mapping"}
    if unknown:
        raise UsageError(f"config= takes no {', '.join(sorted(unknown))}")
    dtype = options.get("input_dtype", "float32")
    return derive_config(model, input_shape, config, train=options.get("train", False),
                         backward=options.get("backward", False),
                         input_dtype=None if isinstance(dtype, dict) else dtype)
