"""Cost as formulas in a model's own hyperparameters (width, depth, heads, vocabulary …) and its input's symbols.

``derive_config(target, input_shape, config)`` traces the model (``symcost.trace``: exact formulas in the input's
symbols) at several configurations and fits every total as a polynomial in the configuration symbols:

1. **Probe** each symbolic field alone (the others at a base value): six values, and the narrowest window of
   exponents (``lo <= e < lo + width``; ``lo = -1`` only for a divisor such as the number of heads) whose exact
   interpolant through the first points passes through the rest.  A field no window up to degree 4 explains is
   refused, by name.
2. **Fit** on the tensor grid of the windows: one trace per grid point, one exact rational Vandermonde inverse per
   axis.  Coefficients are expressions in the input symbols, so ``L**2`` terms and floors in ``R`` pass through.
   With a symbolic input this is done sparsely first: the terms (monomials in the config symbols) are found at a
   concrete input size, one field at a time (``_support``), and their coefficients as expressions in the input
   symbols come from concrete traces at a few more input sizes, in the functions of the input's symbols that one
   symbolic trace shows (``_reconstructed``); where any of that fails its own checks, one symbolic trace per term,
   then the whole grid of symbolic traces.
3. **Verify** at ``checks`` random configurations off the grid (other residues): every total under every
   convention must equal a fresh trace exactly, else the derivation is refused naming the fields.

Sample configurations satisfy the divisibility relations (``head_dim = hidden_size / num_attention_heads``), which
become the formula's conditions: values that break one are refused with that condition.

``backward=True`` traces one training step (``trace(..., backward=True)``) and fits the step's totals and its
backward part side by side; the forward part is their difference, exactly.
"""
from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from fractions import Fraction

import sympy

from ..conventions import CONVENTIONS, Convention, convention_name
from ..errors import SymcostError, TraceError, UsageError, unknown_convention
from ..model import Sweepable, at_least_one, shown_condition
from .fit import tensor_fit, univariate_window, vandermonde_inverse
from .space import MIN_VALUE, Bound, ConfigSpace, Relation, config_space, parse_config

__all__ = ["ConfigCost", "derive_config", "fit_totals", "parse_config", "probe_values"]

PROBES = 6                   # values per field when probing its degree (degree <= 4, one point to spare)
FIELD_METRICS = ("params", "buffers", "macs", "reads", "writes")
BACKWARD = "backward:"       # prefix of the fitted keys of a training step's backward part


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
    tracer = _Tracer(space, tuple(int(put(d)) for d in cc.input_shape), cc.train, dtype, progress, cc.backward,
                     None if cc.past is None else int(put(cc.past)))
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


