"""Symbolic shapes for every tensor of a recorded forward pass.

The model is recorded twice, at two concrete sizes (A and B).  Each op's output shape is derived from its inputs'
symbolic shapes: an op with a catalog layer (convolution, pooling, reductions, matmuls, ...) takes its layer's own
``Cost.output_shape``, from the one handler that decodes the op (``costing``); views, data movement and ops with no
catalog layer have a rule here (regrouping dims, permutations, concatenation, padding, sizes computed from the
input); everything else broadcasts its inputs.  Every derived size is checked against *both* recordings, and against
the third (the far check point, other residues) where it runs the same ops; a size no rule explains falls back to a
constant (equal in every recording), to a tensor dim seen earlier with the same sizes (a size the model reads off
another tensor: ``interpolate(size=skip.shape[-2:])``), to a simple function of an input size, to an earlier
tensor's element count (autograd's flat buffers), and failing that the trace stops and names the op, so a wrong
formula can never pass silently.  Numbers the model hands a pooling op or a transposed convolution (a window equal to
the input, ``output_size=``) are explained the same way, as formulas.
"""
from __future__ import annotations

from dataclasses import replace
from math import prod
from typing import Callable

import sympy

from ..cost import as_expr
from ..errors import NoSingleFormula, TraceError  # noqa: F401  (re-exported)
from ..layers.tensor_ops import formula_scale
from ..layers.shapes import conv_transpose_output_size
from .costing import layer_for_op
from .handlers import handler_for
from .record import OpEvent, Recording, TensorRef

Shape = tuple  # of sympy expressions
RULES: dict[str, Callable] = {}


def rule(*names: str):
    """Register the shape rule of views, data movement and ops with no catalog layer (one rule per op)."""
    def deco(fn):
        for n in names:
            if n in RULES:
                raise ValueError(f"shape rule for {n} registered twice")
            RULES[n] = fn
        return fn
    return deco


