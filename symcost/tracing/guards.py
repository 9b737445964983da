"""A formula's domain, proven: the size decisions the model's Python makes, read from a run with symbolic sizes.

The recordings see aten ops on concrete sizes; the decisions are made in Python (``x[:, :512]``, ``torch.split(x,
1024)``, ``if x.shape[-1] > 512``, ``if H != 240``) on sizes they never show.  torch solves this for
``torch.compile``: run the model once on fake tensors whose sizes are symbols of a ``ShapeEnv`` (hinted at the first
trace size), and every comparison Python makes on a size is recorded as a **guard** (``s0 < 512``, ``Eq(Mod(s0, 8),
0)``, ``Ne(s0, 240)``).  Within the guards the model takes the path it took at the trace size; the guards, in the
input's symbols, are the formula's domain.

Left out, and why: torch's own ``size != 1`` checks for broadcasting and memory layout (``infer_size``,
contiguity), which choose a layout but not what is computed between equal shapes, and the ``>= 2`` that its
symbols assume.  Where the run cannot be made (an op that needs tensor values, a custom kernel with no symbolic
meta function) or torch fixes a size to its trace value (a resize whose kernel reads the size as a number), the
guards found are kept but do not prove the domain: ``Proof.proven`` is False and ``Proof.reason`` says why; the
recordings' sampled verification then stands alone.
"""
from __future__ import annotations

import os
import re
from contextlib import contextmanager
from dataclasses import dataclass, field

import sympy

@dataclass(frozen=True)
class Guard:
    """One condition on the input sizes: ``condition`` a sympy relation (or And/Or of them) in the input's
    symbols; ``where`` the model's line that made it (file:line in function), when known."""

    condition: sympy.Basic
    where: str = ""

    def text(self) -> str:
        from ..model import shown_condition

        return shown_condition(self.condition) + (f" (at {self.where})" if self.where else "")


@dataclass
class Proof:
    """The guards of one symbolic run.  ``proven``: every size decision was read (the guards are the whole
    domain); else ``reason`` says what was not, and the guards found are still necessary conditions."""

    guards: list[Guard] = field(default_factory=list)
    proven: bool = False
    reason: str = ""

    def violated(self, values: dict) -> Guard | None:
        """The first guard that ``values`` (symbol -> int) breaks, or None."""
        for g in self.guards:
            if not bool(g.condition.xreplace({s: sympy.Integer(int(v)) for s, v in values.items()})):
                return g
        return None


def prove(model, shape, hints: dict, dtype, backward: bool = False) -> Proof:
    """Run ``model`` once on fake tensors of symbolic sizes (``shape``: the input spec in sympy symbols, a tuple or
    a dict of named inputs; ``hints``: symbol -> the size to take the path of) and collect its guards."""
    try:
        with _quiet(), _released():
            env, names = _run(model, shape, hints, dtype, backward)
            return _proof(env, names)
    except Exception as e:  # noqa: BLE001  (any failure leaves the sampled verification in charge)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return Proof(reason=f"the model does not run on symbolic sizes ({type(e).__name__}: {first[:200]})")


def _proof(env, names: dict) -> Proof:
    proof = Proof(proven=True)
    fixed = {names[s] for s, v in env.replacements.items() if s in names and v.is_number}
    if fixed:
        proof.proven = False
        proof.reason = (f"torch fixes {', '.join(sorted(map(str, fixed)))} to the traced size inside an op (a size "
                        "read as a number), so later decisions on it were not seen")
    seen = set()
    for g in env.guards:
        if _layout_check(g) or _frame(g)[1] in _CATALOGUED:
            continue
        try:
            cond = _ours(g.expr, names)
        except _Untranslatable as e:
            proof.proven = False
            proof.reason = proof.reason or f"a guard uses {e} (not translated)"
            continue
        if cond is sympy.true or cond in seen or _pins(cond, fixed):
            continue
        if _fixed_inside_torch(cond, g):  # a size torch fixed after reading it as a number, not the model's test
            proof.proven = False
            proof.reason = proof.reason or (f"torch fixes a size inside an op ({shown(cond)}), so later decisions on "
                                            "it were not seen")
            continue
        if cond is sympy.false:  # cannot happen at the hint; be safe
            proof.proven = False
            continue
        seen.add(cond)
        proof.guards.append(Guard(cond, _where(g)))
    for s, v in env.replacements.items():  # a size tied to another (two dims that must be equal)
        if s in names and not v.is_number and v.free_symbols <= set(names):
            cond = sympy.Eq(names[s], _ours(v, names))
            if cond not in seen:
                seen.add(cond)
                proof.guards.append(Guard(cond))
    return proof