def derive_config(target: str | Callable, input_shape, config: str | dict, *, train: bool = False,
                  input_dtype: str | None = None, checks: int = 3, seed: int = 0,
                  progress: Callable[[str], None] | None = None,
                  use_cache: bool = False, backward: bool = False, past=None) -> ConfigCost:
    """Derive ``target``'s totals in its configuration symbols and the input's symbols (see the module docstring).

    ``target``: ``"hf:MODEL_TYPE"``, ``"path/to/file.py:factory"`` or a factory (a callable taking the config
    fields as integer keyword arguments, returning an ``nn.Module``; never cached).
    ``input_shape``: ``"1xL"`` or a tuple; ``config``: ``"hidden_size=d,num_hidden_layers=n"`` or a dict (an
    integer value fixes a field; fields not named keep their defaults).  ``use_cache``: read and write symcost's
    derivation cache (keyed like ``symcost model``'s, plus the config, the checks and the seed).  ``backward``: one
    training step, forward and backward (``ConfigCost.parts``).  ``past``: one decode step of a decoder that takes a
    transformers KV cache (``hf:`` or a factory returning one, with or without its LM head)
    on ``input_shape`` (B x L new tokens) with ``past`` cached tokens (an int or a symbol name, as ``--past``).
    """
    from .. import cache
    from ..parse import InputSpec, size_value
    from ..targets import Target, default_input_dtype, source_hash

    parse_config(config)  # the fields and symbols are checked before the cache is read
    shape = InputSpec.of(input_shape).shape
    if isinstance(shape, dict):
        raise UsageError(f"config formulas take one input shape, not named inputs ({input_shape})")
    if callable(target):  # a Python factory: no file to key a cache entry by
        use_cache = False
    dtype = input_dtype or ("float32" if callable(target) else default_input_dtype(target))
    if past is not None:
        if backward:
            raise UsageError("--past is one decode step of inference: it does not combine with --backward")
        if len(shape) != 2:
            raise UsageError(f"--past: the input is B x L token ids, got {len(shape)} sizes")
        past = size_value(past, "--past")
    spec = f"{'x'.join(map(str, shape))}:{dtype}:config={sorted(parse_config(config).items())}:{checks}:{seed}" \
        + (":backward" if backward else "") + (f":past={past}" if past is not None else "")
    # keyed without building anything (a factory file's hash, transformers' version), so that a cached call imports
    # neither torch nor transformers
    key = cache.cache_key(target, spec, train, source_hash(target)) if use_cache else ""
    if use_cache:
        cc = cache.load(key, "config_cost")
        if isinstance(cc, ConfigCost):
            cc.store = lambda: cache.store(key, {"config_cost": cc}, cache.user_sources()
                                           if Target.of(target).kind == "file" else None)
            return cc
    from ..layers.base import cost_memo

    space = config_space(target, parse_config(config))
    with cost_memo():  # one memo for every trace: configurations share most of their layers' shapes
        cc = _derive_space(space, shape, config, train, dtype, checks, seed, progress, backward, past)
    if callable(target):
        cc.factory = target  # (not a field: never stored) what ``confirm`` builds past the sampled configurations
    if use_cache:
        def store():
            cache.store(key, {"config_cost": cc}, cache.user_sources() if space.source else None)

        cc.store = store
        store()
    return cc


def _derive_space(space: ConfigSpace, shape: tuple, config, train: bool, dtype: str, checks: int, seed: int,
                  progress, backward: bool = False, past=None) -> ConfigCost:
    inputs = {str(d) for d in (*shape, past) if d is not None and not isinstance(d, int)}
    clash = inputs & {str(s) for s in space.symbols.values()}
    if clash:
        raise UsageError(f"--config symbol {', '.join(sorted(clash))} is also an input symbol; choose another name")
    if not space.symbols:
        raise UsageError("--config names no field as a symbol (e.g. hidden_size=d)")
    tracer = _Tracer(space, shape, train, dtype, progress, backward, past)
    concrete = None
    if inputs:  # which terms exist is found at a concrete input size (odd, of symcost's trace sizes): one
        # recording per trace instead of several; a term whose coefficient vanishes there fails the verification
        from ..tracing import trace_sizes

        symbolic = tuple(d for d in (*shape, past) if isinstance(d, sympy.Basic))
        concrete = _Concrete(space, shape, past, trace_sizes(symbolic)[0],
                             lambda s, p: _Tracer(space, s, train, dtype, progress, backward, p))
    return _derive(space, tracer, shape, checks, seed, {f: v for f, v in parse_config(config).items()}, concrete)