class Propagation:
    def __init__(self, a: Recording, b: Recording, input_shape: Shape, values_a: dict, values_b: dict,
                 third: tuple[Recording, dict] | None = None):
        if len(a.ops) != len(b.ops):  # a Python loop over a size (a recurrent scan over the sequence)
            raise NoSingleFormula(f"the model runs {len(a.ops)} operations at one trace size and {len(b.ops)} at "
                                  "the other: a loop whose length depends on the input size (a recurrence over the "
                                  "sequence, step by step) or a branch on it has no single formula; trace it at a "
                                  "concrete size")
        if any(x.op != y.op for x, y in zip(a.ops, b.ops)):
            raise NoSingleFormula("the model runs different operations at the two trace sizes "
                                  "(control flow that depends on the input size); trace it at a concrete size")
        self.a, self.b = a, b
        self.values_a, self.values_b = values_a, values_b
        #: a third recording (the far check point) that only tells apart guesses of a size computed in Python; used
        #: where it runs the same ops (its tensors then have the same numbers)
        self.c, self.values_c = None, None
        if third is not None:
            c, values_c = third
            if len(c.ops) == len(a.ops) and len(c.shapes) == len(a.shapes) and \
                    all(x.op == y.op for x, y in zip(a.ops, c.ops)):
                self.c, self.values_c = c, values_c
        self.sym: list = [None] * len(a.shapes)
        self.lookup: dict[tuple[int, int], sympy.Expr] = {}
        #: (size at A, at B, at the third recording or None) -> the first tensor dim seen with those sizes: a size
        #: the model reads off another tensor (``interpolate(size=skip.shape[-2:])``, pad-to-skip) is that dim
        self.seen: dict[tuple, sympy.Expr] = {}
        #: (numel at A, numel at B) -> the element count of a tensor seen: a size that is one, a flat buffer's
        self.numels: dict[tuple[int, int], sympy.Expr] = {}
        self._memo: dict = {}
        self._memo_c: dict = {}
        self.sizes: set = set()   # every symbolic size: the model's domain is where all are >= 1
        #: op number -> (layer, input shapes, cost) of the ops whose shape is their layer's: costed once
        self.costed: dict[int, tuple] = {}
        self.current = 0  # the op being derived
        if isinstance(input_shape, dict):  # named inputs, each with its own symbols
            for name, n in a.inputs.items():
                self.sym[n] = self.finish(tuple(input_shape[name]), n, f"input {name}")
        else:
            self.sym[a.input_index] = self.finish(tuple(input_shape), a.input_index, "input")

    # ---- numbers ---------------------------------------------------------------
    def value(self, e) -> tuple[int, int]:
        e = as_expr(e) if not isinstance(e, sympy.Basic) else e
        if e not in self._memo:
            self._memo[e] = (e.xreplace(self.values_a), e.xreplace(self.values_b))
        return self._memo[e]

    def fits_third(self, e, at: tuple[int, int] | None) -> bool:
        """Whether ``e`` gives the size recorded at the third point for tensor ``at[0]``'s dim ``at[1]`` (True when
        there is no third recording to ask)."""
        if self.c is None or at is None or at[1] >= len(self.c.shapes[at[0]]):
            return True
        v = self.third_value(e)
        return not v.is_Integer or int(v) == self.c.shapes[at[0]][at[1]]

    def third_value(self, e) -> sympy.Expr:
        """``e`` at the third recording's sizes (call only where there is one)."""
        e = as_expr(e) if not isinstance(e, sympy.Basic) else e
        if e not in self._memo_c:
            self._memo_c[e] = e.xreplace(self.values_c)
        return self._memo_c[e]

    def third_size(self, n: int, i: int) -> int | None:
        """Tensor ``n``'s dim ``i`` in the third recording (None without one)."""
        if self.c is None or i >= len(self.c.shapes[n]):
            return None
        return self.c.shapes[n][i]

    def finish(self, cand: Shape | None, n: int, where: str) -> Shape:
        """Check a candidate shape against both recordings (and the third, where there is one), dim by dim, with
        fallbacks."""
        sa, sb = self.a.shapes[n], self.b.shapes[n]
        if len(sa) != len(sb):
            raise TraceError(f"{where}: rank differs between the two trace sizes")
        out, thirds = [], []
        for i, (x, y) in enumerate(zip(sa, sb)):
            e = cand[i] if cand is not None and i < len(cand) and len(cand) == len(sa) else None
            z = self.third_size(n, i)
            thirds.append(z)
            fits = e is not None and self.value(e) == (x, y)
            if fits and self.fits_third(e, (n, i)):
                out.append(as_expr(e))
            elif x == y and z in (None, x):
                out.append(sympy.Integer(x))
            elif z is not None and (found := self.explained((x, y, z), (n, i))) is not None:
                # the rule's size (or a constant) holds at the trace sizes only: a size read off another tensor
                out.append(found)
            elif fits:  # holds at the trace sizes only, and nothing else explains the third: verification refuses
                out.append(as_expr(e))
            elif x == y:
                out.append(sympy.Integer(x))
            elif (x, y) in self.lookup and self.fits_third(self.lookup[(x, y)], (n, i)):
                out.append(self.lookup[(x, y)])
            elif (guess := _size_from(self, (), (x, y), (n, i))) is not None:
                out.append(guess)  # a size computed in Python (a mask of T + 1 columns): checked at other sizes
            elif (x, y) in self.numels and self.fits_third(self.numels[(x, y)], (n, i)):
                out.append(self.numels[(x, y)])  # a tensor's element count (autograd's flat storage buffers)
            else:
                raise NoSingleFormula(f"{where}: no symbolic formula for size {x} (and {y} at the second trace size) "
                                      f"of dim {i}; trace at a concrete size instead")
        for e, x, y, z in zip(out, sa, sb, thirds):
            if x != y:
                self.lookup.setdefault((x, y), e)
            if not x == y == (x if z is None else z):
                self.seen.setdefault((x, y, z), e)
            if e.free_symbols:  # also a size that happens to agree at both trace sizes: it is still symbolic
                self.sizes.add(e)
        if len(out) > 1 and prod(sa) != prod(sb):
            self.numels.setdefault((prod(sa), prod(sb)), sympy.Mul(*out))
        return tuple(out)

    # ---- the walk ---------------------------------------------------------------
    def run(self) -> list:
        for k, ev in enumerate(self.a.ops):
            self.current = k
            for n in ev.inputs:
                if self.sym[n] is None:  # a parameter, buffer or constant: fixed size
                    self.sym[n] = self.finish(None, n, f"{ev.op} in {ev.module or 'the model'}")
            try:
                cands = self.candidates(k, ev)
            except (IndexError, TypeError, ValueError) as e:
                if isinstance(e, TraceError):
                    raise
                cands = None
            for j, n in enumerate(ev.outputs):
                cand = cands[j] if cands is not None and j < len(cands) else None
                self.sym[n] = self.finish(cand, n, f"{ev.op} in {ev.module or 'the model'}")
        return self.sym

    def candidates(self, k: int, ev: OpEvent) -> list | None:
        """The output shapes of op ``k``: its rule's, else its catalog layer's, else its inputs broadcast."""
        if ev.op in RULES:
            return RULES[ev.op](self, ev, self.b.ops[k])
        h = handler_for(ev.op)
        if h is None or h.output != "layer":
            return pointwise(self, ev, self.b.ops[k])
        found = layer_for_op(_sized_args(self, ev, self.b.ops[k]), self.sym, self.a.shapes)
        if found is None:
            return None
        layer, ins = found
        cost = layer.cost(*ins)
        self.costed[k] = (layer, ins, cost)
        return [tuple(cost.output_shape)] * len(ev.outputs)  # several outputs (values, indices): one shape

    def explained(self, sizes: tuple, at: tuple[int, int] | None = None, shape: Shape = ()):
        """A size (its values at A, B and the third recording, or None there) as a tensor dim seen earlier with the
        same values, else as ``_size_from``'s simple function of one of ``shape`` or the model's input sizes; None
        when nothing fits."""
        key = sizes if len(sizes) == 3 else (*sizes, None)
        if key in self.seen:
            return self.seen[key]
        return _size_from(self, shape, sizes[:2], at, key[2])

    def third_op(self) -> OpEvent | None:
        """The op being derived, as the third recording ran it (None without one)."""
        return self.c.ops[self.current] if self.c is not None else None

    def s(self, x) -> Shape:
        return self.sym[x.index]

    def concrete(self, x) -> tuple:
        return self.a.shapes[x.index]


