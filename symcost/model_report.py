"""A whole model's totals, formulas, evaluations and per-layer rows: what ``symcost model`` prints, as data.

``model_report`` picks the cheapest exact path: a cached sweep evaluates the derivation's plain-data ``Summary``
(no torch, no sympy); otherwise ``derive`` (cache or trace).  A model with no single formula (its graph changes
with the size, or it runs at one size only) is traced at each requested size on its own (``per_size``).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from .errors import NoSingleFormula, OutsideProvenDomain, UsageError, unknown_convention
from .parse import InputSpec
from .summary import EVALUATED

#: the totals a report shows in its formulas; an evaluation gives ``EVALUATED`` (reads and writes too)
METRICS = ("params", "macs", "flops")
UNITS = {"macs": "multiply-accumulates", "reads": "elements", "writes": "elements"}

#: the keys of ``as_dict``, in print order: a derivation's, and a per-size trace's
_KEYS = ("target", "input_shape", "convention", "convention_summary", "total", "units", "uncovered", "zero_cost_ops",
         "notes", "buffers_by_kind", "formula", "assumed_divisible_by", "evaluations", "layers", "seconds")
_PER_SIZE_KEYS = ("target", "input_shape", "convention", "evaluations", "notes")


@dataclass
class ModelReport:
    """``None`` fields are absent from ``as_dict``.  ``summary`` and ``mc`` (the derivation, when one was made:
    the cache's summary answers a sweep without it) are kept for rendering formulas, not serialised."""

    target: str
    input_shape: list
    convention: str
    notes: list = field(default_factory=list)
    evaluations: list | None = None
    convention_summary: str | None = None
    total: dict | None = None
    units: dict | None = None
    uncovered: dict | None = None
    zero_cost_ops: dict | None = None
    buffers_by_kind: dict | None = None
    formula: dict | None = None
    assumed_divisible_by: int | None = None
    layers: list | None = None
    seconds: float | None = None
    per_size: bool = False          # no single formula: each size traced on its own
    summary: object = field(default=None, repr=False)
    mc: object = field(default=None, repr=False)

    def as_dict(self) -> dict:
        keys = _PER_SIZE_KEYS if self.per_size else _KEYS
        return {k: getattr(self, k) for k in keys if getattr(self, k) is not None}


def nested(evaluation: dict) -> dict:
    """One evaluation in the shape every mode shares: ``{"values", "total": {metric: number}}`` (a training step,
    a decode or a configuration adds its parts beside ``total``)."""
    keep = ("name", "values")
    return {**{k: evaluation[k] for k in keep if k in evaluation},
            "total": {k: v for k, v in evaluation.items() if k not in keep}}


def shown(e):
    """An int for an integer, else the formula's string (JSON-ready)."""
    if isinstance(e, int):
        return e
    import sympy

    return int(e) if e.is_Integer else sympy.sstr(e)


def row_json(r, conv) -> dict:
    """One traced row as plain data: names, arguments, symbolic shapes, params, MACs and FLOPs under ``conv``."""
    c = r.cost
    return {"name": r.label, "layer": r.layer, "family": c.family, "args": r.args,
            "input_shapes": [[shown(d) for d in s] for s in r.input_shapes],
            "output_shape": [shown(d) for d in c.output_shape],
            "params": shown(c.params), "macs": shown(c.macs),
            "flops": shown(conv.count_row(r))}


def divisible_totals(mc, k: int, conventions: dict | None = None) -> dict:
    """Every convention's totals (``conventions``: name -> ``Convention``, symcost's own by default) with the input
    symbols assumed multiples of ``k`` (floors gone)."""
    from .conventions import CONVENTIONS
    from .sweep import assume_divisible

    return {n: {m: assume_divisible(e, mc.symbols, k) for m, e in mc.total(c).items()}
            for n, c in (conventions or CONVENTIONS).items()}


def per_size(target: str, input_spec: InputSpec, points: list[dict], convention="flops", note: str = "", *,
             train: bool = False, input_dtype: str | None = None, progress: bool = True) -> ModelReport:
    """A concrete trace per point, for models whose graph changes with the input size."""
    from .derive import trace_target
    from .conventions import report_convention
    from .parse import shape_key
    from .progress import steps

    conv, _ = report_convention(convention)
    evaluations = []
    with steps("tracing each size", len(points), progress) as advance:
        for values in points:
            tot = trace_target(target, input_spec.at(values), train, input_dtype).total(conv)
            evaluations.append({"values": values, "total": {m: int(tot[m]) for m in EVALUATED}})
            advance()
    text = input_spec.text
    shape = shape_key(text).split("x") if "=" not in text else shape_key(text)
    return ModelReport(target, shape, conv.name, notes=[note], evaluations=evaluations, per_size=True)


def model_report(target: str, input_spec: InputSpec, convention="flops", *, points: list[dict] | None = None,
                 assume_divisible: int | None = None, trace_sizes: tuple[dict, dict] | None = None,
                 layers: bool = False, train: bool = False, input_dtype: str | None = None, use_cache: bool = True,
                 progress: bool = True) -> ModelReport:
    """``target`` on ``input_spec`` under ``convention`` (a name or a ``Convention``, one of your own too): totals
    (formulas for a symbolic input), evaluated at ``points`` (dicts symbol name -> size), with per-layer rows when
    ``layers``.  ``assume_divisible``: the formulas for input sizes that are multiples of it (points must be)."""
    from .conventions import CONVENTIONS, notes_for, report_convention

    started = time.perf_counter()
    conv, known = report_convention(convention)
    convention = conv.name
    names = input_spec.symbols
    mc = summary = None
    # a convention of the user's own is weighed on the derivation (a stored summary has symcost's own only)
    if points and not layers and not assume_divisible and use_cache and known is CONVENTIONS:
        from .derive import cached_summary

        summary = cached_summary(target, input_spec.text, train, input_dtype, trace_sizes)
    if summary is None:
        from .derive import derive

        try:
            mc = derive(target, input_spec.text, train=train, use_cache=use_cache, progress=progress,
                        input_dtype=input_dtype, trace_sizes=trace_sizes)
        except NoSingleFormula as e:
            if not points:
                raise
            return per_size(target, input_spec, points, conv,
                            f"no single formula: {e}; each size was traced on its own", train=train,
                            input_dtype=input_dtype, progress=progress)
        summary = mc.summary(divisible_totals(mc, assume_divisible, known) if assume_divisible is not None else None,
                             known)
    if points and summary.fixed_at:
        return per_size(target, input_spec, points, conv,
                        f"{summary.notes[-1]}; each size was traced on its own", train=train,
                        input_dtype=input_dtype, progress=progress)
    if convention not in summary.totals:
        raise unknown_convention(convention, summary.totals)
    total = summary.total(convention)
    report = ModelReport(
        target, summary.input_shape, convention, notes=notes_for(summary.notes, convention, summary.conventions),
        convention_summary=summary.conventions[convention], total=total,
        units={"macs": UNITS["macs"], "flops": f"operations under '{convention}'", "reads": UNITS["reads"],
               "writes": UNITS["writes"]},
        uncovered=summary.uncovered, zero_cost_ops=summary.zero_cost_ops, buffers_by_kind=summary.buffer_kinds,
        summary=summary, mc=mc)
    if names:
        report.formula = {m: str(total[m]) for m in METRICS}
        if assume_divisible is not None:
            report.assumed_divisible_by = assume_divisible
            report.notes = [(f"assumes {', '.join(names)} multiples of {assume_divisible} (--assume-divisible): the "
                             "formulas hold only at such sizes"), *report.notes]
    if points:
        report.evaluations = _evaluations(summary, points, conv, target, input_spec, train, input_dtype,
                                          report.notes, progress)
    if layers:
        report.layers = [row_json(r, conv) for r in mc.rows]
    report.seconds = round(time.perf_counter() - started, 3)
    return report


def _evaluations(summary, points: list[dict], conv, target: str, input_spec: InputSpec, train: bool,
                 input_dtype, notes: list, progress: bool) -> list[dict]:
    """Each point from the formulas, or, where it breaks a size guard of the traced path (``x[:, :512]`` at
    L = 600), from the model traced at that size on its own: exact either way (each ``nested``)."""
    outside = dict(summary.outside(points))
    inside = [p for i, p in enumerate(points) if i not in outside]
    try:
        values = iter([nested(e) for e in summary.evaluate(inside, conv.name)] if inside else [])
    except ValueError as e:
        raise UsageError(str(e)) from None
    if not outside:
        return list(values)
    traced = per_size(target, input_spec, [points[i] for i in outside], conv, train=train,
                      input_dtype=input_dtype, progress=progress).evaluations
    by_index = dict(zip(outside, traced))
    for i, guard in outside.items():
        given = ", ".join(f"{k}={v}" for k, v in points[i].items())
        notes.append(f"{given}: outside the formulas' domain ({guard}, a size guard of the model's forward), "
                     "traced at that size on its own")
    return [by_index[i] if i in outside else next(values) for i in range(len(points))]


# ---- a training step: forward + backward, per token -----------------------------------------------------------

@dataclass
class StepReport:
    """``symcost model --backward / --per-token`` as data: ``parts`` is ``{"total", "forward"[, "backward"]}`` ->
    metric -> exact value (an int, "p/q" per token, or a formula's string), flattened into ``as_dict``."""

    target: str
    input_shape: list
    convention: str
    convention_summary: str
    parts: dict
    units: dict
    per_token: dict | None = None
    formula: dict | None = None
    evaluations: list | None = None
    layers: list | None = None
    uncovered: dict = field(default_factory=dict)
    zero_cost_ops: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    seconds: float | None = None
    mc: object = field(default=None, repr=False)

    def as_dict(self) -> dict:
        out = {"target": self.target, "input_shape": self.input_shape, "convention": self.convention,
               "convention_summary": self.convention_summary, **self.parts, "units": self.units}
        for k in ("per_token", "formula", "evaluations", "layers"):
            if getattr(self, k) is not None:
                out[k] = getattr(self, k)
        out.update(uncovered=self.uncovered, zero_cost_ops=self.zero_cost_ops, notes=self.notes)
        if self.seconds is not None:
            out["seconds"] = self.seconds
        return out


def step_parts(mc, convention, per_token_by=None, divisible: int | None = None) -> dict[str, dict]:
    """Each pass's totals (``training.split``), with sizes assumed multiples of ``divisible``, divided by
    ``per_token_by`` tokens."""
    from .sweep import assume_divisible
    from .training import per_token, split

    from .export.formulas import collect

    out = {}
    for name, part in split(mc).items():
        # like terms collected, as a plain model's totals print: 144*L*(L - 1) + 144*L*(2*L - 1) -> 432*L**2 - 288*L
        total = {m: collect(e) for m, e in part.total(convention).items()}
        if divisible:
            total = {m: assume_divisible(e, mc.symbols, divisible) for m, e in total.items()}
        out[name] = per_token(total, per_token_by) if per_token_by is not None else total
    return out


def evaluate_parts(mc, parts: dict, point: dict) -> dict:
    """Every pass's totals at ``point`` (symbol name -> size), exactly; a size outside the domain is refused."""
    import sympy

    from .training import exact

    try:
        mc.check_domain(point)
    except ValueError as e:
        raise UsageError(str(e)) from None
    subs = {s: sympy.Integer(point[str(s)]) for s in mc.symbols}
    return {"values": point, **{name: {m: exact(v.xreplace(subs)) for m, v in t.items()} for name, t in parts.items()}}


def step_report(target: str, input_spec: InputSpec, convention="flops", *, points: list[dict] | None = None,
                backward: bool = True, per_token: bool = False, assume_divisible: int | None = None,
                layers: bool = False, train: bool = False, input_dtype: str | None = None, use_cache: bool = True,
                progress: bool = True) -> StepReport:
    """One training step (``backward``: forward + backward, no optimizer) split into its passes; ``per_token``:
    MACs, FLOPs, reads and writes divided by the B x L tokens of the input, exactly.  ``convention``: a name or a
    ``Convention`` (one of your own too)."""
    from .conventions import notes_for, report_convention
    from .derive import derive
    from .training import PER_TOKEN_METRICS, exact, tokens

    started = time.perf_counter()
    conv, known = report_convention(convention)
    convention = conv.name
    if assume_divisible is not None and assume_divisible < 1:
        raise UsageError(f"--assume-divisible needs a positive integer, got {assume_divisible}")
    names = input_spec.symbols
    mc = derive(target, input_spec.text, train=train, use_cache=use_cache, progress=progress, input_dtype=input_dtype,
                backward=backward)
    n_tokens = tokens(mc.input_shape, getattr(mc, "inputs", None)) if per_token else None
    parts = step_parts(mc, conv, n_tokens, assume_divisible)
    report = StepReport(
        target, [exact(d) for d in mc.input_shape], convention, conv.summary,
        {name: {m: exact(v) for m, v in t.items()} for name, t in parts.items()},
        {"macs": UNITS["macs"], "flops": f"operations under '{convention}'", "reads": UNITS["reads"],
         "writes": UNITS["writes"]},
        uncovered=dict(mc.uncovered), zero_cost_ops=dict(mc.zero_cost_ops),
        notes=notes_for(mc.notes, convention, known), mc=mc)
    if n_tokens is not None:
        report.per_token = {"divided_by": exact(n_tokens), "metrics": list(PER_TOKEN_METRICS),
                            "why": "tokens in one step: batch x sequence length of the input; params and "
                                   "buffers are not divided"}
        report.notes.append(f"per token: MACs, FLOPs, reads and writes divided by {exact(n_tokens)} tokens "
                            "(batch x sequence length)")
    if names:
        report.formula = {m: str(parts["total"][m]) for m in METRICS}
    if points:
        report.evaluations = [evaluate_parts(mc, parts, p) for p in points]
    if layers:
        report.layers = [{**row_json(r, conv), "backward": r.backward} for r in mc.rows]
    report.seconds = round(time.perf_counter() - started, 3)
    return report


# ---- decoding with a KV cache ---------------------------------------------------------------------------------

@dataclass
class DecodeReport:
    """One decode step (``past``) or a generation (``generate``: prefill + decode steps, summed), as data; ``parts``
    (``total``, or ``total``/``prefill``/``decode``) are flattened into ``as_dict``."""

    target: str
    input_shape: list
    convention: str
    convention_summary: str
    parts: dict
    past: str | None = None
    generate: str | None = None
    step_formula: dict | None = None
    formula: dict | None = None
    evaluations: list | None = None
    uncovered: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    seconds: float | None = None

    def as_dict(self) -> dict:
        out = {"target": self.target, "input_shape": self.input_shape, "convention": self.convention,
               "convention_summary": self.convention_summary}
        for k in ("past", "generate", "step_formula"):
            if getattr(self, k) is not None:
                out[k] = getattr(self, k)
        out.update(self.parts)
        for k in ("formula", "evaluations"):
            if getattr(self, k) is not None:
                out[k] = getattr(self, k)
        out.update(uncovered=self.uncovered, notes=self.notes)
        if self.seconds is not None:
            out["seconds"] = self.seconds
        return out


def decode_report(target: str, input_spec: InputSpec, convention="flops", *, past: str | None = None,
                  generate: str | None = None, at: list[str] | None = None, use_cache: bool = True,
                  progress: bool = True, config: str | None = None) -> DecodeReport:
    """``past``: one decode step of a Hugging Face decoder on B x L new tokens with T = ``past`` cached tokens per
    layer; ``generate``: the prefill of the L tokens and ``generate`` decode steps, summed in closed form.  ``at``:
    ``--at`` assignments of the result's symbols, evaluated exactly.  From the cache when it can (``derive_decode``).
    ``config`` (with ``generate``): the same in the model's config fields too (``symcost.hyper``).  ``convention``:
    a name, or a ``Convention`` (one of your own too, for a decode step; a generation is summed and stored under
    symcost's own conventions).
    """
    import sympy

    from .conventions import notes_for, report_convention
    from .decode import tidy
    from .derive import derive_decode
    from .sweep import parse_assignments
    from .training import exact

    started = time.perf_counter()
    conv, known = report_convention(convention, generation=bool(generate))
    convention = conv.name
    if bool(past) == bool(generate):
        raise UsageError("give --past T (one decode step) or --generate n (prefill + n steps), not both")
    if isinstance(input_spec.dims, dict) or len(input_spec.dims) != 2:
        raise UsageError(f"--past and --generate need token ids of shape B x L, got {input_spec.text!r}")
    shape = input_spec.shape
    report = DecodeReport(target, [exact(sympy.sympify(d)) for d in shape], convention, conv.summary, {})
    new = exact(sympy.sympify(shape[1]))
    if config and not generate:
        raise UsageError("decode_report(config=...) is for --generate; a decode step in config fields is "
                         "symcost.hyper.derive_config(past=...)")
    if past:
        got = derive_decode(target, input_spec.text, past=past, use_cache=use_cache, progress=progress)
        mc, moe_notes = got["step"], got["notes"]
        parts = {"total": {m: tidy(e) for m, e in mc.total(conv).items()}}
        report.past = past
        notes = [(f"one decode step: {new} new token(s) per sequence with {past} cached tokens per layer (a "
                  "DynamicCache); reads include the cache")]
        derivations, symbols = (mc,), mc.symbols
    else:
        if config:
            from .hyper.generate import config_generation

            g = config_generation(target, input_spec, config, generate, convention, use_cache=use_cache,
                                  progress=progress)
            moe_notes = []
        else:
            g = derive_decode(target, input_spec.text, generate=generate, convention=convention, use_cache=use_cache,
                              progress=progress)
            moe_notes = g["notes"]
        # like terms collected in every part: 9216*N*(N + 2*P + 9217) -> 9216*N**2 + 18432*N*P + 84946944*N
        parts = {k: {m: tidy(e) for m, e in g[k].items()} for k in ("total", "prefill", "decode")}
        report.generate = generate
        report.step_formula = {m: str(g["step"][m]) for m in ("macs", "flops", "reads", "writes")}
        notes = [(f"prefill of {new} tokens, then {generate} decode steps of one token at T = {new} … (prefill + "
                  f"steps - 1) cached tokens; decode is the step formula in {g['step_symbol']} summed in closed form")]
        derivations = g["derivations"]
        symbols = sorted(set().union(*[e.free_symbols for e in parts["total"].values()]), key=str)
    report.parts = {name: {m: exact(v) for m, v in t.items()} for name, t in parts.items()}
    names = [str(s) for s in symbols]
    if names:
        report.formula = {m: str(parts["total"][m]) for m in ("macs", "flops", "reads", "writes")}
    if at:
        check = None
        if config:   # the config's conditions, at the prefill and at the first and last decode steps
            check = g["check"]
        elif generate:
            from .decode import check_steps

            def check(p):
                check_steps(g, {k: int(v) for k, v in p.items()})
        report.evaluations = _decode_evaluations(target, input_spec, conv, past, parse_assignments(at, names),
                                                 derivations, check, parts, symbols, notes, use_cache, progress)
    for d in derivations:
        for k, v in d.uncovered.items():
            report.uncovered[k] = report.uncovered.get(k, 0) + v
    report.notes = notes_for(moe_notes + notes + [n for d in derivations for n in d.notes], convention, known)
    report.seconds = round(time.perf_counter() - started, 3)
    return report


def _decode_evaluations(target: str, input_spec: InputSpec, convention, past, points: list[dict], derivations,
                        check, parts: dict, symbols, notes: list, use_cache: bool, progress: bool) -> list[dict]:
    """``decode_report``'s numbers at each point: every point checked first (``check``: a generation's conditions),
    a decode step outside the step formula's proven domain (a sliding window's own path) traced on its own."""
    import sympy

    from .derive import derive_decode
    from .training import exact

    outside = {}
    for i, p in enumerate(points):
        for d in derivations[-1:] if past else ():  # the step's domain (a sliding window bounds T)
            try:
                d.check_domain(p)
            except OutsideProvenDomain as e:  # another path of the step: that step traced on its own
                outside[i] = str(e).split(" (a size guard")[0]
            except ValueError as e:
                raise UsageError(str(e)) from None
        if check is not None:
            check(p)
    out = []
    for i, p in enumerate(points):
        if i in outside:
            spec = "x".join(map(str, input_spec.at(p)))
            step = derive_decode(target, spec, past=str(p.get(str(past), past)), use_cache=use_cache,
                                 progress=progress)["step"].total(convention)
            out.append({"values": p, "total": {m: exact(v) for m, v in step.items()}})
            notes.append(f"{outside[i]}: that decode step traced on its own")
            continue
        subs = {s: sympy.Integer(p[str(s)]) for s in symbols}
        out.append({"values": p, **{n: {m: exact(v.xreplace(subs)) for m, v in t.items()} for n, t in parts.items()}})
    return out