class _Concrete:
    """Tracers at concrete input sizes: the first of symcost's trace sizes, where the terms are found, and the
    further sizes that give each term's coefficient as an expression in the input's symbols (``_reconstructed``)."""

    reconstructs = True

    def __init__(self, space: ConfigSpace, shape: tuple, past, pair: tuple[dict, dict], make: Callable):
        from ..tracing.verify import check_points, mixed_points

        self.shape, self.past, self.make = shape, past, make
        first, second = pair
        #: input sizes to fit coefficients at: those a symbolic trace records and verifies at, first the first
        self.points = [first, second, *check_points(first, second), *mixed_points(first, second)]
        self.tracers: dict[tuple, _Tracer] = {}
        self.first = self.at(first)
        self.inputs = set(first)
        self.basis: list | None = None   # the functions of the input's symbols the coefficients are fitted in

    def at(self, point: dict) -> _Tracer:
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

    def basis_failed(self, error: TraceError, tracer: _Tracer) -> bool:
        """Whether the coefficients fitted from concrete sizes may be what failed: they could not be fitted, or a
        symbolic trace (a verification's) has a function of the input's symbols outside their basis."""
        if isinstance(error, _InputBasisError) or self.basis is None:
            return True
        return any(not _input_parts(e, self.inputs) <= set(self.basis) for t in tracer.memo.values()
                   for e in t.values())


class _Tracer:
    """Traces at a configuration (memoised) and reduces each trace to its expanded totals."""

    def __init__(self, space: ConfigSpace, shape: tuple, train: bool, dtype: str, progress, backward: bool = False,
                 past=None):
        self.space, self.shape, self.train, self.dtype, self.progress = space, shape, train, dtype, progress
        self.backward, self.past = backward, past
        self.memo: dict[tuple, dict] = {}
        self.domain: set = set()
        self.uncovered: dict[str, int] = {}
        self.zero: dict[str, int] = {}
        self.notes: set[str] = set()     # notes on inputs and implementations symcost chose (the same at every config)

    def __call__(self, values: dict[str, int]) -> dict[str, sympy.Expr]:
        key = tuple(sorted(values.items()))
        if key not in self.memo:
            self.memo[key] = self._trace(values)
        return self.memo[key]

    def _trace(self, values: dict[str, int]) -> dict[str, sympy.Expr]:
        from ..tracing import trace

        every = {**self.space.fixed, **values}
        where = ", ".join(f"{f}={v}" for f, v in values.items())
        if self.progress:
            self.progress(f"tracing {self.space.target} at {where}")
        try:
            model = self.space.build(every)
            shape, dtype = self.shape, self.dtype
            from ..targets import Target

            if Target.of(self.space.target).is_hf:  # as `symcost model`: experts that trace, the inputs it needs
                from ..moe import IMPLEMENTATION, select_experts_implementation
                from ..targets import hf_inputs

                if select_experts_implementation(model):
                    self.notes.add(f"mixture of experts: experts run with experts_implementation={IMPLEMENTATION!r} "
                                   "(selected by symcost): tokens x top-k (token, expert) pairs, each through one "
                                   "expert's weights, so MACs and FLOPs hold for every routing")
                shape, dtype, chosen = hf_inputs(model, shape, dtype)
                self.notes.update(chosen)
            if self.past is not None:  # one decode step with `past` cached tokens (symcost.decode)
                from ..decode import decode_step

                mc = decode_step(model.eval(), self.shape[0], self.shape[1], self.past, target=self.space.target)
                self.notes.add(f"one decode step: {self.shape[0]} x {self.shape[1]} new token ids with {self.past} "
                               "cached tokens per sequence (the KV cache is filled in place, not counted)")
                # a sliding window's limit on the cached tokens (other notes count calls: they vary with the config)
                self.notes.update(n for n in mc.notes if n.startswith("sliding-window"))
            else:
                # one formula per configuration, its guards its domain: a fit across configurations takes no pieces
                mc = trace(model, shape, target=self.space.target, train=self.train, input_dtype=dtype,
                           backward=self.backward, pieces=False)
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
        out = _expanded(mc)
        if self.past is not None:  # per-row sizes such as (32*T + 32)/(T + 1) cancel to polynomials
            from ..decode import tidy

            out = {k: tidy(v) for k, v in out.items()}
        if self.backward:
            from ..training import split

            out.update({BACKWARD + m: e for m, e in _expanded(split(mc).get("backward", replace(mc, rows=[]))).items()})
        return out


