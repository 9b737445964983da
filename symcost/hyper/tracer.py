"""Traces at one configuration of a model's config fields, reduced to the expanded totals a fit takes: ``Tracer``
(the input's symbols kept), ``Concrete`` (tracers at concrete input sizes, where the terms are found cheaply)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import sympy

from ..conventions import CONVENTIONS
from ..errors import SymcostError, TraceError
from ..model import at_least_one, shown_condition
from .space import ConfigSpace

FIELD_METRICS = ("params", "buffers", "macs", "reads", "writes")
BACKWARD = "backward:"       # prefix of the fitted keys of a training step's backward part


class Concrete:
    """Tracers at concrete input sizes: the first of symcost's trace sizes, where the terms are found, and the
    further sizes that give each term's coefficient as an expression in the input's symbols (``_reconstructed``)."""

    reconstructs = True

    def __init__(self, space: ConfigSpace, shape: tuple, past, pair: tuple[dict, dict], make: Callable):
        from ..tracing.verify import check_points, mixed_points

        self.shape, self.past, self.make = shape, past, make
        first, second = pair
        #: input sizes to fit coefficients at: those a symbolic trace records and verifies at, first the first
        self.points = [first, second, *check_points(first, second), *mixed_points(first, second)]
        self.tracers: dict[tuple, Tracer] = {}
        self.first = self.at(first)
        self.inputs = set(first)
        self.basis: list | None = None   # the functions of the input's symbols the coefficients are fitted in

    def at(self, point: dict) -> Tracer:
        key = tuple(sorted((str(s), int(v)) for s, v in point.items()))
        if key not in self.tracers:
            def put(d):
                return d.xreplace(point) if isinstance(d, sympy.Basic) else d

            self.tracers[key] = self.make(tuple(put(d) for d in self.shape), None if self.past is None
                                          else put(self.past))
        return self.tracers[key]

    @property
    def memos(self) -> list[dict]:
        return [t.memo for t in self.tracers.values()]

    def basis_failed(self, error: TraceError, tracer: Tracer) -> bool:
        """Whether the coefficients fitted from concrete sizes may be what failed: they could not be fitted, or a
        symbolic trace (a verification's) has a function of the input's symbols outside their basis."""
        if isinstance(error, InputBasisError) or self.basis is None:
            return True
        return any(not input_parts(e, self.inputs) <= set(self.basis) for t in tracer.memo.values()
                   for e in t.values())


class Tracer:
    """Traces at a configuration (memoised) and reduces each trace to its expanded totals."""

    def __init__(self, space: ConfigSpace, shape: tuple, train: bool, dtype: str, progress, backward: bool = False,
                 past=None, conventions: dict | None = None):
        self.space, self.shape, self.train, self.dtype, self.progress = space, shape, train, dtype, progress
        self.backward, self.past = backward, past
        self.conventions = conventions or CONVENTIONS   # name -> Convention: the FLOPs fitted ("flops:NAME")
        self.memo: dict[tuple, dict] = {}
        self.domain: set = set()
        self.uncovered: dict[str, int] = {}
        self.zero: dict[str, int] = {}
        self.notes: set[str] = set()     # notes on inputs and implementations symcost chose (the same at every config)
        self.attn: str | None = None     # "eager" once the default attention needed it (``Target.with_eager_retry``)

    def __call__(self, values: dict[str, int]) -> dict[str, sympy.Expr]:
        key = tuple(sorted(values.items()))
        if key not in self.memo:
            self.memo[key] = self._trace(values)
        return self.memo[key]

    def _trace(self, values: dict[str, int]) -> dict[str, sympy.Expr]:
        every = {**self.space.fixed, **values}
        where = ", ".join(f"{f}={v}" for f, v in values.items())
        if self.progress:
            self.progress(f"tracing {self.space.target} at {where}")
        try:
            mc = self._traced(every)
        except SymcostError as e:
            raise TraceError(f"{self.space.target} at {where}: {e}") from None
        except Exception as e:  # noqa: BLE001  (the model's own complaint about this configuration, whole)
            from ..targets import one_line

            raise TraceError(f"{self.space.target} cannot be built at {where}: {type(e).__name__}: {one_line(e)}"
                             + self.space.refusal_hint) from None
        self.domain.update(mc.domain)
        for guard in mc.guards:  # a size guard of the path traced, as one more size that must be >= 1
            size = at_least_one(guard)
            if size is None:
                self.notes.add(f"a size guard of the model ({shown_condition(guard)}) has no form the config "
                               "formula's domain can hold: the domain in the input's sizes is sampled there")
            else:
                self.domain.add(size)
        if not mc.proven and mc.symbols:
            self.notes.add("the input sizes' domain is sampled, not proven, at some configuration (see `symcost "
                           "model` at one configuration for the reason)")
        for k, v in mc.uncovered.items():
            self.uncovered[k] = max(self.uncovered.get(k, 0), v)
        for k, v in mc.zero_cost_ops.items():
            self.zero[k] = max(self.zero.get(k, 0), v)
        out = expanded(mc, self.conventions)
        if self.past is not None:  # per-row sizes such as (32*T + 32)/(T + 1) cancel to polynomials
            from ..decode import tidy

            out = {k: tidy(v) for k, v in out.items()}
        if self.backward:
            from ..training import split

            out.update({BACKWARD + m: e for m, e in expanded(split(mc).get("backward", replace(mc, rows=[])), self.conventions).items()})
        return out


    def _traced(self, every: dict):
        """The ``ModelCost`` at one configuration: built, prepared as ``symcost model`` prepares its target
        (``Target.prepare``, ``Target.with_eager_retry``), traced (or one decode step)."""
        from ..targets import Target
        from ..tracing import trace

        target = Target.of(self.space.target)

        def attempt(attn):
            model = self.space.build(every)
            if attn and hasattr(model, "set_attn_implementation"):
                model.set_attn_implementation(attn)
            # notes without the model's own numbers: they must read the same at every configuration
            shape, dtype, notes = target.prepare(model, self.shape, self.dtype, counts=False)
            self.notes.update(notes)
            if self.past is None:
                # one formula per configuration, its guards its domain: a fit across configurations takes no pieces
                return trace(model, shape, target=self.space.target, train=self.train, input_dtype=dtype,
                             backward=self.backward, pieces=False)
            from ..decode import decode_step  # one decode step with `past` cached tokens (symcost.decode)

            mc = decode_step(model.eval(), self.shape[0], self.shape[1], self.past, target=self.space.target)
            self.notes.add(f"one decode step: {self.shape[0]} x {self.shape[1]} new token ids with {self.past} "
                           "cached tokens per sequence (the KV cache is filled in place, not counted)")
            # a sliding window's limit on the cached tokens (other notes count calls: they vary with the config)
            self.notes.update(n for n in mc.notes if n.startswith("sliding-window"))
            return mc

        if self.attn is not None:
            return attempt(self.attn)
        mc, eager = target.with_eager_retry(attempt)
        if eager is not None:
            self.attn = "eager"
            self.notes.add(target.eager_note())
        return mc


_READS, _WRITES, _SKIP, _HALF = (0, "reads"), (0, "writes"), (0, "causal skip"), (0, "causal half")  # beside ops


def expanded(mc, conventions: dict | None = None) -> dict[str, sympy.Expr]:
    """A derivation's totals as fitted keys: the metrics, then FLOPs under each convention ("flops:NAME";
    ``conventions``: name -> ``Convention``, symcost's own by default), equal to ``mc.total(convention)``.  A convention weighs a row's operations by its layer, family and whether it is a
    functional call: the rows' operations are summed per such group once, and each convention weighs the sums
    (a model's rows are thousands, its groups a few dozen)."""
    from ..model import sum_exact

    # the convention-free totals without weighing every row's FLOPs (``ModelCost.total`` would, unused here)
    total = mc.total(next(iter(CONVENTIONS.values()))) if mc.pieces else mc.counts()
    out = {m: sympy.expand(total[m]) for m in FIELD_METRICS}
    groups: dict[tuple, dict[str, list]] = {}
    for r in mc.rows:
        g = groups.setdefault((r.cost.family, r.cost.layer, r.functional), {})
        for kind, v in (*r.cost.ops.items(), (_READS, r.cost.reads), (_WRITES, r.cost.writes),
                        (_SKIP, r.causal_skip), (_HALF, r.causal_half)):
            g.setdefault(kind, []).append(v)
    sums = {key: {kind: sum_exact([sympy.sympify(v) for v in vs]) for kind, vs in g.items()} for key, g in groups.items()}
    for name, conv in (conventions or CONVENTIONS).items():
        if (conv.family_weights or conv.functional_weights) and any(f == "mixed" or not layer for f, layer, _ in sums):
            out[f"flops:{name}"] = sympy.expand(mc.total(conv)["flops"])  # row by row (it refuses such a row)
            continue
        terms = []
        for (family, layer, functional), s in sums.items():
            if functional and not conv.sees_functional:
                continue
            w = conv.weights_for(family, layer, functional)
            terms += [w[k] * v for k, v in s.items() if isinstance(k, str)]
            terms += [w.get("reads", 0) * s[_READS], w.get("writes", 0) * s[_WRITES]]
            if conv.causal_attention:
                terms.append(-w["mac"] * s[_SKIP])
            if conv.causal_halved:
                terms.append(-w["mac"] * s[_HALF])
        out[f"flops:{name}"] = sympy.expand(sum_exact(terms))
    return out


class InputBasisError(TraceError):
    """The coefficients could not be fitted from concrete input sizes (``_reconstructed``)."""


def input_parts(e: sympy.Expr, inputs: set) -> set:
    """The functions of the input's symbols a total at one configuration is a rational combination of
    (``{L**2, L, 1}`` for ``24*L**2 + 744*L + 3``)."""
    return {term.as_independent(*inputs, as_Add=False)[1] for term in sympy.Add.make_args(sympy.expand(e))
            if term != 0}
