"""Symbolic shapes for every tensor of a recorded forward pass.

The model is recorded twice, at two concrete sizes (A and B).  Each op's output shape is derived from its inputs'
symbolic shapes: an op with a catalog layer (convolution, pooling, reductions, matmuls, ...) takes its layer's own
``Cost.output_shape``, from the one handler that decodes the op (``handlers``); views, data movement and ops with no
catalog layer have a shape rule in their op family's module (``tracing/ops``: regrouping dims, permutations,
concatenation, padding, sizes computed from the input), run here with the ``Propagation`` as their ``S`` (both
recordings, and ``size_from`` to explain numbers as formulas); everything else broadcasts its inputs.  Every derived size is checked against *both* recordings, and against
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

import sympy

from ..cost import as_expr
from ..errors import NoSingleFormula, TraceError  # noqa: F401  (re-exported)
from ..layers.shapes import conv_transpose_output_size
from .handlers import handler_for, shape_rule_for
from .op_args import layer_for_op, tensor_args
from .record import OpEvent, Recording

Shape = tuple  # of sympy expressions


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
            elif (guess := size_from(self, (), (x, y), (n, i))) is not None:
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
        rule = shape_rule_for(ev.op)
        if rule is not None:
            return rule(ev, self, self.a.shapes, self.sym)
        h = handler_for(ev.op)
        if h is None or h.output != "layer":
            return pointwise(self, ev)
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
        return size_from(self, shape, sizes[:2], at, key[2])

    def third_op(self) -> OpEvent | None:
        """The op being derived, as the third recording ran it (None without one)."""
        return self.c.ops[self.current] if self.c is not None else None

    def s(self, x) -> Shape:
        """The symbolic shape of a tensor argument: a shape rule's ``S(x)`` (see ``handlers``)."""
        return self.sym[x.index]

    __call__ = s

    @property
    def evb(self) -> OpEvent:
        """The op being derived, as the second recording ran it (its numbers at the other trace size)."""
        return self.b.ops[self.current]

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
    first = next((t for t in tensor_args(ev)), None)
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


def pointwise(p: Propagation, ev: OpEvent) -> list:
    """Broadcasting: each output dim is an input dim at the same (right-aligned) place with the same sizes."""
    ins = [t for t in tensor_args(ev)]
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


def size_from(p, shape, pair, at: tuple[int, int] | None = None, third: int | None = None):
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


