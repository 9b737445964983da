"""Record one step's storages: when each is allocated, when torch frees it, and which autograd saves.

A ``TorchDispatchMode`` beneath symcost's recorder (``tracing.record``) sees the same ops in the same order, so op
``k`` here is ``Recording.ops[k]`` there and each new storage is tied to the op output that brought it (whose
symbolic shape the propagation derives).  A storage's end is seen as torch sees it: a weak reference to its
``UntypedStorage`` whose callback runs when the last tensor on it dies (as ``MemTracker`` does).  What autograd
keeps for the backward is what ``torch.autograd.graph.saved_tensors_hooks`` is shown, storage by storage.
"""
from __future__ import annotations

import gc
import weakref
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from ..errors import TraceError
from ..tracing.record import Recording, record


@dataclass
class Alloc:
    """A storage some op made during the step."""

    op: int                      # the op that returned it first (index into Recording.ops)
    out: int                     # which of that op's tensor outputs
    nbytes: int
    itemsize: int
    freed: int | None = None     # ops completed when torch freed it (None: alive at the end of the step)
    saved: bool = False          # shown to saved_tensors_hooks in the forward
    saved_in: str = ""           # the innermost module running when autograd first saved it

    def shape_key(self) -> tuple:
        """What must agree between two recordings of the same model at different sizes."""
        return self.op, self.out, self.itemsize, self.freed, self.saved, self.saved_in


@dataclass
class StepMemory:
    recording: Recording
    allocs: list[Alloc]
    params: dict[str, int]              # parameter name -> bytes of its storage (each storage once)
    buffers: dict[str, int]             # buffer name -> bytes (storages not a parameter's)
    inputs: dict[int, tuple[int, bool, int]]  # tensor number of an input -> (bytes of its storage, saved, item size)
    other: int                          # bytes of tensors the model holds outside its parameters and buffers
    saved_other: int                    # of those, bytes autograd saved
    gradients: int                      # bytes of the parameters' .grad storages after the backward
    n_ops: int
    notes: list[str] = field(default_factory=list)
    #: where autograd first saved each input (tensor number -> module name) and the bytes of other tensors it saved,
    #: by module
    input_saved_in: dict = field(default_factory=dict)
    other_saved_in: dict = field(default_factory=dict)

    def resident(self) -> int:
        """Bytes of the storages that exist before the step, inputs aside."""
        return sum(self.params.values()) + sum(self.buffers.values()) + self.other


def _storage(t: torch.Tensor):
    st = t.untyped_storage()
    return st._cdata, st


class _Storages(TorchDispatchMode):
    """Counts ops, notes each new storage an op returns, and when it is freed."""

    def __init__(self, known: set[int]) -> None:
        super().__init__()
        self.ops = 0
        self.names: list[str] = []
        self.allocs: list[Alloc] = []
        self.by_key: dict[int, Alloc] = {}
        self.known = known                    # storages that exist before the step (parameters, buffers, inputs)
        self.other: dict[int, int] = {}       # storages first seen as an op's input, made outside the step
        self.other_total = 0
        self._refs: dict[int, weakref.ref] = {}
        self.in_op = False
        self.problem: str | None = None
        self.done = False

    def _free(self, key: int) -> None:
        self._refs.pop(key, None)
        a = self.by_key.pop(key, None)
        if a is None or self.done:
            return
        if self.in_op and self.problem is None:
            self.problem = f"a storage is freed inside {self.names[-1] if self.names else 'an op'}"
        a.freed = self.ops

    def _free_other(self, key: int) -> None:
        self._refs.pop(key, None)
        if self.other.pop(key, None) is not None and not self.done and self.problem is None:
            self.problem = "a tensor made outside torch's ops is freed during the step"

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        for t in tree_flatten((args, kwargs))[0]:
            if isinstance(t, torch.Tensor):
                key, st = _storage(t)
                if key not in self.known and key not in self.by_key and key not in self.other and st.nbytes():
                    # made where no op shows it (``torch.tensor`` data): resident, as long as it lives
                    self.other[key] = st.nbytes()
                    self.other_total += st.nbytes()
                    self._refs[key] = weakref.ref(st, lambda _, key=key: self._free_other(key))
        self.in_op = True
        try:
            out = func(*args, **kwargs)
        finally:
            self.in_op = False
        for j, t in enumerate(o for o in tree_flatten(out)[0] if isinstance(o, torch.Tensor)):
            key, st = _storage(t)
            if key in self.known or key in self.other:
                continue
            a = self.by_key.get(key)
            if a is not None:
                if st.nbytes() != a.nbytes and self.problem is None:
                    self.problem = f"{func.overloadpacket} resizes a storage in place"
                continue
            a = Alloc(self.ops, j, st.nbytes(), t.element_size())
            self.allocs.append(a)
            self.by_key[key] = a
            self._refs[key] = weakref.ref(st, lambda _, key=key: self._free(key))
        self.names.append(str(func.overloadpacket))
        self.ops += 1
        return out


@contextmanager
def positions_unpacked():
    """Hugging Face asks whether position ids pack several sequences into a row (``(mask[:, -1] == 0).all()``, a
    value meta tensors lack) where a model runs without a cache (checkpointing turns it off).  The positions a model
    makes itself are ``arange`` per row, one sequence each: the same ops run and the answer is the real one, None."""
    import sys

    masking = sys.modules.get("transformers.masking_utils")
    name = "find_packed_sequence_indices"
    if masking is None or not hasattr(masking, name):
        yield
        return
    original = getattr(masking, name)

    def unpacked(position_ids):
        if not position_ids.is_meta:
            return original(position_ids)
        first = position_ids[:, :1] - 1
        (torch.diff(position_ids, prepend=first, dim=-1) != 1).cumsum(-1)
        return None

    setattr(masking, name, unpacked)
    try:
        yield
    finally:
        setattr(masking, name, original)


