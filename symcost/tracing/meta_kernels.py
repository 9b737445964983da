"""Meta kernels run once per op and input metadata: while recording (``meta_memo``) and in a proof's run on fake
tensors of symbolic sizes (``fake_kernel_memo``).

Most of a recording's time is torch's meta kernels, written in Python (type promotion, broadcasting, strides), and a
model repeats them: identical blocks, forward and backward, and the same layer again at the next configuration a
fit traces.  An op that neither aliases nor mutates its inputs gives fresh output tensors whose sizes, strides and
dtypes are a function of the op, its arguments and its inputs' metadata: a repeat is answered with fresh tensors of
the metadata the kernel gave the first time.  The recording (ops, arguments, shapes) is the same; anything else
(an op that views or writes, a tensor not on meta, another dispatch mode below the recorder, a custom op, a symbolic
size, an output that is not a fresh dense tensor) runs its kernel every time.  In a symbolic run, sizes are keyed by
their expressions and a plain view (one tensor out, a view of the first argument) is memoised too, rebuilt as a
strided view of its new base; the kernel's size questions were asked, and became guards, at the first run.
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


def _key(x, inputs: list, tensor_key=None):
    """A hashable key of an op's argument: a tensor by its metadata (``tensor_key``: ``_meta_tensor_key`` or
    ``_fake_tensor_key``; the tensor is appended to ``inputs``), a scalar with its type; ``_Unkeyed`` for anything
    else."""
    t = type(x)
    if isinstance(x, torch.Tensor):
        return (tensor_key or _meta_tensor_key)(x, inputs)
    if t in _SCALARS:
        return t, x
    if t is float:  # -0.0 == 0.0
        return t, repr(x)
    if t is torch.SymInt:
        return t, _dim(x)
    if t is tuple or t is list:
        return t, tuple([_key(a, inputs, tensor_key) for a in x])
    if t is dict:
        return t, tuple([(k, _key(v, inputs, tensor_key)) for k, v in x.items()])
    raise _Unkeyed


def _meta_tensor_key(x, inputs: list):
    if (type(x) is not torch.Tensor and type(x) is not torch.nn.Parameter) or not x.is_meta \
            or x.layout != torch.strided or x.dtype not in _DTYPES or x._is_zerotensor():
        raise _Unkeyed
    inputs.append(x)
    return x.shape, x.stride(), x.dtype, x.storage_offset(), x.requires_grad


def _spec(out, inputs: list, tensor_spec=None):
    """What rebuilds ``out`` (a fresh dense meta tensor, or a tuple or list of them and Nones), else None
    (``tensor_spec``: ``_tensor_spec``, or ``_fake_tensor_spec`` for fake tensors)."""
    tensor_spec = tensor_spec or _tensor_spec
    t = type(out)
    if t is tuple or t is list:
        parts = [None if o is None else tensor_spec(o, inputs) for o in out]
        return None if any(p is None for p, o in zip(parts, out) if o is not None) else (t, parts)
    return tensor_spec(out, inputs)


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


def _rebuilt(spec, fake_mode=None):
    if type(spec[0]) is type:
        kind, parts = spec
        return kind(None if p is None else _fresh(p, fake_mode) for p in parts)
    return _fresh(spec, fake_mode)


def _fresh(spec, fake_mode=None) -> torch.Tensor:
    """A new meta tensor of ``spec``'s metadata (a fake tensor of ``fake_mode``, made without its dispatch)."""
    shape, stride, dtype = spec
    if fake_mode is None:
        return torch.empty_strided(shape, stride, dtype=dtype, device="meta")
    from torch._subclasses.fake_tensor import FakeTensor
    from torch.utils._mode_utils import no_dispatch

    with no_dispatch():
        meta = torch.empty_strided(shape, stride, dtype=dtype, device="meta")
    return FakeTensor(fake_mode, meta, meta.device)


