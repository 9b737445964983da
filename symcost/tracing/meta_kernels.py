"""Meta kernels run once per op and input metadata while recording (``meta_memo``).

Most of a recording's time is torch's meta kernels, written in Python (type promotion, broadcasting, strides), and a
model repeats them: identical blocks, forward and backward, and the same layer again at the next configuration a
fit traces.  An op that neither aliases nor mutates its inputs gives fresh output tensors whose sizes, strides and
dtypes are a function of the op, its arguments and its inputs' metadata: a repeat is answered with fresh tensors of
the metadata the kernel gave the first time.  The recording (ops, arguments, shapes) is the same; anything else
(an op that views or writes, a tensor not on meta, another dispatch mode below the recorder, a custom op, a symbolic
size, an output that is not a fresh dense tensor) runs its kernel every time.
"""
from __future__ import annotations

import torch

from ..memo import shared_memo

#: the memos of the recordings running now (``meta_memo``), innermost last
_MEMOS: list[dict] = []

#: dtypes whose tensors carry no extra bits a kernel may read (complex: conjugate and negative views)
_DTYPES = frozenset({torch.float64, torch.float32, torch.float16, torch.bfloat16, torch.int64, torch.int32,
                     torch.int16, torch.int8, torch.uint8, torch.bool})

#: scalars and options passed to ops, keyed with their type (1, 1.0 and True hash alike but promote differently)
_SCALARS = frozenset({int, bool, str, type(None), torch.dtype, torch.device, torch.layout, torch.memory_format})

#: tags of ops whose outputs are not a function of their inputs' metadata, or that must run (a seeded generator)
_IMPURE_TAGS = frozenset({torch.Tag.data_dependent_output, torch.Tag.dynamic_output_shape,
                          torch.Tag.nondeterministic_seeded, torch.Tag.inplace_view})

_PURE: dict = {}  # op overload -> whether its kernel's result may be memoised


class _Unkeyed(Exception):
    """An argument the memo does not key (a symbolic size, a tensor off meta): the kernel runs."""


def meta_memo():
    """Within this block, recordings share one memo of meta kernels' results (see the module docstring).  Nested
    blocks share the outer memo."""
    return shared_memo(_MEMOS)


def run_op(func, args: tuple, kwargs: dict):
    """``func(*args, **kwargs)``, from the memo where it holds the op on these inputs (call from a dispatch mode's
    handler)."""
    if not _MEMOS or not _pure(func) or torch._C._len_torch_dispatch_stack():  # (a mode below would see less)
        return func(*args, **kwargs)
    inputs: list = []
    try:
        key = (func, _key(args, inputs), _key(kwargs, inputs), torch.get_default_dtype())
    except _Unkeyed:
        return func(*args, **kwargs)
    memo = _MEMOS[-1]
    spec = memo.get(key)
    if spec is not None:
        return _rebuilt(spec)
    out = func(*args, **kwargs)
    spec = _spec(out, inputs)
    if spec is not None:
        memo[key] = spec
    return out


def _pure(func) -> bool:
    found = _PURE.get(func)
    if found is None:
        found = _PURE[func] = isinstance(func, torch._ops.OpOverload) and func.namespace in ("aten", "prims") \
            and not func.is_view and func is not torch.ops.aten._unsafe_view.default \
            and not _IMPURE_TAGS.intersection(func.tags) \
            and all(a.alias_info is None for a in (*func._schema.arguments, *func._schema.returns))
    return found


def _key(x, inputs: list):
    """A hashable key of an op's argument: a tensor by its metadata (appended to ``inputs``), a scalar with its
    type; ``_Unkeyed`` for anything else."""
    t = type(x)
    if t is torch.Tensor or t is torch.nn.Parameter:
        if not x.is_meta or x.layout != torch.strided or x.dtype not in _DTYPES or x._is_zerotensor():
            raise _Unkeyed
        inputs.append(x)
        return x.shape, x.stride(), x.dtype, x.storage_offset(), x.requires_grad
    if t in _SCALARS:
        return t, x
    if t is float:  # -0.0 == 0.0
        return t, repr(x)
    if t is tuple or t is list:
        return t, tuple([_key(a, inputs) for a in x])
    if t is dict:
        return t, tuple([(k, _key(v, inputs)) for k, v in x.items()])
    raise _Unkeyed


def _spec(out, inputs: list):
    """What rebuilds ``out`` (a fresh dense meta tensor, or a tuple or list of them and Nones), else None."""
    t = type(out)
    if t is tuple or t is list:
        parts = [None if o is None else _tensor_spec(o, inputs) for o in out]
        return None if any(p is None for p, o in zip(parts, out) if o is not None) else (t, parts)
    return _tensor_spec(out, inputs)


def _tensor_spec(out, inputs: list):
    if type(out) is not torch.Tensor or out.device.type != "meta" or out.layout != torch.strided \
            or out.dtype not in _DTYPES or out.storage_offset() != 0 or any(out is x for x in inputs):
        return None
    shape, stride = tuple(out.shape), out.stride()
    if out.untyped_storage().nbytes() != _nbytes(shape, stride, out.element_size()):
        return None  # a storage larger than its elements need: not what a fresh tensor would have
    return shape, stride, out.dtype


def _nbytes(shape: tuple, stride: tuple, itemsize: int) -> int:
    if 0 in shape:
        return 0
    return (1 + sum((n - 1) * s for n, s in zip(shape, stride))) * itemsize


def _rebuilt(spec):
    if type(spec[0]) is type:
        kind, parts = spec
        return kind(None if p is None else _fresh(p) for p in parts)
    return _fresh(spec)


def _fresh(spec) -> torch.Tensor:
    shape, stride, dtype = spec
    return torch.empty_strided(shape, stride, dtype=dtype, device="meta")
