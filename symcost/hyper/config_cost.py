"""``ConfigCost``: totals as formulas in a model's config fields and its input's symbols, the configurations they
were fitted and verified at, and ``confirm`` for a point past them."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import sympy

from ..conventions import Convention, convention_name
from ..errors import TraceError, unknown_convention
from ..model import Sweepable
from .space import MIN_VALUE, Bound, Relation, config_space, parse_config
from .tracer import BACKWARD, Tracer


@dataclass
class ConfigCost(Sweepable):
    """Totals as formulas in the configuration symbols and the input symbols together."""

    target: str
    input_shape: tuple
    config: dict                       # field -> symbol name, or a fixed integer
    fixed: dict                        # every fixed field a condition mentions, with its value
    conditions: list[Relation]
    totals: dict                       # convention -> metric -> expression
    domain: tuple = ()                 # symbolic tensor sizes (in the input symbols): the formulas hold where >= 1
    uncovered: dict = field(default_factory=dict)
    zero_cost_ops: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    fit: dict = field(default_factory=dict)   # windows per field, traces made, configurations verified
    backward_totals: dict | None = None       # a training step's backward part: convention -> metric -> expression
    bounds: list[Bound] = field(default_factory=list)   # top-k <= experts
    past: object = None                       # a decode step's cached tokens (an int or a symbol), else None
    train: bool = False                       # traced in training mode (``--train``)
    input_dtype: str = ""                     # the input's dtype the traces used ("" for the target's default)

    @property
    def backward(self) -> bool:
        """True for a training step (forward and backward), traced with ``backward=True``."""
        return self.backward_totals is not None

    @property
    def config_symbols(self) -> dict[str, sympy.Symbol]:
        from ..symbols import user_symbol

        return {f: user_symbol(v) for f, v in self.config.items() if isinstance(v, str)}

    @property
    def symbols(self) -> list[sympy.Symbol]:
        inputs = {s for d in (*self.input_shape, self.past) if isinstance(d, sympy.Basic) for s in d.free_symbols}
        return sorted(inputs | set(self.config_symbols.values()), key=str)

    def total(self, convention: str | Convention = "flops") -> dict[str, sympy.Expr]:
        name = convention_name(convention)
        if name not in self.totals:
            raise unknown_convention(name, self.totals)
        return dict(self.totals[name])

    def parts(self, convention: str | Convention = "flops") -> dict[str, dict[str, sympy.Expr]]:
        """``{"total": …}``, and for a training step also ``"forward"`` and ``"backward"`` (as
        ``symcost.training.split``: parameters are counted in the forward part)."""
        total = self.total(convention)
        if self.backward_totals is None:
            return {"total": total}
        name = convention_name(convention)
        back = dict(self.backward_totals[name])
        return {"total": total, "forward": {m: sympy.expand(total[m] - back[m]) for m in total}, "backward": back}

    def per_token(self, convention: str | Convention = "flops") -> dict[str, dict[str, sympy.Expr]]:
        """``parts`` with MACs, FLOPs, reads and writes divided by the tokens of the B x L input (B*L), exactly."""
        from ..training import PER_TOKEN_METRICS, tokens

        n_tokens = tokens(self.input_shape)  # expanded, not cancelled: a sum of terms such as 6*d**2*k*n/h
        return {name: {m: sympy.expand(e / n_tokens) if m in PER_TOKEN_METRICS else e for m, e in t.items()}
                for name, t in self.parts(convention).items()}

    def condition_texts(self) -> list[str]:
        return [r.text(self.config_symbols, self.fixed) for r in [*self.conditions, *self.bounds]]

    def check_domain(self, values: Mapping) -> None:
        """``ValueError`` naming the condition a configuration breaks, or the tensor size that would reach 0."""
        get = {str(k): v for k, v in values.items()}
        config_names = {str(s): f for f, s in self.config_symbols.items()}
        for s in self.symbols:
            v = get.get(str(s))
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{s} must be a positive integer, got {v!r}")
            if str(s) in config_names and v < MIN_VALUE:
                raise ValueError(f"{s}={v}: the formula is fitted and verified for {s} >= {MIN_VALUE} (a size of 1 can "
                                 f"change torch's graph); fix {config_names[str(s)]}={v} in the config to derive it")
        by_field = {**self.fixed, **{f: get[str(s)] for f, s in self.config_symbols.items()}}
        given = ", ".join(f"{k}={v}" for k, v in get.items())
        for b, text in zip(self.bounds, self.condition_texts()[len(self.conditions):]):
            if not b.holds(by_field):
                raise ValueError(f"{given}: the formula holds only where {text}")
        for r, text in zip(self.conditions, self.condition_texts()):
            if not r.holds(by_field):
                raise ValueError(f"{given}: the formula holds only where {text}")
            if r.quotient(by_field) < MIN_VALUE:
                if not r.den:
                    raise ValueError(f"{given}: the formula holds only where {text}")
                num, den = (self.config.get(x, x) for x in (r.num, r.den))
                raise ValueError(f"{given}: {r.quantity} is {r.factor * r.quotient(by_field)}; the formula is fitted "
                                 f"and verified where {num}/({r.factor}*{den}) >= {MIN_VALUE} (the model can take "
                                 "another path below); derive that case on its own"
                                 + (f" (e.g. --config …,{r.den}={num}, the same symbol)" if r.factor == 1 else ""))
        super().check_domain(values)
        beyond = self.beyond(get) if self.totals else []   # (memory's conditions carry no totals: it checks its own)
        if beyond and not any(p == {str(s): get[str(s)] for s in self.symbols} for p in self.fit.get("confirmed", [])):
            confirm(self, get, beyond)

    def sampled(self) -> dict[str, int]:
        """The largest value of each symbolic field (by its symbol's name) and of each quotient a condition names
        (``head_dim``) among the configurations traced: the formula is fitted and verified up to them."""
        traced = self.fit.get("traced_at") or []
        out: dict[str, int] = {}
        for f, s in self.config_symbols.items():
            seen = [p[f] for p in traced if f in p]
            if seen:
                out[str(s)] = max(out.get(str(s), 0), *seen)
        for r in self.conditions:
            if r.den and r.names_quotient and {r.num, r.den} & set(self.config_symbols):
                seen = [r.factor * r.quotient({**self.fixed, **p}) for p in traced
                        if {r.num, r.den} <= {*p, *self.fixed}]
                if seen:
                    out[r.quantity] = max(out.get(r.quantity, 0), *seen)
        return out

    def beyond(self, values: Mapping) -> list[str]:
        """What puts ``values`` past the configurations traced (``"d = 2048 > 96"``): a guard in the model's Python
        that no sampled configuration reached (transformers' SDPA path for head_dim <= 256) can change the cost
        there, so such a number is checked by a trace at its own configuration (``confirm``) before it is given."""
        get = {str(k): v for k, v in values.items()}
        by_field = {**self.fixed, **{f: get[str(s)] for f, s in self.config_symbols.items() if str(s) in get}}
        out = []
        for name, top in self.sampled().items():
            if name in get:
                value = get[name]
            else:
                r = next(r for r in self.conditions if r.quantity == name)
                if not {r.num, r.den} <= set(by_field):
                    continue
                value = r.factor * r.quotient(by_field)   # head_dim itself, not its half
            if value > top:
                out.append(f"{name} = {value} > {top}")
        return out

    def valid(self, *arrays):
        """Where a plot or sweep may show the formula: every condition holds, and the configuration is inside the
        ones traced or was confirmed by a trace (``confirm``; ``evaluate`` confirms one)."""
        import numpy as np

        out = self.lambdified(metrics=())(*arrays)
        ok = out["valid"] & out["sampled"]
        confirmed = self.fit.get("confirmed") or []
        if confirmed and not ok.all():
            names = [str(s) for s in self.symbols]
            flat = np.broadcast_arrays(*[np.asarray(a) for a in arrays])
            for i in zip(*np.nonzero(out["valid"] & ~ok)):
                ok[i] = {n: int(a[i]) for n, a in zip(names, flat)} in confirmed
        return ok

    def lambdified(self, convention: str | Convention = "flops", metrics=("params", "macs", "flops")):
        """As ``ModelCost.lambdified`` (exact; int64 arrays, object arrays where a value needs more than 64 bits);
        ``valid`` also requires every divisibility condition; ``sampled`` is True inside the configurations the
        formula was fitted and verified at (``sampled``): a point beyond them is exact only where a guard of the
        model's Python was not crossed, which ``evaluate`` checks by a trace at that point.  Evaluated in int64 NumPy wherever that cannot
        overflow (``hyper.sweep``): a million configurations of Llama's formula in well under a second."""
        import numpy as np

        from .sweep import exact_values

        total = self.total(convention)
        exprs = {m: total[m] for m in metrics}
        names = [str(s) for s in self.symbols]
        position = {n: i for i, n in enumerate(names)}
        sym = {f: str(s) for f, s in self.config_symbols.items()}
        tops = self.sampled()

        def value(arrays, f):
            return np.asarray(arrays[position[sym[f]]]) if f in sym else self.fixed[f]

        def run(*arrays):
            shape = np.broadcast(*arrays).shape if arrays else ()
            size = int(np.prod(shape))
            env = {n: np.broadcast_to(np.asarray(a, dtype=np.int64), shape).reshape(-1) for n, a in zip(names, arrays)}
            out, valid = {}, np.ones(size, dtype=bool)
            for m, e in exprs.items():
                out[m], integral = exact_values(e, env, size)
                valid &= integral
            for size_expr in self.domain:
                sizes, integral = exact_values(size_expr, env, size)
                valid &= integral & (sizes >= 1)
            out = {m: v.reshape(shape) for m, v in out.items()}
            out["valid"] = valid.reshape(shape)
            return out

        def checked(*arrays):
            out = run(*arrays)
            for r in self.conditions:
                num, den = value(arrays, r.num), r.factor * (value(arrays, r.den) if r.den else 1)
                out["valid"] = out["valid"] & (np.mod(num, den) == 0) & (num // den >= MIN_VALUE)
            for b in self.bounds:
                out["valid"] = out["valid"] & (value(arrays, b.small) <= value(arrays, b.large))
            for f in sym:
                out["valid"] = out["valid"] & (value(arrays, f) >= MIN_VALUE)
            inside = np.ones(np.shape(out["valid"]), dtype=bool)
            for name, top in tops.items():
                if name in position:
                    inside = inside & (np.asarray(arrays[position[name]]) <= top)
                else:
                    r = next(r for r in self.conditions if r.quantity == name)
                    inside = inside & (value(arrays, r.num) // np.maximum(value(arrays, r.den), 1) <= top)
            out["sampled"] = inside
            return out

        return checked


def confirm(cc: ConfigCost, values: Mapping, beyond: list[str], progress: Callable[[str], None] | None = None) -> None:
    """Trace ``cc``'s model at ``values`` (a configuration past the sampled ones, ``cc.beyond``; every symbol has a
    value) and compare every total under every convention with the formulas: ``ValueError`` naming the first that
    differs (the model took another path there), else the point is recorded as confirmed (and the cache entry the
    derivation came from is updated, so a cached call does not trace it again)."""
    get = {str(k): v for k, v in values.items()}
    target = getattr(cc, "factory", None) or cc.target
    space = config_space(target, parse_config(cc.config))

    def put(d):
        return d.xreplace({s: sympy.Integer(get[str(s)]) for s in d.free_symbols}) if isinstance(d, sympy.Basic) else d

    from ..targets import default_input_dtype

    dtype = cc.input_dtype or ("float32" if callable(target) else default_input_dtype(target))
    tracer = Tracer(space, tuple(int(put(d)) for d in cc.input_shape), cc.train, dtype, progress, cc.backward,
                     None if cc.past is None else int(put(cc.past)), getattr(cc, "conventions", None))
    point = {f: get[str(s)] for f, s in space.symbols.items()}
    given = ", ".join(f"{k}={v}" for k, v in get.items())
    try:
        traced = tracer(point)
    except TraceError as e:
        raise ValueError(f"{given}: beyond the configurations the formula was fitted and verified at "
                         f"({', '.join(beyond)}), a check by a trace there failed: {e}") from None
    subs = {s: sympy.Integer(get[str(s)]) for s in cc.symbols}
    parts = [("", cc.totals)] + ([(BACKWARD, cc.backward_totals)] if cc.backward_totals else [])
    for prefix, totals in parts:
        for name, t in totals.items():
            for m, e in t.items():
                key = prefix + (f"flops:{name}" if m == "flops" else m)
                if key not in traced:   # nothing to compare with: not confirmed
                    raise ValueError(f"{given}: beyond the configurations the formula was fitted and verified at "
                                     f"({', '.join(beyond)}), a trace there gives no {key} to check the formula with")
                mine, theirs = sympy.expand(sympy.sympify(e).xreplace(subs)), sympy.expand(traced[key])
                if mine != theirs:
                    what = f"{'backward ' if prefix else ''}{m}" + (f" under {name}" if m == "flops" else "")
                    raise ValueError(
                        f"{given}: beyond the configurations the formula was fitted and verified at "
                        f"({', '.join(beyond)}) the model takes another path: a trace at this configuration gives "
                        f"{_number(theirs)} {what}, the formula {_number(mine)} (a guard in the model's code the "
                        "sampled configurations did not cross); derive this configuration with the fields fixed")
    cc.fit.setdefault("confirmed", []).append({str(s): get[str(s)] for s in cc.symbols})
    count = len(cc.fit["confirmed"])
    cc.notes = [n for n in cc.notes if not n.startswith(_CONFIRMED)] + [
        f"{_CONFIRMED}: {count} configuration{'s' if count > 1 else ''}, each traced before its numbers were given, "
        "agreed with the formula"]
    store = getattr(cc, "store", None)
    if store:
        store()


_CONFIRMED = "checked past the configurations traced"


def _number(v) -> str:
    return f"{int(v):,}" if isinstance(v, sympy.Integer) or isinstance(v, int) else str(v)
