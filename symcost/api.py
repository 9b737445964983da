"""The public functions the CLI is a thin shell over."""
from __future__ import annotations

from typing import Any, Sequence

from .conventions import as_convention
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
    conv = as_convention(convention)
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