@contextmanager
def _released():
    """``ShapeEnv`` memoises its methods in caches of the class, which keep every run's environment (and its
    expressions) alive until later runs evict them: emptied after each run, so a run leaves nothing behind."""
    from torch.fx.experimental.symbolic_shapes import ShapeEnv

    try:
        yield
    finally:
        for name in dir(ShapeEnv):
            clear = getattr(getattr(ShapeEnv, name, None), "cache_clear", None)
            if callable(clear):
                clear()


@contextmanager
def _quiet():
    """torch logs a failed fake run (and traces every guard at DEBUG); the failure is ours to report, in one line."""
    import logging

    loggers = [logging.getLogger(n) for n in ("torch._subclasses.fake_tensor", "torch.fx.experimental.symbolic_shapes",
                                              "torch.__trace", "torch.fx.experimental.recording")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def shown(cond) -> str:
    from ..model import shown_condition

    return shown_condition(cond)


#: torch's checks that two sizes broadcast: an equality with a number there meets a size torch fixed earlier
_BROADCASTS = {"infer_size", "broadcast_shapes", "_broadcast_shapes", "broadcast_shape"}


def _fixed_inside_torch(cond, g) -> bool:
    """``Eq(floor((H - 1)/8) + 1, 32)`` asked by torch's broadcast check: the other size is one torch fixed (a
    resize's output read as an int), not a decision of the model's."""
    name, func = _frame(g)
    if not isinstance(cond, sympy.Eq) or f"{os.sep}torch{os.sep}" not in name or func not in _BROADCASTS:
        return False  # (a chunk count, Eq(ceiling(L/1024), 1) in split's decomposition, is a decision: kept)
    number = next((side for side in (cond.lhs, cond.rhs) if side.is_number), None)
    return number is not None and number >= 1 and not cond.has(sympy.Mod)  # Mod(W, 8) == 0: a divisibility check


def _pins(cond, fixed: set) -> bool:
    """``Eq(H, 225)``: torch fixing a size to its hint, not a decision of the model."""
    return isinstance(cond, sympy.Eq) and any(side in fixed for side in (cond.lhs, cond.rhs)) and any(
        side.is_number for side in (cond.lhs, cond.rhs))


def _run(model, shape, hints: dict, dtype, backward: bool):
    import torch
    from torch._dynamo.source import ConstantSource
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.fx.experimental.symbolic_shapes import DimDynamic, ShapeEnv

    from .meta_kernels import fake_kernel_memo
    from .record import own_mask_unpadded, padding_warning_off, run_backward as _backward

    env = ShapeEnv(specialize_zero_one=False)
    mode = FakeTensorMode(shape_env=env, allow_non_fake_inputs=True)
    # fake tensor's own dispatch cache costs more to fill and to read back (its entries rebuild symbolic outputs
    # through its dispatch) than the kernels it saves; ``fake_kernel_memo`` keys on size expressions and skips both
    mode.cache_enabled = False
    ints: dict = {}
    names: dict = {}
    for s, v in hints.items():
        sym = env.create_symbol(int(v), ConstantSource(str(s)), dynamic_dim=DimDynamic.DYNAMIC)
        names[sym] = s
        ints[s] = env.create_symintnode(sym, hint=int(v))

    def tensor(dims, dt):
        if any(not (d in ints or isinstance(d, int) or d.is_Integer) for d in dims):
            raise _Untranslatable("an input size that is an expression")
        size = [ints[d] if d in ints else int(d) for d in dims]
        return torch.zeros(size, dtype=getattr(torch, dt), device="meta")

    def dtype_of(name=""):
        return dtype.get(name, "float32") if isinstance(dtype, dict) else dtype

    with mode, fake_kernel_memo(mode), (torch.enable_grad() if backward else torch.no_grad()):
        x = ({n: tensor(s, dtype_of(n)) for n, s in shape.items()} if isinstance(shape, dict)
             else tensor(shape, dtype_of()))
        with padding_warning_off(model), own_mask_unpadded(x):
            out = model(**x) if isinstance(x, dict) else model(x)
            if backward:
                _backward(out)
    return env, names


#: torch functions that ask about sizes only to choose strides or a memory layout
_LAYOUT_QUESTIONS = {"is_non_overlapping_and_dense", "compute_elementwise_output_logical_to_physical_perm",
                     "_reshape_view_helper_core_alg", "compute_strides_like", "contiguous_strides",
                     "convert"}  # fake_impls' convert: a convolution's output memory format


#: torch's size arithmetic that the catalog's own output-size formulas implement, both branches (a pooling window
#: with ``ceil_mode`` that would start past the input is dropped), checked against torch's shapes at every
#: recording, and its checks that an output size is >= 1 (the domain has every tensor size >= 1 already)
_CATALOGUED = {"pooling_output_shape_pad_lr", "pooling_output_shape", "pool2d_shape_check", "pool3d_shape_check",
               "max_pool3d_with_indices_shape_check", "avg_pool3d_shape_check"}


def _frame(g) -> tuple[str, str]:
    """The file and function of torch's innermost frame that asked the question."""
    frame = getattr(getattr(g, "sloc", None), "framework_loc", None)
    return str(getattr(frame, "filename", frame) or ""), str(getattr(frame, "name", ""))


def _layout_check(g) -> bool:
    """torch's own "is this size 1?" question (a broadcast, a memory layout, a matmul folding its batch dims),
    asked inside torch and not to refuse the size: it chooses how, not what, is computed."""
    one = _size_one_question(g.expr)
    name, func = _frame(g)
    if func in _LAYOUT_QUESTIONS or func.startswith(("is_contiguous", "is_channels_last", "are_strides_like")):
        return True
    if not one:
        return False
    if "torch" in name:
        return func.startswith("check_contiguous") or not func.startswith(("_verify", "check", "_check"))
    return not _compares(g)  # an op on the model's line asked (a matmul folding a size-1 dim), not the line itself


def _size_one_question(e) -> bool:
    """``Ne(x, 1)``, ``Ne(Mod(1, x), 0)`` or ``k < k*x``: is a size (or a product of sizes) 1?"""
    if isinstance(e, sympy.Ne):
        return 1 in (e.lhs, e.rhs) or (0 in (e.lhs, e.rhs) and any(
            isinstance(a, sympy.Basic) and type(a).__name__ in ("Mod", "PythonMod") and a.args[0] == 1
            for a in (e.lhs, e.rhs)))
    if isinstance(e, (sympy.Lt, sympy.Gt)):
        small, big = (e.lhs, e.rhs) if isinstance(e, sympy.Lt) else (e.rhs, e.lhs)
        return bool(small.is_number and small > 0 and not big.is_number and
                    sympy.simplify(big / small).as_coeff_Mul()[0] == 1)
    return False


#: what a line of Python needs to ask a question about a size itself; Python's own ``min(``/``max(``/``range(``/
#: ``bool(``/``not`` as words (``softmax(``, ``torch.max(``, ``arange(`` ask nothing), a tensor's split/chunk as methods
_QUESTIONS = re.compile(r"==|!=|<|>|\bif |\bassert\b|\bwhile |\band |\bor |(?<![\w.])not |"
                        r"(?<![\w.])(?:bool|min|max|range)\(|\b(?:split|chunk)\(")


def _compares(g) -> bool:
    import linecache

    frame = getattr(getattr(g, "sloc", None), "framework_loc", None)
    line = linecache.getline(str(getattr(frame, "filename", "")), int(getattr(frame, "lineno", 0) or 0))
    return not line or bool(_QUESTIONS.search(line))


def _where(g) -> str:
    """The model's own line that asked, where the question was asked in Python outside torch."""
    sloc = getattr(g, "sloc", None)
    frame = getattr(sloc, "maybe_user_loc", None) or getattr(sloc, "framework_loc", None)
    name = getattr(frame, "filename", None)
    if not name or f"{os.sep}torch{os.sep}" in name:
        return ""
    return f"{os.path.basename(name)}:{frame.lineno} in {frame.name}"


class _Untranslatable(Exception):
    pass


def _ours(expr, names: dict):
    """A guard of torch's sympy (its FloorDiv, PythonMod, …) in the input's own symbols and plain sympy."""
    from torch.utils._sympy import functions as F

    if expr.is_Symbol:
        if expr not in names:
            raise _Untranslatable(f"a size torch made up ({expr})")
        return names[expr]
    if expr.is_Number or expr in (sympy.true, sympy.false):
        return expr
    args = [_ours(a, names) for a in expr.args]
    plain = {sympy.Add, sympy.Mul, sympy.Pow, sympy.Eq, sympy.Ne, sympy.Lt, sympy.Le, sympy.Gt, sympy.Ge,
             sympy.And, sympy.Or, sympy.Not, sympy.floor, sympy.ceiling, sympy.Mod}
    if expr.func in plain:
        return expr.func(*args)
    if isinstance(expr, (F.Max, sympy.Max)):
        return sympy.Max(*args)
    if isinstance(expr, (F.Min, sympy.Min)):
        return sympy.Min(*args)
    if isinstance(expr, F.FloorDiv):
        return sympy.floor(args[0] / args[1])
    if isinstance(expr, F.CeilDiv):
        return sympy.ceiling(args[0] / args[1])
    if isinstance(expr, F.CleanDiv):
        return args[0] / args[1]
    if isinstance(expr, (F.Mod, F.PythonMod)):
        return sympy.Mod(args[0], args[1])
    if isinstance(expr, F.ModularIndexing):
        return sympy.Mod(sympy.floor(args[0] / args[1]), args[2])
    if isinstance(expr, (F.IntTrueDiv, F.FloatTrueDiv)):
        return args[0] / args[1]
    if isinstance(expr, (F.FloorToInt,)):
        return sympy.floor(args[0])
    if isinstance(expr, (F.CeilToInt,)):
        return sympy.ceiling(args[0])
    if isinstance(expr, (F.ToFloat, F.Identity, F.TruncToFloat)):
        return args[0] if not isinstance(expr, F.TruncToFloat) else sympy.floor(args[0])
    if isinstance(expr, F.PowByNatural):
        return args[0] ** args[1]
    raise _Untranslatable(type(expr).__name__)


def implied(condition, domain: tuple) -> bool:
    """A guard that only restates a tensor size's ``>= 1`` (a convolution's input at least its kernel)."""
    if isinstance(condition, sympy.And):
        return all(implied(c, domain) for c in condition.args)
    one = {sympy.Ge: lambda a, b: a - b + 1, sympy.Gt: lambda a, b: a - b, sympy.Le: lambda a, b: b - a + 1,
           sympy.Lt: lambda a, b: b - a}.get(type(condition))
    if one is None:
        return False
    at_least = one(condition.lhs, condition.rhs)   # the guard says at_least >= 1
    return any((diff := sympy.expand(at_least - d)).is_number and diff >= 0 for d in domain)