_READS, _WRITES, _SKIP, _HALF = (0, "reads"), (0, "writes"), (0, "causal skip"), (0, "causal half")  # beside ops


def _expanded(mc) -> dict[str, sympy.Expr]:
    """A derivation's totals as fitted keys: the metrics, then FLOPs under each convention ("flops:NAME"), equal to
    ``mc.total(convention)``.  A convention weighs a row's operations by its layer, family and whether it is a
    functional call: the rows' operations are summed per such group once, and each convention weighs the sums
    (a model's rows are thousands, its groups a few dozen)."""
    from ..model import sum_exact

    total = mc.total(next(iter(CONVENTIONS.values())))
    out = {m: sympy.expand(total[m]) for m in FIELD_METRICS}
    groups: dict[tuple, dict[str, list]] = {}
    for r in mc.rows:
        g = groups.setdefault((r.cost.family, r.cost.layer, r.functional), {})
        for kind, v in (*r.cost.ops.items(), (_READS, r.cost.reads), (_WRITES, r.cost.writes),
                        (_SKIP, r.causal_skip), (_HALF, r.causal_half)):
            g.setdefault(kind, []).append(v)
    sums = {key: {kind: sum_exact([sympy.sympify(v) for v in vs]) for kind, vs in g.items()} for key, g in groups.items()}
    for name, conv in CONVENTIONS.items():
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


def _derive(space: ConfigSpace, tracer: _Tracer, shape: tuple, checks: int, seed: int, config: dict,
            concrete: _Concrete | None = None) -> ConfigCost:
    order = space.order()
    formulas, verified, windows = fit_totals(space, tracer, checks, seed, concrete)
    memos = concrete.memos if concrete else []
    for t in concrete.tracers.values() if concrete else ():  # ops left uncosted at any configuration traced
        for mine, theirs in ((tracer.uncovered, t.uncovered), (tracer.zero, t.zero)):
            for k, v in theirs.items():
                mine[k] = max(mine.get(k, 0), v)

    def by_convention(prefix: str) -> dict:
        return {name: {**{m: formulas[prefix + m] for m in FIELD_METRICS}, "flops": formulas[f"{prefix}flops:{name}"]}
                for name in CONVENTIONS}

    totals = by_convention("")
    backward = by_convention(BACKWARD) if tracer.backward else None
    fit = {"windows": {f: list(windows[f]) for f in order}, "traces": len(tracer.memo), "verified_at": verified,
           "traced_at": [dict(key) for key in {k: 0 for memo in (tracer.memo, *memos) for k in memo}]}
    if concrete:
        fit["concrete_traces"] = sum(len(memo) for memo in memos)
    cheap = f" (and {fit['concrete_traces']} at concrete input sizes, to find the terms)" if concrete else ""
    fitted = f"fitted from {len(tracer.memo)} traces{cheap}; verified exactly at {len(verified)} further configurations"
    notes = [*space.notes, *sorted(tracer.notes), fitted]
    if tracer.backward:
        notes.append("one training step: the forward pass, then backward from the first output seeded with ones "
                     "(the loss itself is not costed)")
    cc = ConfigCost(space.target, shape, config, dict(space.fixed), list(space.relations), totals,
                    tuple(sorted(tracer.domain, key=sympy.default_sort_key)), tracer.uncovered, tracer.zero, notes,
                    fit, backward, list(space.bounds), tracer.past, tracer.train, tracer.dtype)
    tops = ", ".join(f"{k} <= {v}" for k, v in cc.sampled().items())
    cc.notes.append(f"the configurations traced reach {tops}: the model's code may take another path past them (a "
                    "kernel chosen by head_dim), so a number beyond them is given only after a trace at its own "
                    "configuration agrees")
    return cc


