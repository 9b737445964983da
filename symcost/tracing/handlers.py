"""The op registry: one record per recorded op -- its cost handler and, where its output shape is not its layer's
nor its inputs broadcast, its shape rule -- registered once each (``handles``, ``shapes``), duplicates refused.  The
built-in records live in ``tracing/ops``, one module per family of ops (forward ops beside their backward kernels).

Handlers and shape rules have one signature, ``fn(ev, S, concrete, sym)``: ``ev`` the recorded ``OpEvent`` (tensor
arguments replaced by ``TensorRef``), ``S(x)`` the symbolic shape of a tensor argument, ``concrete`` and ``sym`` the
concrete and symbolic shapes of every tensor by number.

A cost handler returns a catalog layer (``symcost.layer(...)`` or any ``Layer``) and the symbolic shapes to cost it
on, None for a call it does not cost (reported as uncovered), or raises (``LayerError``, ``TraceError``) to refuse.
The layer is both the op's cost and its output shape (``output="layer"``: shape propagation takes
``Cost.output_shape`` for every output of the op); handlers of elementwise and data-movement ops say
``output="inputs"`` (the output broadcasts the inputs, or the op's shape rule gives it).  An op with no handler is
reported as uncovered, never counted as zero.

A shape rule returns the op's output shapes (a list, one per output; None for one it cannot tell).  It runs during
shape propagation, where ``S`` is the ``propagate.Propagation``: besides ``S(x)`` it knows both recordings
(``S.evb``: this op as the second recording ran it; ``S.value``, ``S.explained``: numbers the model computed from
sizes, as formulas).  Every shape it gives is checked against every recording.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace

from ..errors import TraceError, UsageError

OUTPUTS = ("layer", "inputs")

#: aten ops that cost nothing on purpose: views and metadata changes, tensor creation
ZERO_COST_OPS = frozenset({
    "aten.view", "aten._unsafe_view", "aten.reshape", "aten.permute", "aten.transpose", "aten.t", "aten.expand",
    "aten.select", "aten.slice", "aten.split", "aten.split_with_sizes", "aten.unbind", "aten.unsqueeze",
    "aten.squeeze", "aten.alias", "aten.as_strided", "aten.as_strided_", "aten.detach", "aten.lift_fresh",
    "aten.unflatten", "aten.flatten", "aten.empty", "aten.new_zeros", "aten.new_empty", "aten.zeros", "aten.zero_",
    "aten.scalar_tensor", "aten.fill_", "aten.full", "aten.arange", "aten.empty_like", "aten.zeros_like",
    "aten.ones", "aten.ones_like", "aten.new_ones", "aten.dropout", "aten.native_dropout", "aten.new_empty_strided",
    "aten.full_like", "aten.new_full", "aten.unfold", "aten.empty_strided", "aten.unsafe_split",
    "aten.unsafe_split_with_sizes", "aten.chunk", "aten.unsafe_chunk",
    "aten.transpose_",  # in place, a view's metadata only (nn.GRU's batch_first output)
})


@dataclass(frozen=True)
class OpHandler:
    """One op's record: its cost handler (None for an op that only has a shape rule, such as a view) and its shape
    rule (None: the layer's output shape, or the inputs broadcast)."""

    op: str            # "aten.convolution", "mylib.my_op": the recorded overload packet
    fn: Callable | None
    output: str        # "layer": the output shape is the layer's; "inputs": broadcast or the shape rule
    user: bool = False  # registered by a user (``register_op``, ``custom_mapping``): its failures are named
    shape: Callable | None = None   # the shape rule

    @property
    def where(self) -> str:
        fn = self.fn or self.shape
        return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


#: op name -> its record: the built-in ones (``tracing/ops``) and the handlers users register
HANDLERS: dict[str, OpHandler] = {}
#: the ``custom_mapping`` of the traces running now, innermost last: consulted before ``HANDLERS``
_OVERLAYS: list[dict[str, OpHandler]] = []


def op_name(op) -> str:
    """An op as the recorder names it: ``"aten.erf"`` from ``"aten.erf"``, ``"aten::erf"``, ``torch.ops.aten.erf``
    or ``torch.ops.aten.erf.default``."""
    op = getattr(op, "overloadpacket", op)  # an OpOverload: its packet
    name = op if isinstance(op, str) else str(op)
    name = name.replace("::", ".")
    if name.count(".") != 1 or not all(name.split(".")):
        raise UsageError(f"op {op!r}: expected namespace.name (e.g. 'aten.erf', 'mylib::my_op') or a torch.ops op")
    return name


def _handler(op, fn, output: str, user: bool) -> OpHandler:
    if output not in OUTPUTS:
        raise UsageError(f"output={output!r}: expected 'layer' (the layer's output shape) or 'inputs'")
    if not callable(fn):
        raise UsageError(f"the handler of {op} must be callable, got {fn!r}")
    return OpHandler(op_name(op), fn, output, user)


def _add(h: OpHandler) -> None:
    if h.op in ZERO_COST_OPS:
        raise UsageError(f"{h.op} is counted 0 on purpose (a view, a copy of metadata or a new tensor); "
                         f"{h.where} cannot cost it")
    old = HANDLERS.get(h.op)
    if old is not None and old.fn is not None:
        raise UsageError(f"{h.op} has a handler already: {old.where}; {h.where} cannot be registered too "
                         "(one handler per op)")
    HANDLERS[h.op] = replace(h, shape=old.shape) if old is not None else h


def shapes(*ops: str):
    """Register the built-in shape rule of one or more ops (one per op; see this module for the contract)."""
    def deco(fn):
        for o in ops:
            name = op_name(o)
            old = HANDLERS.get(name)
            if old is not None and old.shape is not None:
                raise UsageError(f"{name} has a shape rule already: {old.shape.__module__}.{old.shape.__qualname__}")
            HANDLERS[name] = replace(old, shape=fn) if old is not None else OpHandler(name, None, "inputs", shape=fn)
        return fn
    return deco


def handles(*ops: str, output: str = "layer"):
    """Register the built-in handler of one or more ops; a second handler for an op is an error naming both."""
    def deco(fn):
        for o in ops:
            _add(_handler(o, fn, output, False))
        return fn
    return deco


def register_op(op, handler: Callable, *, output: str = "layer") -> None:
    """Cost ``op`` (``"aten.erf"``, ``"mylib::my_op"`` or a ``torch.ops`` op) with ``handler``, which has the
    built-in handlers' contract (see this module) in every later ``trace``/``model`` call.  An op that has a
    handler already (built-in or registered) is an error naming both; ``unregister_op`` removes a user's."""
    _add(_handler(op, handler, output, True))


def unregister_op(op) -> None:
    """Remove a handler ``register_op`` added (built-in handlers stay)."""
    name = op_name(op)
    h = HANDLERS.get(name)
    if h is None or not h.user:
        built_in = h is not None and h.fn is not None
        raise UsageError(f"{name}: no handler registered by register_op" + (f" (its handler is built in: {h.where})"
                                                                            if built_in else ""))
    if h.shape is None:
        del HANDLERS[name]
    else:
        HANDLERS[name] = replace(h, fn=None, output="inputs", user=False)


def handler_for(op: str) -> OpHandler | None:
    """The record whose cost handler decodes ``op`` (a trace's ``custom_mapping`` first), None if none costs it."""
    for overlay in reversed(_OVERLAYS):
        if op in overlay:
            return overlay[op]
    h = HANDLERS.get(op)
    return h if h is not None and h.fn is not None else None


def shape_rule_for(op: str) -> Callable | None:
    """The shape rule of ``op`` (None: its layer's output shape, or its inputs broadcast)."""
    h = HANDLERS.get(op)
    return h.shape if h is not None else None


def user_handlers() -> bool:
    """Whether some handler is a user's: a cached derivation may then be stale."""
    return bool(_OVERLAYS) or any(h.user for h in HANDLERS.values())


@contextmanager
def custom_ops(mapping: Mapping | None):
    """``trace(..., custom_mapping={op: handler})``: these handlers for this trace only, before the registered
    ones (as ``FlopCounterMode(custom_mapping=...)``)."""
    if not mapping:
        yield
        return
    overlay: dict[str, OpHandler] = {}
    for op, fn in mapping.items():
        h = _handler(op, fn, "layer", True)
        if h.op in ZERO_COST_OPS:
            raise UsageError(f"custom_mapping: {h.op} is counted 0 on purpose (a view, a copy of metadata or a new "
                             "tensor)")
        if h.op in overlay:
            raise UsageError(f"custom_mapping names {h.op} twice: {overlay[h.op].where} and {h.where}")
        overlay[h.op] = h
    _OVERLAYS.append(overlay)
    try:
        yield
    finally:
        _OVERLAYS.remove(overlay)


def call(h: OpHandler, ev, S, concrete, sym):
    """Run a handler; a user's handler that fails other than on purpose, or returns something other than
    (layer, shapes) or None, is named in a ``TraceError``."""
    if not h.user:
        return h.fn(ev, S, concrete, sym)
    from ..errors import SymcostError
    from ..layers.base import Layer

    try:
        found = h.fn(ev, S, concrete, sym)
    except SymcostError:
        raise
    except Exception as e:  # noqa: BLE001  (a user's code: its error, in one line, with where it is)
        raise TraceError(f"{ev.module or '(model)'}: {ev.op}: the handler {h.where} failed: "
                         f"{type(e).__name__}: {e}") from None
    if found is not None and not (isinstance(found, tuple) and len(found) == 2 and isinstance(found[0], Layer)):
        raise TraceError(f"{ev.op}: the handler {h.where} returned {found!r}; expected (layer, input shapes) or None")
    return found
