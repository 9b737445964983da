"""Record one forward pass: every aten op (with tensor numbers and concrete shapes) and every
module call, in order.  A ``TorchDispatchMode`` (as ``FlopCounterMode`` is) on meta tensors:
no data, no arithmetic, a fraction of a second even for large models.
"""
from __future__ import annotations

import weakref
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_map

from .meta_kernels import run_op


@dataclass(frozen=True)
class TensorRef:
    """A tensor argument, by its number in the recording."""

    index: int


@dataclass
class OpEvent:
    op: str                      # "aten.convolution" (the overload packet)
    args: tuple                  # tensors replaced by TensorRef
    kwargs: dict
    inputs: list[int]            # tensor numbers, in argument order
    outputs: list[int]
    module: str                  # qualified name of the innermost module running it ("" at top level)


@dataclass
class ModuleEvent:
    name: str
    module: Any
    inputs: list[int]
    outputs: list[int] = field(default_factory=list)
    first_op: int = 0            # index into ops of its first aten op
    end_op: int = 0              # one past its last


@dataclass
class Recording:
    ops: list[OpEvent]
    modules: list[ModuleEvent]
    shapes: list[tuple[int, ...]]      # concrete shape per tensor number
    produced: set[int]                  # tensor numbers some op produced
    parameters: dict[int, str]          # tensor number -> parameter/buffer name
    input_index: int
    backward_start: int | None = None   # index into ops of the first backward op (None: forward only)
    #: named inputs (keyword tensors of the forward): name -> tensor number; empty for one positional input
    inputs: dict[str, int] = field(default_factory=dict)


#: leaves of an op's arguments that are never a tensor nor a container: returned as they are without asking pytree
_PLAIN = frozenset({int, float, bool, str, type(None), complex, torch.dtype, torch.device, torch.layout,
                    torch.memory_format})