def fit_totals(space: ConfigSpace, tracer: Callable[[dict], dict], checks: int, seed: int,
               concrete=None) -> tuple[dict, list[dict], dict]:
    """Every total ``tracer`` gives (a function of a configuration, memoised, to key -> expression in the input's
    symbols) as one formula in the configuration symbols too (steps 1-3 of the module docstring): the formulas, the
    configurations they were verified at, and each field's window of exponents (lowest, width).  ``concrete``: the
    same tracer at concrete input sizes, to find the terms cheaply (a ``_Concrete``, whose further sizes also give
    the coefficients; or a tuple of tracers at one size, which find the terms only)."""
    order = space.order()
    probes, base = probe_values(space)
    symbols = [space.symbols[f] for f in order]
    formulas, verified = None, []
    if concrete is not None and not isinstance(concrete, _Concrete):
        concrete = _AtOneSize(concrete) if concrete else None
    if concrete:  # the sparse path: which terms exist, from cheap traces at concrete input sizes
        # first each term's coefficient from concrete traces at further input sizes (one symbolic trace names
        # the functions of the input's symbols that occur); where that fails, one symbolic trace per term
        try:
            grids, los = _windows(space, concrete.first, order, probes, base)
        except TraceError:
            grids = None  # (the symbolic probes below refuse it, or find the window)
        for reconstruct in ((True, False) if concrete.reconstructs else (False,)) if grids else ():
            try:
                formulas = _sparse_fit(concrete, tracer, order, grids, los, symbols, reconstruct)
                verified = _verify(space, tracer, order, formulas, grids, checks, seed, base)
                break
            except TraceError as e:
                formulas = None  # a term the concrete sizes did not show: the full grid of symbolic traces decides
                if not (reconstruct and concrete.basis_failed(e, tracer)):
                    break
    if formulas is None:
        grids, los = _windows(space, tracer, order, probes, base)
        points = list(itertools.product(*(range(len(g)) for g in grids)))
        traced = {idx: tracer({f: grids[a][i] for a, (f, i) in enumerate(zip(order, idx))}) for idx in points}
        formulas = {m: tensor_fit(grids, los, {idx: t[m] for idx, t in traced.items()}, symbols)
                    for m in traced[points[0]]}
        verified = _verify(space, tracer, order, formulas, grids, checks, seed, base)
    return formulas, verified, {f: (lo, len(g)) for f, lo, g in zip(order, los, grids)}


def probe_values(space: ConfigSpace) -> tuple[dict[str, list[int]], dict[str, int]]:
    """The values each field is probed at (the others at the base configuration), and the base configuration."""
    probes: dict[str, list[int]] = {}
    for f in space.order():
        probes[f] = space.candidates(f, probes, PROBES, range(1, 10_000))
        if len(probes[f]) < 3:
            raise UsageError(f"{f}: only {len(probes[f])} values satisfy its divisibility conditions; "
                             "too few to fit a formula (fix it with a number in --config)")
    return probes, {f: v[0] for f, v in probes.items()}


class _AtOneSize:
    """Tracers at one concrete input size (``footprint.config``'s): they find the terms; each coefficient in the
    input's symbols then comes from a symbolic trace."""

    reconstructs = False

    def __init__(self, tracers: tuple):
        self.first = tracers[0]
        self.tracers = {(): self.first}

    @property
    def memos(self) -> list[dict]:
        return [self.first.memo]

    def basis_failed(self, error: TraceError, tracer) -> bool:
        return False


def _windows(space: ConfigSpace, tracer: _Tracer, order: list[str], probes: dict, base: dict):
    """Per field, the narrowest window of exponents explaining every traced total (probing the field alone):
    the grid of the fit (``probes[f][:width]`` per field) and each window's lowest exponent."""
    windows: dict[str, tuple[int, int]] = {}
    for f in order:
        xs = probes[f]
        traced = [tracer({**base, f: x}) for x in xs]
        negative = any(r.den == f for r in space.relations)
        lo_hi = [univariate_window(xs, [t[m] for t in traced], negative) for m in traced[0]]
        for m, w in zip(traced[0], lo_hi):
            if w is None:
                raise TraceError(f"{space.target}: no polynomial of degree <= {len(xs) - 2} in {f} "
                                 f"(= {space.symbols[f]}) explains the traced {m.replace(':', ' ')} at {f} = "
                                 f"{', '.join(map(str, xs))}; symcost refuses rather than approximate")
        lo = min(w[0] for w in lo_hi)
        windows[f] = (lo, max(w[0] + w[1] for w in lo_hi) - lo)
    return [probes[f][:windows[f][1]] for f in order], [windows[f][0] for f in order]