#: ops whose window or output size the model may compute from a tensor's size (``F.avg_pool2d(x, x.shape[-2:])``,
#: ``adaptive_avg_pool2d(x, (h // 2, w // 2))``): numbers that differ between the recordings are explained as sizes
_SIZED_ARGS = frozenset({
    "aten.avg_pool1d", "aten.avg_pool2d", "aten.avg_pool3d", "aten.max_pool1d", "aten.max_pool2d", "aten.max_pool3d",
    "aten.max_pool1d_with_indices", "aten.max_pool2d_with_indices", "aten.max_pool3d_with_indices",
    "aten._adaptive_avg_pool2d", "aten._adaptive_avg_pool3d", "aten.adaptive_avg_pool1d", "aten.adaptive_max_pool1d",
    "aten.adaptive_max_pool2d", "aten.adaptive_max_pool3d",
})


class _Unexplained(Exception):
    pass


def _sized_args(p: Propagation, ev: OpEvent, evb: OpEvent) -> OpEvent:
    """``ev`` with the numbers the model computed from sizes (they differ between the recordings) as formulas, for
    its handler to build a layer of symbolic arguments: a pooling window equal to the input (global pooling written
    ``F.avg_pool2d(x, x.shape[-2:])``), a transposed convolution's ``output_padding`` chosen by ``output_size=``.
    ``ev`` itself where every number is the same in every recording, or where one has no explanation (the
    verification then refuses the layer, naming it)."""
    evc = p.third_op()
    if ev.op == "aten.convolution" and len(ev.args) > 7 and ev.args[6]:
        padding = _output_padding(p, ev, evb, evc)
        return ev if padding is None else replace(ev, args=(*ev.args[:7], padding, *ev.args[8:]))
    if ev.op not in _SIZED_ARGS:
        return ev
    first = next((t for t in _tensors(ev)), None)
    shape = p.s(first) if first is not None else ()

    def walk(a, b, c):
        if isinstance(a, int) and not isinstance(a, bool) and type(a) is type(b) is type(c):
            if a == b == c:
                return a
            found = p.explained((a, b, c) if p.c is not None else (a, b), None, shape)
            if found is None:
                raise _Unexplained
            return found
        if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and isinstance(c, (list, tuple)) and \
                len(a) == len(b) == len(c):
            return type(a)(walk(*abc) for abc in zip(a, b, c))
        return a

    try:
        args = walk(ev.args, evb.args, evc.args if evc is not None else ev.args)
    except _Unexplained:
        return ev
    return ev if args == ev.args else replace(ev, args=args)


