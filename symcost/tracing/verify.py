"""Every symbolic derivation is checked against one more recording, at sizes of other residues.

The two trace sizes are both odd and ≡ 1 (mod 32), so Python logic that depends on the input size (TF-style "same"
padding computed with ``math.ceil(ih / s)``, a branch taken only at multiples of 32, an interpolation target computed
from ``x.shape``) can take the same path at both and pass the shape check; and a size that repeated downsampling
makes equal at both (a constant, as far as two traces can tell) may not be one.  A third recording at even sizes —
multiples of 64 and of 32, not square, above both trace sizes — is derived concretely and compared with the formulas
row by row: the ops run, every primitive count, params, buffers, reads, writes and output shape.  Any difference is a
``NoSingleFormula`` that names the layer and both numbers; tracing each size on its own (``--at``) stays exact.
"""
from __future__ import annotations

import sympy

from ..cost import Cost
from ..errors import NoSingleFormula
from ..model import ModelCost
from .record import Recording

_FIELDS = ("params", "buffers", "reads", "writes")


def check_points(values_a: dict, values_b: dict) -> list[dict]:
    """Assignments to verify at, best first: even sizes above both trace sizes (far enough that a size which
    downsampling made equal at both traces differs here), the first symbol a multiple of 64, the next a multiple of 32
    only (so H != W), each of a residue mod 3 that no other recording of it has, the batch 4; then each trace size
    minus one (a multiple of 32) for a model with a maximum."""
    first, second = {}, {}
    spatial = 0
    for s, a in values_a.items():
        a, b = int(a), int(values_b[s])
        if max(a, b) <= 3:                     # a batch symbol (traced at 2 and 3)
            first[s] = second[s] = sympy.Integer(4)
            continue
        far = 64 * -(-(max(a, b) + 32) // 64) - (32 if spatial % 2 else 0)
        # of far, far + 64, far + 128 (one of each residue mod 3), one whose residue mod 3 no other recording has:
        # a stride of 3 in Python logic (TF "same" padding) then shows too
        seen = {a % 3, b % 3, *(v % 3 for v in _alternating(a))}
        first[s] = sympy.Integer(next((c for c in (far, far + 64, far + 128) if c % 3 not in seen), far))
        second[s] = sympy.Integer(a - 1 if a - 1 != b else a + 1)
        spatial += 1
    return [first, second] if first != second else [first]


def _alternating(a: int) -> tuple[int, int]:
    """Two sizes below ``a`` whose halvings alternate in parity, one starting even and one odd (a = 225: 170 =
    0b10101010 -> 170, 85, 42, 21 …; 213 = 0b11010101 -> 213, 106, 53, 26 …)."""
    even = int("10" * max(1, a.bit_length() // 2), 2)
    while even >= a and even > 2:
        even >>= 2
    return even, (even >> 1) | (1 << (even.bit_length() - 1))


def mixed_points(values_a: dict, values_b: dict) -> list[dict]:
    """Two more assignments where every input size's halvings alternate in parity (one symbol starting even while
    the next starts odd, then swapped): the trace sizes and the far check halve to even sizes only, so Python logic
    on the parity of a downsampled size (a branch on odd widths after a resize) shows here."""
    first, second = {}, {}
    spatial = 0
    for s, a in values_a.items():
        a, b = int(a), int(values_b[s])
        if max(a, b) <= 3:
            first[s], second[s] = sympy.Integer(5), sympy.Integer(5)
            continue
        even, odd = _alternating(a)
        x, y = (even, odd) if spatial % 2 == 0 else (odd, even)
        first[s], second[s] = sympy.Integer(x), sympy.Integer(y)
        spatial += 1
    return [p for p in (first, second) if all(p[s] not in (values_a[s], values_b[s]) for s in p if
                                                  int(values_a[s]) > 3)]


def describe(values: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in values.items())


def verify(mc: ModelCost, rec: Recording, concrete: ModelCost, values: dict, rec_a: Recording) -> None:
    """Raise ``NoSingleFormula`` unless ``concrete`` (the model derived at ``values``) equals ``mc`` there."""
    at = describe(values)
    ops_a, ops_c = [e.op for e in rec_a.ops], [e.op for e in rec.ops]
    if ops_a != ops_c:
        k = next((i for i, (x, y) in enumerate(zip(ops_a, ops_c)) if x != y), min(len(ops_a), len(ops_c)))
        where = rec.ops[k].module if k < len(rec.ops) else rec_a.ops[k].module
        theirs = ops_c[k] if k < len(ops_c) else "nothing"
        ours = ops_a[k] if k < len(ops_a) else "nothing"
        raise NoSingleFormula(
            f"the model runs different operations at {at} than at the trace sizes (in {where or 'the model'}: "
            f"{theirs} instead of {ours}): Python logic depends on the input size, so no single formula holds")
    if len(mc.rows) != len(concrete.rows):
        raise NoSingleFormula(f"the model's layers differ at {at} from the trace sizes: no single formula holds")
    seen: dict = {}  # expression -> its value here: rows share expressions (a model repeats its blocks)
    for row, real in zip(mc.rows, concrete.rows):
        diff = _first_difference(row.cost, real.cost, values, seen)
        if row.name != real.name or row.layer != real.layer:
            diff = ("layer", f"{row.name} ({row.layer})", f"{real.name} ({real.layer})")
        if diff:
            what, formula, measured = diff
            raise NoSingleFormula(
                f"{row.name} ({row.layer}): its formula gives {what} = {formula} at {at}, but the model recorded at "
                f"that size gives {measured} (an argument computed from the input size in Python, such as TF-style "
                f"'same' padding): no single formula holds")
    for name, ours, theirs in (("uncovered ops", mc.uncovered, concrete.uncovered),
                               ("zero-cost ops", mc.zero_cost_ops, concrete.zero_cost_ops)):
        if dict(ours) != dict(theirs):
            raise NoSingleFormula(f"the {name} differ at {at} from the trace sizes: no single formula holds")


def _first_difference(cost: Cost, real: Cost, values: dict, seen: dict | None = None):
    seen = {} if seen is None else seen

    def at(e):
        if not isinstance(e, sympy.Basic):
            return e
        if e not in seen:
            seen[e] = e.xreplace(values)
        return seen[e]

    shape = tuple(at(d) for d in cost.output_shape)
    if shape != tuple(real.output_shape):
        return "output shape", shape, tuple(real.output_shape)
    for f in _FIELDS:
        x, y = at(getattr(cost, f)), getattr(real, f)
        if x != y:
            return f, x, y
    for kind in sorted(set(cost.ops) | set(real.ops)):
        x, y = at(cost.op(kind)), real.op(kind)
        if x != y:
            return f"{kind} ops", x, y
    return None