class _InputBasisError(TraceError):
    """The coefficients could not be fitted from concrete input sizes (``_reconstructed``)."""


def _sparse_fit(concrete: _Concrete, tracer: _Tracer, order: list[str], grids, los, symbols,
                reconstruct: bool = True) -> dict:
    """The tensor-grid fit at concrete input sizes names the monomials in the config symbols that occur; at grid
    points whose monomial matrix is invertible, each traced total gives their coefficients as expressions in the
    input's symbols (exact rational inverse): from concrete traces at further input sizes (``reconstruct``,
    ``_reconstructed``), else from one symbolic trace per monomial.  ``_verify`` then checks the whole formula
    against fresh symbolic traces; a term the concrete sizes hid fails it, and the full grid is traced instead."""
    points = list(itertools.product(*(range(len(g)) for g in grids)))
    at = [{f: grids[a][i] for a, (f, i) in enumerate(zip(order, idx))} for idx in points]
    try:
        monomials = sorted(_support(concrete.first, order, grids, los))
    except _SupportError:  # the terms, from the whole tensor grid
        support: set[tuple] = set()
        traced = [concrete.first(p) for p in at]
        for m in traced[0]:
            fitted = tensor_fit(grids, los, {idx: tr[m] for idx, tr in zip(points, traced)}, symbols)
            for term in sympy.Add.make_args(fitted):
                if term != 0:
                    powers = term.as_powers_dict()
                    support.add(tuple(int(powers.get(s, 0)) for s in symbols))
        monomials = sorted(support)

    def row(p: dict) -> list:
        return [math.prod(Fraction(p[f]) ** k for f, k in zip(order, e)) for e in monomials]

    traced_already = set(concrete.first.memo)  # grid points traced already first: fewer new traces
    at.sort(key=lambda p: tuple(sorted(p.items())) not in traced_already)
    chosen = [at[i] for i in _independent((row(p) for p in at), len(monomials))]
    inverse = sympy.Matrix([[sympy.Rational(x.numerator, x.denominator) for x in row(p)] for p in chosen]).inv()
    traced = _reconstructed(concrete, tracer, chosen) if reconstruct else [tracer(p) for p in chosen]
    terms = [sympy.Mul(*[s**k for s, k in zip(symbols, e)]) for e in monomials]
    formulas = {}
    for m in traced[0]:
        values = [t[m] for t in traced]
        coefficients = [sympy.expand(sympy.Add(*[w * v for w, v in zip(inverse.row(j), values) if w != 0]))
                        for j in range(len(monomials))]
        formulas[m] = sympy.expand(sympy.Add(*[c * x for c, x in zip(coefficients, terms) if c != 0]))
    return formulas


class _SupportError(Exception):
    """The terms found field by field disagree with a further trace: the whole tensor grid finds them."""