def _output_padding(p: Propagation, ev: OpEvent, evb: OpEvent, evc: OpEvent | None) -> list | None:
    """A transposed convolution called with ``output_size=`` (U-Net's up-convolution to its skip's size): torch
    computes ``output_padding`` from it, so it differs between the recordings.  The output size is then the size
    the model asked for, a tensor dim seen earlier (or ``_size_from``'s simple function of the input's), and the
    padding that size less the unpadded output; None where the padding is the same in every recording or that size
    has no explanation."""
    padding = list(ev.args[7])
    if padding == list(evb.args[7]) == list(evc.args[7] if evc is not None else padding):
        return None
    x, w, stride, pad, dilation = ev.args[0], ev.args[1], ev.args[3], ev.args[4], ev.args[5]
    xs, kernel, n = p.s(x), p.a.shapes[w.index][2:], ev.outputs[0]
    d = len(kernel)
    out = []
    for i in range(d):
        dim = len(xs) - d + i
        size = p.explained((p.a.shapes[n][dim], p.b.shapes[n][dim], p.third_size(n, dim)), (n, dim), (xs[dim],))
        if size is None:
            return None
        out.append(size - conv_transpose_output_size(xs[dim], kernel[i], stride[i], pad[i], dilation[i]))
    return out


def _tensors(ev: OpEvent) -> list[TensorRef]:
    out = []
    for a in ev.args:
        if isinstance(a, TensorRef):
            out.append(a)
        elif isinstance(a, (list, tuple)):
            out.extend(x for x in a if isinstance(x, TensorRef))
    return out


def _arg(ev: OpEvent, i: int, name: str, default=None):
    if len(ev.args) > i:
        return ev.args[i]
    return ev.kwargs.get(name, default)


def _axis_list(v, dims: int) -> list:
    v = list(v) if isinstance(v, (list, tuple)) else [v]
    return v * dims if len(v) == 1 else v


def pointwise(p: Propagation, ev: OpEvent, _evb) -> list:
    """Broadcasting: each output dim is an input dim at the same (right-aligned) place with the same sizes."""
    ins = [t for t in _tensors(ev)]
    out = []
    for n in ev.outputs:
        sa, sb = p.a.shapes[n], p.b.shapes[n]
        dims = []
        for i in range(1, len(sa) + 1):
            pick = None
            for t in ins:
                st, ca = p.s(t), p.concrete(t)
                if len(st) >= i and (ca[-i], p.b.shapes[t.index][-i]) == (sa[-i], sb[-i]):
                    pick = st[-i]
                    break
            dims.append(pick)
        out.append(tuple(reversed(dims)) if all(d is not None for d in dims) else None)
    return out


@rule("aten.repeat")
def _repeat(p, ev, _evb):
    xs, reps = p.s(ev.args[0]), list(ev.args[1])
    xs = (sympy.Integer(1),) * (len(reps) - len(xs)) + tuple(xs)
    return [tuple(x * r for x, r in zip(xs, reps))]