class _Saving:
    """What autograd saves during the step (``saved_tensors_hooks``' pack), by storage, and the module running when
    it first saved each: an op's output (marked on its allocation), another tensor, a parameter or an input."""

    def __init__(self, model, mode, known: set):
        self.mode, self.known = mode, known
        self.saved: set[int] = set()          # parameters' and inputs' storages
        self.other: dict[int, int] = {}       # storages no op of the step made: key -> bytes
        self.unknown: list[int] = []
        self.running: list[str] = []          # the modules whose forward is running, innermost last
        self.names = {id(m): n for n, m in model.named_modules()}
        self.where: dict[int, str] = {}       # storage -> the module that first saved it (inputs, other tensors)

    def pack(self, t):
        key, st = _storage(t)
        a = self.mode.by_key.get(key)
        module = self.running[-1] if self.running else ""
        if a is not None:
            if not a.saved:
                a.saved, a.saved_in = True, module
        elif key in self.mode.other:
            self.other[key] = self.mode.other[key]
            self.where.setdefault(key, module)
        elif key in self.known:
            self.saved.add(key)
            self.where.setdefault(key, module)
        elif st.nbytes():
            self.unknown.append(key)
        return t

    def enter(self, module, args):
        if id(module) in self.names:
            self.running.append(self.names[id(module)])

    def leave(self, module, args, out):
        if id(module) in self.names and self.running:
            self.running.pop()


def _held(model: torch.nn.Module, named: dict) -> tuple[dict, dict, set, dict]:
    """What exists before the step, each storage once: parameters and buffers by name (bytes), every storage key
    among them and the inputs, and each input's storage key -> bytes."""
    params: dict[str, int] = {}
    buffers: dict[str, int] = {}
    known: set[int] = set()
    for out, tensors in ((params, model.named_parameters()), (buffers, model.named_buffers())):
        for name, t in tensors:
            key, st = _storage(t)
            if key not in known:
                known.add(key)
                out[name] = st.nbytes()
    input_keys = {}
    for t in named.values():
        key, st = _storage(t)
        known.add(key)
        input_keys[key] = st.nbytes()
    return params, buffers, known, input_keys


def record_step(model: torch.nn.Module, x, backward: bool) -> StepMemory:
    """Run ``model(x)`` (``model(**x)`` for named inputs) under symcost's recorder and the storage tracker; with
    ``backward``, the forward under grad mode (saved tensors hooks on) and the backward of symcost's training step
    (``tracing.record``: seeded with ones of the first output's shape).  Without, the forward under ``no_grad``."""
    named = x if isinstance(x, dict) else {"": x}
    params, buffers, known, input_keys = _held(model, named)
    mode = _Storages(known)
    saving = _Saving(model, mode, known)
    grads: dict[int, int] = {}

    def grad_hook(p):
        key, st = _storage(p.grad)
        grads[key] = st.nbytes()

    hooks = [p.register_post_accumulate_grad_hook(grad_hook) for p in model.parameters() if p.requires_grad] \
        if backward else []
    from torch.nn.modules import module as nn_module

    hooks += [nn_module.register_module_forward_pre_hook(saving.enter),
              nn_module.register_module_forward_hook(saving.leave)]
    resize = torch.UntypedStorage.resize_

    def resized(st, size):  # not an op: the dispatch mode never sees it (as MemTracker notes)
        mode.problem = mode.problem or "the model resizes a storage in place (UntypedStorage.resize_)"
        return resize(st, size)

    collecting = gc.isenabled()
    gc.disable()  # frees by reference counting only: the same at every size, not when a collection happens to run
    torch.UntypedStorage.resize_ = resized
    try:
        with mode, positions_unpacked():
            if backward:
                with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(saving.pack, lambda t: t):
                    rec = record(model, x, backward=True)
            else:
                with torch.no_grad():
                    rec = record(model, x)
            mode.done = True
    finally:
        torch.UntypedStorage.resize_ = resize
        for h in hooks:
            h.remove()
        if collecting:
            gc.enable()
    if mode.problem:
        raise TraceError(f"symcost cannot follow this step's memory: {mode.problem}")
    if len(mode.names) != len(rec.ops) or any(n != ev.op for n, ev in zip(mode.names, rec.ops)):
        raise TraceError("the storage tracker and the recorder saw different ops")  # a bug, not the model's
    if saving.unknown:
        raise TraceError("symcost cannot follow this step's memory: autograd saves a tensor no op made")
    inputs, input_saved_in = {}, {}
    for name, t in named.items():
        key, _ = _storage(t)
        n = rec.inputs[name] if name else rec.input_index
        inputs[n] = (input_keys[key], key in saving.saved, t.element_size())
        if key in saving.saved:
            input_saved_in[n] = saving.where[key]
    other_saved_in: dict[str, int] = {}
    for key, nbytes in saving.other.items():
        other_saved_in[saving.where[key]] = other_saved_in.get(saving.where[key], 0) + nbytes
    return StepMemory(rec, mode.allocs, params, buffers, inputs, mode.other_total, sum(saving.other.values()),
                      sum(grads.values()), len(rec.ops), input_saved_in=input_saved_in,
                      other_saved_in=other_saved_in)