def _support(tracer: _Tracer, order: list[str], grids, los) -> set[tuple]:
    """The monomials in the configuration symbols (exponent tuples, ``order``'s order) whose coefficient is not
    zero in some traced total, found one field at a time (Zippel's sparse interpolation) rather than on the whole
    tensor grid: with the terms in the first k fields known (the later fields at their base, the grid's first
    value), each further value of field k + 1 needs one trace per term (at grid points where the terms' matrix is
    invertible) and one more that checks them; each term's coefficients over field k + 1's grid then give the
    terms in k + 1 fields.  A term whose coefficient vanishes where it was looked for makes a check fail
    (``_SupportError``: the tensor grid decides); one that slips past both fails the verification."""
    base = {f: g[0] for f, g in zip(order, grids)}
    known: dict[tuple, dict] = {(): tracer(base)}    # exponents of the fields so far -> metric -> coefficient
    for k, f in enumerate(order):
        prefix = list(itertools.product(*grids[:k]))
        terms = list(known)

        def row(p: tuple) -> list:
            return [math.prod(Fraction(x) ** e for x, e in zip(p, t)) for t in terms]

        picked = _independent((row(p) for p in prefix), len(terms))
        if len(picked) < len(terms):
            raise _SupportError
        check = next((i for i in range(len(prefix)) if i not in picked), None)
        inverse = sympy.Matrix([[sympy.Rational(x.numerator, x.denominator) for x in row(prefix[i])]
                                for i in picked]).inv()
        by_value = [known]
        for v in grids[k][1:]:
            def traced(p: tuple) -> dict:
                return tracer({**base, **dict(zip(order[:k], p)), f: v})

            values = [traced(prefix[i]) for i in picked]
            solved = {t: {m: sympy.Add(*[w * tr[m] for w, tr in zip(inverse.row(j), values) if w != 0])
                          for m in values[0]} for j, t in enumerate(terms)}
            if check is not None:
                want, weights = traced(prefix[check]), row(prefix[check])
                if any(sympy.Add(*[sympy.Rational(w.numerator, w.denominator) * solved[t][m]
                                   for w, t in zip(weights, terms)]) != want[m] for m in want):
                    raise _SupportError
            by_value.append(solved)
        inverse_k = vandermonde_inverse(grids[k], los[k])
        known = {}
        for t in terms:
            for m in by_value[0][t]:
                line = [c[t][m] for c in by_value]
                for j in range(len(grids[k])):
                    c = sympy.Add(*[w * y for w, y in zip(inverse_k.row(j), line) if w != 0])
                    if c != 0:
                        known.setdefault((*t, los[k] + j), {})[m] = c
        for t in known.values():  # every metric of a term: zero where it has none
            for m in by_value[0][terms[0]]:
                t.setdefault(m, sympy.Integer(0))
    return set(known)


def _independent(rows, count: int) -> list[int]:
    """The indices of the first ``count`` linearly independent rows (exact Gaussian elimination, Fractions)."""
    chosen, basis = [], []   # basis: reduced rows with their pivot columns
    for i, row in enumerate(rows):
        reduced = list(row)
        for pivot, b in basis:
            if reduced[pivot]:
                factor = reduced[pivot] / b[pivot]
                reduced = [x - factor * y for x, y in zip(reduced, b)]
        pivot = next((j for j, x in enumerate(reduced) if x), None)
        if pivot is not None:
            basis.append((pivot, reduced))
            chosen.append(i)
        if len(chosen) == count:
            break
    return chosen


def _input_parts(e: sympy.Expr, inputs: set) -> set:
    """The functions of the input's symbols a total at one configuration is a rational combination of
    (``{L**2, L, 1}`` for ``24*L**2 + 744*L + 3``)."""
    return {term.as_independent(*inputs, as_Add=False)[1] for term in sympy.Add.make_args(sympy.expand(e))
            if term != 0}