@rule("aten.unfold")
def _unfold_view(p, ev, _evb):
    """``Tensor.unfold(dim, size, step)``: a view of the windows along dim, the window appended as a new dim."""
    xs = list(p.s(ev.args[0]))
    d, size, step = ev.args[1] % len(xs), ev.args[2], ev.args[3]
    xs[d] = sympy.floor((xs[d] - size) / as_expr(step)) + 1
    return [(*xs, sympy.Integer(size))]


@rule("aten.col2im")
def _col2im(p, ev, _evb):
    xs, kernel = p.s(ev.args[0]), _axis_list(ev.args[2], 2)
    n = ev.outputs[0]
    rank = len(p.a.shapes[n])
    size = [_size_from(p, xs, pair, (n, rank - 2 + j)) for j, pair in enumerate(zip(ev.args[1], _evb.args[1]))]
    return [(*xs[:-2], xs[-2] / prod(kernel), *size)] if all(d is not None for d in size) else None


def _size_from(p, shape, pair, at: tuple[int, int] | None = None, third: int | None = None):
    """A size given to an op as numbers (an interpolation target, a fold's output size, a padded size): a constant,
    a size of the op's input or of the model's input, a tensor dim seen earlier with the same sizes in every
    recording (``interpolate(size=skip.shape[-2:])``: the skip's dim), or a simple function of one of the first
    (k*x, floor(x/k), ceil(x/k), either rounded to a multiple of k, x + c, x - c) that gives both recorded values,
    and the third recording's where there is one (``at``: the output tensor and dim the size lands in, or ``third``:
    the value there); else None (the shape check then tries sizes seen earlier).  A wrong guess that fits every
    recording fails the verification at other sizes."""
    a, b = pair
    c = third if third is not None else p.third_size(*at) if at is not None else None
    if a == b and c in (None, a):
        return sympy.Integer(a)
    sizes = (*shape, *sorted(p.values_a, key=str))  # the op's input sizes, then the model's input symbols
    for k, (x, make, f) in enumerate(_size_candidates(sizes)):
        if k == len(sizes) and c is not None and (a, b, c) in p.seen:
            return p.seen[(a, b, c)]  # after the sizes themselves: a dim of another tensor, checked at all three
        if tuple(f(v) for v in p.value(x)) == (a, b) and _fits(p, cand := make(), at, c):
            return cand
    return None


def _fits(p, e, at, c) -> bool:
    """Whether ``e`` gives ``c`` at the third recording (or, with no ``c`` given, tensor dim ``at``'s size there)."""
    if c is None:
        return p.fits_third(e, at)
    v = p.third_value(e)
    return not v.is_Integer or int(v) == c