def fake_kernel_memo(fake_mode):
    """A dispatch mode to enter above a ``FakeTensorMode`` with symbolic sizes, for one run: a repeated op on
    inputs of identical metadata (sizes and strides as the same expressions) is answered with fresh fake tensors of
    the metadata its kernel gave the first time.  The kernel's size questions were asked at the first run and are
    guards of the shape environment by then; asked again on the same expressions they add nothing, so the guards a
    run collects are the same with or without the memo."""
    from torch._subclasses.fake_tensor import FakeTensor
    from torch.utils._python_dispatch import TorchDispatchMode

    class FakeKernelMemo(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.memo: dict = {}
            self.fake = fake_mode

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            pure = _pure(func)
            if not pure and not _plain_view(func):
                return func(*args, **kwargs)
            inputs: list = []
            try:
                key = (func, _key(args, inputs, _fake_tensor_key), _key(kwargs, inputs, _fake_tensor_key),
                       torch.get_default_dtype())
            except _Unkeyed:
                return func(*args, **kwargs)
            spec = self.memo.get(key)
            if spec is not None and (pure or type(args[0]) is FakeTensor):  # (a view of a fake tensor only)
                return _rebuilt(spec, self.fake) if pure else _view(args[0], spec, self.fake)
            out = func(*args, **kwargs)
            spec = _spec(out, inputs, _fake_tensor_spec) if pure else _view_spec(out, args[0])
            if spec is not None:
                self.memo[key] = spec
            return out

    return FakeKernelMemo()


def _dim(v):
    """A size, stride or offset as a key: an int, or the expression of a symbolic one (unbacked: ``_Unkeyed``)."""
    if type(v) is int:
        return v
    from torch.fx.experimental.symbolic_shapes import free_unbacked_symbols

    expr = v.node.expr
    if expr.is_Integer:
        return int(expr)
    if free_unbacked_symbols(expr):  # u0...: a size read from data
        raise _Unkeyed
    return expr


def _fake_tensor_key(x, inputs: list):
    """A fake tensor of symbolic sizes by its metadata (sizes as expressions); a constant (a fake tensor with a
    known value) is not keyed."""
    if not x.is_meta or x.layout != torch.strided or x.dtype not in _DTYPES or x._is_zerotensor() \
            or getattr(x, "constant", None) is not None:
        raise _Unkeyed
    inputs.append(x)
    return (tuple([_dim(d) for d in x.shape]), tuple([_dim(d) for d in x.stride()]), x.dtype,
            _dim(x.storage_offset()), x.requires_grad)


def _fake_tensor_spec(out, inputs: list):
    """What rebuilds ``out``, checked by rebuilding it once: the same sizes, strides and storage size (compared as
    expressions, which asks the shape environment nothing)."""
    from torch._subclasses.fake_tensor import FakeTensor

    if type(out) is not FakeTensor or not out.is_meta or out.layout != torch.strided or out.dtype not in _DTYPES \
            or out.constant is not None or any(out is x for x in inputs):
        return None
    try:
        if _dim(out.storage_offset()) != 0:
            return None
        spec = tuple(out.shape), out.stride(), out.dtype
        fresh = _fresh(spec, out.fake_mode)
        if any(_dim(a) != _dim(b) for a, b in zip((*out.shape, *out.stride()), (*fresh.shape, *fresh.stride()))) \
                or _dim(fresh.untyped_storage().nbytes()) != _dim(out.untyped_storage().nbytes()):
            return None
    except _Unkeyed:
        return None
    return spec


_VIEWS: dict = {}  # op overload -> whether it is a view of its first argument, one tensor out, nothing written


def _plain_view(func) -> bool:
    found = _VIEWS.get(func)
    if found is None:
        schema = func._schema
        found = _VIEWS[func] = isinstance(func, torch._ops.OpOverload) and func.namespace == "aten" \
            and func.is_view and torch.Tag.inplace_view not in func.tags and len(schema.returns) == 1 \
            and str(schema.returns[0].type) == "Tensor" and bool(schema.arguments) \
            and str(schema.arguments[0].type) == "Tensor" \
            and schema.arguments[0].alias_info is not None and not schema.arguments[0].alias_info.is_write \
            and schema.returns[0].alias_info is not None and not schema.returns[0].alias_info.is_write
    return found


def _view_spec(out, base):
    """What rebuilds the view ``out`` of ``base``: its sizes, strides and offset (``base``'s storage)."""
    from torch._subclasses.fake_tensor import FakeTensor

    if type(out) is not FakeTensor or type(base) is not FakeTensor or out is base or out.constant is not None \
            or out.dtype != base.dtype or not torch._C._is_alias_of(out, base):
        return None  # (a view as another dtype is no strided view of its base: ``x.view(torch.int32)``)
    return tuple(out.shape), out.stride(), out.storage_offset()


def _view(base, spec, fake_mode):
    from torch._subclasses.fake_tensor import FakeTensor
    from torch.utils._mode_utils import no_dispatch

    shape, stride, offset = spec
    with no_dispatch():
        meta = torch.ops.aten.as_strided.default(base, shape, stride, offset)
    return FakeTensor(fake_mode, meta, meta.device)