class _Recorder(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        #: id -> number of each live tensor; a tensor's entry goes when it dies (so a later tensor that reuses its id
        #: gets a number of its own).  No tensor is kept alive: holding one would change what torch does (autograd's
        #: AccumulateGrad copies a gradient someone else still holds, instead of taking it)
        self.numbers: dict[int, int] = {}
        #: tensor number -> a weak reference whose callback forgets the tensor's id (held here, not in a global
        #: registry as ``weakref.finalize`` would be, so a recording is freed with its recorder)
        self._watch: dict[int, weakref.ref] = {}
        self.shapes: list[tuple[int, ...]] = []
        self.ops: list[OpEvent] = []
        self.modules: list[ModuleEvent] = []
        self.stack: list[ModuleEvent] = []
        self.produced: set[int] = set()
        self._names: dict = {}   # op overload -> its packet's name

    def number(self, t: torch.Tensor) -> int:
        key = id(t)
        n = self.numbers.get(key)
        if n is None:
            n = self.numbers[key] = len(self.shapes)
            self._watch[n] = weakref.ref(t, lambda _, key=key, n=n: self._forget(key, n))
            self.shapes.append(tuple(t.shape))
        return n

    def _forget(self, key: int, n: int) -> None:
        if self.numbers.get(key) == n:
            del self.numbers[key]

    def renumber(self, t: torch.Tensor) -> int:
        """A new tensor (or an in-place op's result with a new shape): a fresh number."""
        self.numbers.pop(id(t), None)
        return self.number(t)

    def _ref(self, x, inputs: list[int]):
        """``x`` with each tensor replaced by its ``TensorRef`` (numbers appended to ``inputs`` in order), as
        ``tree_map`` would: tuples, lists and dicts walked here, any other pytree node by ``tree_map`` itself."""
        t = type(x)
        if t in _PLAIN:
            return x
        if t is tuple:
            return tuple([self._ref(a, inputs) for a in x])
        if t is list:
            return [self._ref(a, inputs) for a in x]
        if t is dict:
            return {k: self._ref(v, inputs) for k, v in x.items()}
        if isinstance(x, torch.Tensor):
            n = self.number(x)
            inputs.append(n)
            return TensorRef(n)
        return tree_map(lambda y: self._ref(y, inputs) if isinstance(y, torch.Tensor) else y, x)

    def _outputs(self, out, found: list) -> list:
        """The tensors of an op's result (or a module's inputs or output) in ``tree_flatten`` order, appended to
        ``found``."""
        t = type(out)
        if t is tuple or t is list:
            for o in out:
                self._outputs(o, found)
        elif isinstance(out, torch.Tensor):
            found.append(out)
        elif t not in _PLAIN:
            found.extend(o for o in tree_flatten(out)[0] if isinstance(o, torch.Tensor))
        return found

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        inputs: list[int] = []
        rargs, rkwargs = self._ref(args, inputs), self._ref(kwargs, inputs)
        out = run_op(func, args, kwargs)
        outputs = []
        for t in self._outputs(out, []):
            n = self.renumber(t)
            outputs.append(n)
            self.produced.add(n)
        name = self.stack[-1].name if self.stack else ""
        op = self._names.get(func)
        if op is None:
            op = self._names[func] = str(func.overloadpacket)
        self.ops.append(OpEvent(op, rargs, rkwargs, inputs, outputs, name))
        return out


def record(model: torch.nn.Module, x: torch.Tensor | dict, backward: bool = False) -> Recording:
    """Run ``model(x)`` (``model(**x)`` for a dict of named inputs) once under the recorder (call it under
    ``torch.no_grad()``); with ``backward``, then
    ``out.backward(ones_like(out))`` for its first output that requires grad (call it with grad enabled)."""
    names = {id(m): n for n, m in model.named_modules()}
    rec = _Recorder()

    def pre(module, inputs):
        if id(module) not in names:
            return
        flat = rec._outputs(inputs, [])
        ev = ModuleEvent(names[id(module)], module, [rec.number(t) for t in flat], first_op=len(rec.ops))
        rec.modules.append(ev)
        rec.stack.append(ev)

    def post(module, inputs, kwargs, output):
        if id(module) not in names or not rec.stack or rec.stack[-1].module is not module:
            return
        ev = rec.stack.pop()
        ev.outputs = [rec.number(t) for t in rec._outputs(output, [])]
        ev.end_op = len(rec.ops)
        if _sized_by_call(module, inputs, kwargs):  # not a call its attributes describe: its ops are costed instead
            rec.modules = [m for m in rec.modules if m is not ev]

    from torch.nn.modules import module as nn_module

    h1 = nn_module.register_module_forward_pre_hook(pre)
    h2 = nn_module.register_module_forward_hook(post, with_kwargs=True)
    try:
        params = {}
        for pname, p in list(model.named_parameters()) + list(model.named_buffers()):
            params[rec.number(p)] = pname
        inputs = {name: rec.number(t) for name, t in x.items()} if isinstance(x, dict) else {}
        input_index = next(iter(inputs.values())) if inputs else rec.number(x)
        backward_start = None
        grads = _clear_grads(model) if backward else {}
        with rec, padding_warning_off(model), own_mask_unpadded(x):
            out = model(**x) if isinstance(x, dict) else model(x)
            _refuse_no_tensor(out)
            if backward:
                backward_start = len(rec.ops)
                run_backward(out)
    finally:
        h1.remove()
        h2.remove()
        for p, g in grads.items():
            p.grad = g
    return Recording(rec.ops, rec.modules, rec.shapes, rec.produced, params, input_index, backward_start,
                     inputs)


class NoTensorOutput(Exception):
    """The forward returned plain values only: what it computed reaches no output."""


def _refuse_no_tensor(out) -> None:
    """A forward whose result holds no tensor (``None``, an int, a tuple of them) computes nothing a caller sees:
    refused rather than costed as an empty (or all-zero) model.  A result holding objects pytree does not know is
    given the benefit of the doubt (they may hold tensors)."""
    leaves = tree_flatten(out)[0]
    if not any(isinstance(o, torch.Tensor) for o in leaves) and all(type(o) in _PLAIN for o in leaves):
        shown = type(out).__name__ if out is not None else "None"
        raise NoTensorOutput(f"the model's forward returned {shown}, which holds no tensor: there is no output to "
                             "cost (return the tensors the model computes)")


def _sized_by_call(module: torch.nn.Module, inputs: tuple, kwargs: dict) -> bool:
    """A transposed convolution given ``output_size=`` (U-Net's up-convolution to its skip's size): torch computes
    its ``output_padding`` from that size, so the module's own attribute does not describe the call; its
    ``aten.convolution`` (which holds the padding used) is costed instead."""
    if not isinstance(module, torch.nn.modules.conv._ConvTransposeNd):
        return False
    return (inputs[1] if len(inputs) > 1 else kwargs.get("output_size")) is not None


@contextmanager
def padding_warning_off(model: torch.nn.Module):
    """Hugging Face's ``warn_if_padding_and_no_attention_mask`` (DeBERTa, Funnel, RoFormer, …) reads two token ids
    (``Tensor.item()``, which no meta tensor answers) only to log a warning: a no-op on the model's own modules while
    they run, so that the value read never refuses a model whose computation needs no value."""
    name = "warn_if_padding_and_no_attention_mask"
    modules = [m for m in model.modules() if hasattr(type(m), name) and name not in vars(m)]
    for m in modules:
        object.__setattr__(m, name, lambda *args, **kwargs: None)
    try:
        yield
    finally:
        for m in modules:
            object.__delattr__(m, name)


@contextmanager
def own_mask_unpadded(x):
    """Encoders that build their own attention mask of ones when given none (ConvBERT, RoFormer, BigBird, …) ask
    transformers whether it masks any token (``padding_mask.all()``, a value no meta tensor has), to skip building
    it: with no mask among the inputs, the input is unpadded, so the answer is yes, as on real tensors.  A mask given
    as an input is left to the model (its values are unknown: refused)."""
    import sys

    masking = sys.modules.get("transformers.masking_utils")
    name = "_ignore_bidirectional_mask_sdpa"
    if masking is None or not hasattr(masking, name) or (isinstance(x, dict) and any("mask" in n for n in x)):
        yield
        return
    original = getattr(masking, name)

    def ignore(padding_mask, *args, **kwargs):
        return original(None if padding_mask is not None and padding_mask.is_meta else padding_mask, *args, **kwargs)

    setattr(masking, name, ignore)
    try:
        yield
    finally:
        setattr(masking, name, original)


def _clear_grads(model) -> dict:
    """Set every parameter's ``.grad`` to None (the step then writes fresh gradients, as after ``zero_grad()``);
    returns the old ones, to put back."""
    old = {}
    for p in model.parameters():
        old[p], p.grad = p.grad, None
    return old


def run_backward(out) -> None:
    """The backward pass from the model's first output that needs a gradient, seeded with ones of its shape."""
    first = next((t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor) and t.requires_grad), None)
    if first is None:
        if isinstance(out, dict) or hasattr(out, "to_tuple"):  # a Hugging Face ModelOutput
            first = next((t for t in out.to_tuple() if isinstance(t, torch.Tensor) and t.requires_grad), None)
    if first is None:
        raise RuntimeError("no output of the model requires a gradient (are all its parameters frozen?)")
    first.backward(torch.ones_like(first))