def _size_candidates(sizes):
    """The simple functions of each size ``_size_from`` tries, in order, each as (the size, a builder of the
    expression, the same function on a number): the size, then k*x, floor(x/k), ceil(x/k), k*floor(x/k),
    k*ceil(x/k) for the smallest k, then x + c and x - c (a cached length plus the new tokens, a position table's
    offset) for the smallest c, then k*x + c, k*x - c and floor(x/k) - c for small k and c, then x - c for c up
    to 1024 (a length less a block).  Every guess is checked at the third recording and by the verification."""
    for x in sizes:
        yield x, (lambda x=x: x), (lambda v: v)
    for k in range(2, 65):
        for x in sizes:
            yield x, (lambda x=x, k=k: x * k), (lambda v, k=k: v * k)
            yield x, (lambda x=x, k=k: sympy.floor(x / k)), (lambda v, k=k: v // k)
            yield x, (lambda x=x, k=k: sympy.ceiling(x / k)), (lambda v, k=k: -(-v // k))
            yield x, (lambda x=x, k=k: k * sympy.floor(x / k)), (lambda v, k=k: v // k * k)
            yield x, (lambda x=x, k=k: k * sympy.ceiling(x / k)), (lambda v, k=k: -(-v // k) * k)
    for c in range(1, 65):
        for x in sizes:
            yield x, (lambda x=x, c=c: x + c), (lambda v, c=c: v + c if v + c > 0 else None)
            yield x, (lambda x=x, c=c: x - c), (lambda v, c=c: v - c if v - c > 0 else None)
    for k in range(2, 9):   # k*x + c: relative positions of two lengths less one (XLNet's 2L - 1)
        for c in range(1, 9):
            for x in sizes:
                yield x, (lambda x=x, k=k, c=c: k * x + c), (lambda v, k=k, c=c: k * v + c)
                yield x, (lambda x=x, k=k, c=c: k * x - c), (lambda v, k=k, c=c: k * v - c if k * v > c else None)
                # floor(x/k) - c: a downsampled length less a special token (CANINE's molecules)
                yield x, (lambda x=x, k=k, c=c: sympy.floor(x / k) - c), \
                    (lambda v, k=k, c=c: v // k - c if v // k > c else None)
    for c in range(65, 1025):   # a length less a block (CANINE's local attention, blocks of 128)
        for x in sizes:
            yield x, (lambda x=x, c=c: x - c), (lambda v, c=c: v - c if v - c > 0 else None)


@rule("aten.arange")
def _arange(p, ev, evb):
    """``torch.arange(n)`` with n computed from the input (position ids, a grid of patches): n explained as a size."""
    n = ev.outputs[0]
    size = _size_from(p, (), (p.a.shapes[n][0], p.b.shapes[n][0]), (n, 0)) if len(p.a.shapes[n]) == 1 else None
    return [(size,)] if size is not None else None


_UPSAMPLE_OPS = ("aten.upsample_nearest1d", "aten.upsample_nearest2d", "aten.upsample_nearest3d",
                 "aten._upsample_nearest_exact1d", "aten._upsample_nearest_exact2d", "aten._upsample_nearest_exact3d",
                 "aten.upsample_linear1d", "aten.upsample_bilinear2d", "aten.upsample_trilinear3d",
                 "aten.upsample_bicubic2d", "aten._upsample_bilinear2d_aa", "aten._upsample_bicubic2d_aa")


@rule(*_UPSAMPLE_OPS)
def _upsample(p, ev, evb):
    """Resizing to ``output_size``: ``floor(x * scale)`` when torch was given the scale, else the recorded sizes
    explained by the input's (``_size_from``)."""
    xs = p.s(ev.args[0])
    d = len(xs) - 2
    n = ev.outputs[0]
    scales = [v for v in ev.args[2:] if isinstance(v, float)][-d:] if "nearest" in ev.op else \
        [v for v in ev.args[3:] if isinstance(v, float)][-d:]
    out = []
    for i, x in enumerate(xs[2:]):
        pair = (p.a.shapes[n][2 + i], p.b.shapes[n][2 + i])
        # torch's double product rounds below floor(x * s) at some sizes for some factors (0.7 at 90): no formula
        e = sympy.floor(x * sympy.Rational(str(scales[i]))) if len(scales) == d and formula_scale(scales[i]) else None
        out.append(e if e is not None and p.value(e) == pair else _size_from(p, (x,), pair, (n, 2 + i)))
    return [(*xs[:2], *out)] if all(e is not None for e in out) else None


@rule("aten.permute")
def _permute(p, ev, _evb):
    xs = p.s(ev.args[0])
    return [tuple(xs[d % len(xs)] for d in ev.args[1])]


@rule("aten.transpose", "aten.transpose_")
def _transpose(p, ev, _evb):
    xs = list(p.s(ev.args[0]))
    i, j = ev.args[1] % len(xs), ev.args[2] % len(xs)
    xs[i], xs[j] = xs[j], xs[i]
    return [tuple(xs)]


@rule("aten.t")
def _t(p, ev, _evb):
    return [tuple(reversed(p.s(ev.args[0])))]


@rule("aten.select")
def _select(p, ev, _evb):
    xs = p.s(ev.args[0])
    d = ev.args[1] % len(xs)
    return [xs[:d] + xs[d + 1:]]


@rule("aten.cat")
def _cat(p, ev, _evb):
    parts = [t for t in ev.args[0]]
    d = _arg(ev, 1, "dim", 0)
    shapes = [p.s(t) for t in parts if len(p.s(t)) > 0]
    d %= len(shapes[0])
    total = sympy.Add(*[s[d] for s in shapes])
    return [tuple(total if i == d else s for i, s in enumerate(shapes[0]))]


def _same_padding(p, ev) -> dict:
    """TF-style "same" padding computed from the input size (timm's ``pad_same``, inside ``Conv2dSame`` and
    ``MaxPool2dSame``): the padded size before a window of span e = d(k-1)+1 and stride s is
    max(x, (ceil(x/s) - 1) s + e).  Found when the pad's consumer is a convolution or pool run by the same module;
    returns {dim: padded size} for the dims that formula explains at both trace sizes."""
    out, n = {}, ev.outputs[0]
    consumer = next((e for e in p.a.ops if n in e.inputs), None)
    if consumer is None or consumer.module != ev.module or consumer is ev:
        return out
    if consumer.op != "aten.convolution" and not consumer.op.startswith(("aten.max_pool", "aten.avg_pool")):
        return out
    try:
        found = layer_for_op(consumer, p.sym, p.a.shapes)  # the window, as the consumer's handler decodes it
    except (IndexError, TypeError, ValueError):
        return out
    window = found[0] if found else None
    if window is None or getattr(window, "output_padding", None) is not None:  # a transposed convolution: no
        return out
    kernel, stride = window.kernel_size, window.stride
    dilation = getattr(window, "dilation", (1,) * len(kernel))  # average pooling has none
    d = len(kernel)
    xs = p.s(ev.args[0])
    for i, (k, s, dl) in enumerate(zip(_axis_list(kernel, d), _axis_list(stride, d), _axis_list(dilation, d))):
        dim = len(xs) - d + i
        span = dl * (k - 1) + 1
        padded = (sympy.ceiling(xs[dim] / s) - 1) * s + span
        if span < s:  # the formula can fall below x: no padding then
            padded = sympy.Max(xs[dim], padded)
        if p.value(padded) == (p.a.shapes[n][dim], p.b.shapes[n][dim]):
            out[dim] = padded
    return out


@rule("aten.constant_pad_nd", "aten.reflection_pad1d", "aten.reflection_pad2d", "aten.reflection_pad3d",
      "aten.replication_pad1d", "aten.replication_pad2d", "aten.replication_pad3d")
def _pad(p, ev, evb):
    """The padded size: TF "same" padding; the size of the tensor it is then concatenated with (U-Net's
    pad-to-skip, ``diff // 2`` and ``diff - diff // 2`` of ``diff = skip - x``, which may be 0 at every recording);
    x + lo + hi for pads the same in every recording; padding up to a multiple of k; else pads computed from
    another tensor's size, where the padded size is a tensor dim seen earlier with the same sizes."""
    xs = list(p.s(ev.args[0]))
    n = ev.outputs[0]
    evc = p.third_op()
    pads, pads_b = list(ev.args[1]), list(evb.args[1])
    pads_c = list(evc.args[1]) if evc is not None else pads
    same = _same_padding(p, ev) if ev.op == "aten.constant_pad_nd" else {}
    joined = _concatenated_with(p, n) if ev.op == "aten.constant_pad_nd" else {}
    for i in range(len(pads) // 2):
        d = len(xs) - 1 - i
        lo, hi = pads[2 * i], pads[2 * i + 1]
        target = (p.a.shapes[n][d], p.b.shapes[n][d])
        if d in same:
            xs[d] = same[d]
        elif d in joined:
            xs[d] = joined[d]
        elif (lo, hi) == (pads_b[2 * i], pads_b[2 * i + 1]) == (pads_c[2 * i], pads_c[2 * i + 1]):
            xs[d] = xs[d] + lo + hi
        else:  # padding up to a multiple of k (window attention): ceil(x/k)*k
            xa, xb = p.value(xs[d])
            for k in range(2, 65):
                if (-(-xa // k) * k, -(-xb // k) * k) == target and lo == 0 and pads_b[2 * i] == 0:
                    xs[d] = sympy.ceiling(xs[d] / k) * k
                    break
            else:  # pads computed from another tensor's size: the padded size is that tensor's
                xs[d] = p.explained((*target, p.third_size(n, d)), (n, d), (xs[d],))
    return [tuple(xs)] if all(x is not None for x in xs) else None


def _concatenated_with(p, n: int) -> dict:
    """{dim: size} of a tensor that tensor ``n`` is next concatenated with (``torch.cat([x2, x1], dim=1)`` after
    padding x1 to x2), for the dims other than the concatenated one where both have the same sizes in every
    recording: torch.cat refuses any other size, so wherever the model runs the padded size is that tensor's."""
    consumer = next((e for e in p.a.ops[p.current + 1:] if n in e.inputs), None)
    if consumer is None or consumer.op != "aten.cat" or not isinstance(consumer.args[0], (list, tuple)):
        return {}
    rank = len(p.a.shapes[n])
    along = _arg(consumer, 1, "dim", 0) % rank
    out: dict = {}
    for t in consumer.args[0]:
        if not isinstance(t, TensorRef) or t.index == n or p.sym[t.index] is None or len(p.sym[t.index]) != rank:
            continue
        for d in range(rank):
            same = p.a.shapes[t.index][d] == p.a.shapes[n][d] and p.b.shapes[t.index][d] == p.b.shapes[n][d] and \
                p.third_size(t.index, d) == p.third_size(n, d)
            if d != along and same and d not in out:
                out[d] = p.sym[t.index][d]
    return out


@rule("aten.view", "aten._unsafe_view", "aten.reshape", "aten.unsqueeze", "aten.squeeze", "aten.flatten",
      "aten.unflatten", "aten.expand", "aten.alias", "aten.clone", "aten.contiguous", "aten.as_strided_",
      "aten.detach", "aten.lift_fresh")
def _regroup(p, ev, _evb):
    """Views: split the dims into groups of equal size products (in both recordings) and map each group."""
    src = ev.args[0]
    xs, xa, xb = p.s(src), p.concrete(src), p.b.shapes[src.index]
    n = ev.outputs[0]
    ya, yb = p.a.shapes[n], p.b.shapes[n]
    if prod(xa) != prod(ya) or prod(xb) != prod(yb):
        return pointwise(p, ev, _evb)  # expand: broadcasting
    ins = [(s, a, b) for s, a, b in zip(xs, xa, xb) if (a, b) != (1, 1)]
    outs = [i for i, (a, b) in enumerate(zip(ya, yb)) if (a, b) != (1, 1)]
    result: list = [sympy.Integer(1) if (a, b) == (1, 1) else None for a, b in zip(ya, yb)]
    i = j = 0
    while i < len(ins) and j < len(outs):
        gi, gj = [ins[i]], [outs[j]]
        i, j = i + 1, j + 1
        pa_in, pb_in = gi[0][1], gi[0][2]
        pa_out, pb_out = ya[gj[0]], yb[gj[0]]
        while (pa_in, pb_in) != (pa_out, pb_out):
            if pa_in < pa_out or (pa_in == pa_out and pb_in < pb_out):
                if i >= len(ins):
                    return None
                gi.append(ins[i])
                pa_in, pb_in, i = pa_in * ins[i][1], pb_in * ins[i][2], i + 1
            else:
                if j >= len(outs):
                    return None
                gj.append(outs[j])
                pa_out, pb_out, j = pa_out * ya[outs[j]], pb_out * yb[outs[j]], j + 1
        total = sympy.Mul(*[g[0] for g in gi])
        if len(gj) == 1:  # one output dim: the product, even where it happens to agree at both trace sizes
            result[gj[0]] = total
            continue
        varying = [k for k in gj if ya[k] != yb[k]]
        for k in gj:
            if ya[k] == yb[k]:
                result[k] = sympy.Integer(ya[k])
        if len(varying) == 1:
            const = prod(ya[k] for k in gj if k not in varying)
            result[varying[0]] = total / const
        elif varying:
            return None
    return [tuple(result)] if all(r is not None for r in result) else None