def _reconstructed(concrete: _Concrete, tracer: _Tracer, chosen: list[dict]) -> list[dict]:
    """The totals at each configuration of ``chosen`` as expressions in the input's symbols, without a symbolic
    trace at each: one symbolic trace (at the first) names the functions of the input's symbols that occur (its
    basis: ``L**2, L, 1``); at as many input sizes (those a symbolic trace records and verifies at, where these
    functions are independent), concrete traces give each total's coefficients in that basis, exactly.  The first
    configuration's totals, rebuilt the same way, must equal its symbolic trace (else ``_InputBasisError``); the
    formula is then verified at configurations not fitted on (``_verify``), each by a symbolic trace."""
    exact = tracer(chosen[0])
    inputs = concrete.inputs
    basis = sorted(set().union(*(_input_parts(e, inputs) for e in exact.values())), key=sympy.default_sort_key)
    concrete.basis = basis
    domain = [d for d in tracer.domain if d.free_symbols <= inputs]

    def inside(p: dict) -> bool:
        return all(d.xreplace(p) >= 1 for d in domain)

    candidates = [p for p in concrete.points if inside(p)]
    values = [[b.xreplace(p) for b in basis] for p in candidates]
    if any(not v.is_Rational for row in values for v in row):
        raise _InputBasisError("a function of the input's symbols has no exact value at a concrete size")
    picked = _independent(([Fraction(int(v.p), int(v.q)) for v in row] for row in values), len(basis))
    if len(picked) < len(basis):
        raise _InputBasisError(f"{len(basis)} functions of the input's symbols, {len(picked)} independent sizes")
    inverse = sympy.Matrix([values[i] for i in picked]).inv()
    tracers = [concrete.at(candidates[i]) for i in picked]

    def rebuilt(config: dict) -> dict:
        traced = [t(config) for t in tracers]
        out = {}
        for m in traced[0]:
            column = [t[m] for t in traced]
            if any(not v.is_Rational for v in column):
                raise _InputBasisError(f"the {m} traced at a concrete size is not a number")
            coefficients = inverse * sympy.Matrix(column)
            out[m] = sympy.expand(sympy.Add(*[c * b for c, b in zip(coefficients, basis) if c != 0]))
        return out

    if any(sympy.expand(e - exact[m]) != 0 for m, e in rebuilt(chosen[0]).items()):
        raise _InputBasisError("the totals rebuilt from concrete sizes differ from the symbolic trace's")
    return [exact, *(rebuilt(c) for c in chosen[1:])]


def _verify(space: ConfigSpace, tracer: _Tracer, order: list[str], formulas: dict, grids, checks: int,
            seed: int, base: dict) -> list[dict]:
    rng = random.Random(seed)
    on_grid = set(itertools.product(*grids))
    done: list[dict] = []
    for _ in range(checks * 20):
        if len(done) == checks:
            break
        values: dict[str, list[int]] = {}
        for f in order:
            options = space.candidates(f, values, 12, range(1, 14))
            values[f] = [rng.choice(options)]
        point = {f: v[0] for f, v in values.items()}
        if tuple(point[f] for f in order) in on_grid or point in done:
            continue
        wrong = _mismatch(space, tracer, formulas, point)
        if wrong:
            where = ", ".join(f"{f}={v}" for f, v in point.items())
            culprits = _culprits(space, tracer, formulas, order, base, point) or order
            raise TraceError(f"{space.target}: the formula fitted for {wrong.replace(':', ' ')} differs from a fresh "
                             f"trace at {where}: the cost is not one polynomial in {', '.join(culprits)}; symcost "
                             "refuses rather than approximate")
        done.append(point)
    return done


def _mismatch(space: ConfigSpace, tracer: _Tracer, formulas: dict, point: dict) -> str:
    """The first metric whose formula differs from a fresh trace at ``point`` ("" if none)."""
    traced = tracer(point)
    subs = {space.symbols[f]: sympy.Integer(v) for f, v in point.items()}
    return next((m for m, e in formulas.items() if sympy.expand(e.xreplace(subs) - traced[m]) != 0), "")


def _culprits(space: ConfigSpace, tracer: _Tracer, formulas: dict, order: list[str], base: dict,
              point: dict) -> list[str]:
    """The fields that alone, moved from the base configuration to ``point``'s value, break the formula."""
    out = []
    for f in order:
        moved = {**base, f: point[f]}
        if space.admissible(moved) and _mismatch(space, tracer, formulas, moved):
            out.append(f)
    return out
