"""Memory in a model's own hyperparameters: ``symcost memory hf:llama --input BxL --config hidden_size=d,…``.

The step's memory is derived (``footprint.build``) at sampled configurations and every heading fitted as one
formula in the configuration symbols and the input's symbols by ``hyper.fit_totals``, as ``symcost model --config``
fits FLOPs: probed field by field, fitted on a grid, verified exactly at further configurations.

The peak is a ``Max`` of live-byte sums at a few ops, and which ops those are moves with the configuration (the
backward's first block is op ~1,000 at 2 layers and ~9,000 at 32).  Each op the peak is the largest of at some
configuration traced is named relative to its phase: its place from the start of the forward or the backward, or
from the end of its phase.  An anchor whose op at another configuration is a different op is dropped; the live
bytes at each remaining one are fitted like a heading.  Their ``Max`` is the peak exactly wherever every
configuration's own peak positions are among them (each is a live sum at a real op, so none exceeds the peak, and
the largest is the peak); that is checked at every configuration traced, the verification's included, and the
derivation is refused where it fails.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import sympy

from ..errors import NoSingleFormula, TraceError, UsageError
from .result import Memory


@dataclass
class ConfigMemory(Memory):
    """``Memory`` whose formulas are in configuration symbols too; ``at`` first checks the configuration's
    conditions (divisibility, fitted from 2 up)."""

    config: dict = field(default_factory=dict)
    conditions: object = None          # a ``hyper.ConfigCost`` without totals: the configuration's domain
    fitting: dict = field(default_factory=dict)

    def check_config(self, values: dict, confirm: bool = True) -> None:
        try:
            self.conditions.check_domain({k: values.get(k) for k in map(str, self.conditions.symbols)})
        except ValueError as e:
            raise UsageError(str(e).splitlines()[0]) from None
        beyond = self.conditions.beyond(values)
        if confirm and beyond:
            self._confirm(values, beyond)

    def _confirm(self, values: dict, beyond: list[str]) -> None:
        """As ``hyper.confirm``: a configuration past the ones derived is given only after a derivation at it
        agrees on every heading and the peak."""
        point = {str(s): values[str(s)] for s in self.symbols}
        if point in self.fitting.setdefault("confirmed", []):
            return
        given = ", ".join(f"{k}={v}" for k, v in point.items())
        derive = getattr(self, "derive_at", None)
        if derive is None:
            raise UsageError(f"{given}: beyond the configurations the formulas were derived at ({', '.join(beyond)}); "
                             "derive the memory at this configuration")
        theirs = derive(values)
        mine = Memory.at(self, values)
        for k, v in theirs.items():
            if isinstance(v, int) and mine.get(k) != v:
                raise UsageError(f"{given}: beyond the configurations the formulas were derived at "
                                 f"({', '.join(beyond)}) the model takes another path: a derivation at this "
                                 f"configuration gives {v:,} bytes of {k}, the formula {mine[k]:,}; derive the memory "
                                 "at this configuration")
        self.fitting["confirmed"].append(point)

    def at(self, values: dict) -> dict:
        self.check_config(values)
        return super().at(values)

    def fit(self, symbol: str, budget: int, values: dict) -> dict:
        config = {str(s) for s in self.conditions.config_symbols.values()}
        if symbol in config:
            raise UsageError(f"--fit solves for a symbol of the input, not the configuration's {symbol}: give it with "
                             "--at and fit the batch or the sequence length")
        least = {str(s): 1 for s in self.symbols if str(s) not in values}
        self.check_config({**least, **values}, confirm=False)
        found = super().fit(symbol, budget, values)
        for v in (found.get("value"), found.get("next_value")):  # the numbers it gives, past the fit: checked
            if isinstance(v, int):
                self.check_config({**values, symbol: v})
        return found

    def as_dict(self) -> dict:
        out = super().as_dict()
        out["config"] = dict(self.config)
        out["conditions"] = self.conditions.condition_texts()
        out["fitting"] = dict(self.fitting)
        return out


class _Steps:
    """The step's memory at a configuration (memoised): its headings as expanded expressions in the input's
    symbols (``hyper.fit_totals`` fits them), the ``Memory`` kept for its peak positions."""

    def __init__(self, space, shape, options: dict, progress):
        self.space, self.shape, self.options, self.progress = space, shape, options, progress
        self.memo: dict[tuple, dict] = {}
        self.steps: dict[tuple, Memory] = {}

    def __call__(self, values: dict[str, int]) -> dict[str, sympy.Expr]:
        key = tuple(sorted(values.items()))
        if key not in self.memo:
            self.steps[key] = mem = self._derive(values)
            self.memo[key] = {k: sympy.expand(sympy.sympify(e)) for k, e in {**mem.parts, **mem.flops}.items()}
        return self.memo[key]

    def _derive(self, values: dict) -> Memory:
        from ..errors import SymcostError
        from .build import derive_memory

        space = self.space
        every = {**space.fixed, **values}
        where = ", ".join(f"{f}={v}" for f, v in values.items())
        self.progress(f"recording {space.target}'s memory at {where}")

        def load(attn):
            model = space.build(every)
            if attn and hasattr(model, "set_attn_implementation"):
                model.set_attn_implementation(attn)
            return model

        try:
            return derive_memory(space.target, self.shape, load=load, warm_once=True, **self.options)
        except (SymcostError, UsageError) as e:
            raise TraceError(f"{space.target} at {where}: {e}") from None
        except Exception as e:  # noqa: BLE001  (the model's own complaint about this configuration, whole)
            from ..targets import one_line

            raise TraceError(f"{space.target} cannot be built at {where}: {type(e).__name__}: {one_line(e)}"
                             + space.refusal_hint) from None


Anchor = tuple   # (phase, "start" or "end", op name, ops from that end of the phase)


def _phase(pos, k: int) -> tuple[str, int, int]:
    start = pos.backward_start
    if start is not None and k >= start:
        return "backward", start, len(pos.ops)
    return "forward", 0, len(pos.ops) if start is None else start


def _anchors(pos, k: int) -> list[Anchor]:
    phase, lo, hi = _phase(pos, k)
    return [(phase, "start", pos.ops[k], k - lo), (phase, "end", pos.ops[k], hi - 1 - k)]


def _position(pos, anchor: Anchor) -> int | None:
    """Where ``anchor`` is in another recording's ops (None: not there, or another op)."""
    phase, side, op, offset = anchor
    if phase == "backward" and pos.backward_start is None:
        return None
    lo, hi = (pos.backward_start, len(pos.ops)) if phase == "backward" else \
        (0, len(pos.ops) if pos.backward_start is None else pos.backward_start)
    k = lo + offset if side == "start" else hi - 1 - offset
    return k if lo <= k < hi and pos.ops[k] == op else None


def _choose_anchors(steps: list[Memory]) -> list[Anchor]:
    """The anchors of every position some configuration's peak is the largest of, kept where they name the same op
    at every configuration; of a position's two, the one that is a peak position elsewhere too where that is so."""
    kept: dict[Anchor, None] = {}
    for mem in steps:
        pos = mem.positions
        for k in pos.candidates:
            valid = [a for a in _anchors(pos, k) if all(_position(m.positions, a) is not None for m in steps)]
            confirmed = [a for a in valid if any(m.positions is not pos and len(m.positions.ops) != len(pos.ops)
                                                 and _position(m.positions, a) in m.positions.candidates
                                                 for m in steps)]
            for a in confirmed or valid:
                kept[a] = None
    return list(kept)


def _uncovered(steps: dict, anchors: list[Anchor]) -> str:
    """A configuration and op where the peak is largest that no anchor names ("" if none)."""
    for key, mem in steps.items():
        pos = mem.positions
        named = {_position(pos, a) for a in anchors}
        for k in pos.candidates:
            if k not in named:
                return f"{pos.ops[k]} (op {k}) at {', '.join(f'{f}={v}' for f, v in key)}"
    return ""


def _polynomial(space, anchors: list[Anchor], steps: _Steps) -> list[Anchor]:
    """The anchors whose live bytes, probing each field alone, some polynomial of degree <= 4 explains (as
    ``hyper.fit_totals`` probes a total) and whose op is the same at each probe; the others cannot be one formula.
    Dropping one is safe: the peak is checked to be among those kept at every configuration traced."""
    from ..hyper import probe_values
    from ..hyper.fit import univariate_window

    probes, base = probe_values(space)
    kept = []
    for a in anchors:
        peaks = _Peaks(steps, [a])
        try:
            for f, xs in probes.items():
                ys = [peaks({**base, f: x})["0"] for x in xs]
                if univariate_window(xs, ys, any(r.den == f for r in space.relations)) is None:
                    raise NoSingleFormula(f"no polynomial in {f}")
        except NoSingleFormula:
            continue
        kept.append(a)
    return kept


class _Peaks:
    """The live bytes at each anchor, at a configuration (from the step ``_Steps`` records there)."""

    def __init__(self, steps: _Steps, anchors: list[Anchor]):
        self.steps, self.anchors = steps, anchors
        self.memo: dict[tuple, dict] = {}

    def __call__(self, values: dict[str, int]) -> dict[str, sympy.Expr]:
        key = tuple(sorted(values.items()))
        if key not in self.memo:
            self.steps(values)
            pos = self.steps.steps[key].positions
            at = [_position(pos, a) for a in self.anchors]
            if None in at:
                a = self.anchors[at.index(None)]
                where = ", ".join(f"{f}={v}" for f, v in values.items())
                raise NoSingleFormula(f"the peak's op {a[2]} ({a[0]}, {a[3]} ops from its {a[1]}) is another op at "
                                      f"{where}: the peak's place moves with the configuration; derive at one")
            live = pos.live(at)
            self.memo[key] = {str(i): sympy.expand(live[k]) for i, k in enumerate(at)}
        return self.memo[key]


def _label(anchor: Anchor, module: str) -> str:
    phase, side, op, offset = anchor
    where = f"op {offset} of the {phase}" if side == "start" else \
        ("its last op" if offset == 0 else f"{offset} op{'s' if offset > 1 else ''} before its end")
    return f"{op} in {module or '(model)'} ({phase}, {where})"


def _module(names: list[str]) -> str:
    """The module's name where every configuration gives the same; a block index that moves with the depth as *
    (model.layers.*.self_attn)."""
    parts = [n.split(".") for n in names]
    if len({len(p) for p in parts}) != 1:
        return "(a module whose name moves with the configuration)"
    out = []
    for pieces in zip(*parts):
        if len(set(pieces)) == 1:
            out.append(pieces[0])
        elif all(p.isdigit() for p in pieces):
            out.append("*")
        else:
            return "(a module whose name moves with the configuration)"
    return ".".join(out)


def _primitive(d):
    content, rest = d.as_content_primitive()
    return rest if content.is_Integer and content > 0 else d


def memory_config(target, input_shape, config, *, checks: int = 3, seed: int = 0, progress: bool = False,
                  **options) -> ConfigMemory:
    """``footprint.memory`` with ``config`` (``"hidden_size=d,num_hidden_layers=n"`` or a dict): every heading and
    the peak as formulas in the configuration symbols and the input's symbols (see the module docstring)."""
    from ..hyper import ConfigCost, fit_totals
    from ..hyper.space import config_space, parse_config
    from ..parse import InputSpec, size_value
    from ..progress import status

    fields = parse_config(config)
    shape = InputSpec.of(input_shape).shape
    past = options.get("past")
    past = None if past is None else size_value(past, "--past")
    inputs = {str(d) for d in (*shape, past) if isinstance(d, sympy.Basic) and d.free_symbols}
    space = config_space(target, fields)
    clash = inputs & {str(s) for s in space.symbols.values()}
    if clash:
        raise UsageError(f"--config symbol {', '.join(sorted(clash))} is also an input symbol; choose another name")
    if not space.symbols:
        raise UsageError("--config names no field as a symbol (e.g. hidden_size=d)")
    options = {**options, "past": past, "progress": False}
    with status(f"deriving {space.target}'s memory in {', '.join(map(str, space.symbols.values()))}", progress) as say:
        steps = _Steps(space, shape, options, say.update)
        concrete = ()
        symbolic = [d for d in (*shape, past) if isinstance(d, sympy.Basic) and d.free_symbols]
        if symbolic:  # the terms found at a concrete input size (one recording each), as `symcost model --config`
            from ..tracing import trace_sizes

            sizes = trace_sizes(tuple(symbolic))[0][0]

            def at(d):
                return int(d.xreplace(sizes)) if isinstance(d, sympy.Basic) else d

            concrete = (_Steps(space, tuple(at(d) for d in shape), {**options, "past": at(past)}, say.update),)
        formulas, verified, windows = fit_totals(space, steps, checks, seed, concrete)
        traced = list(steps.steps.values())
        anchors = _polynomial(space, _choose_anchors(traced), concrete[0] if concrete else steps)
        peaks = _Peaks(steps, anchors)
        fitted, verified_peak, _ = fit_totals(space, peaks, checks, seed, tuple(_Peaks(c, anchors) for c in concrete))
        traced = list(steps.steps.values())
        missing = _uncovered(steps.steps, anchors)
        if missing:
            raise NoSingleFormula(f"the peak at {missing} is at an op no other configuration's peak is: its place "
                                  "moves with the configuration; derive the memory at one configuration")
    base = traced[0]
    modules = {}
    for i, a in enumerate(anchors):
        modules[i] = _module([m.positions.modules[_position(m.positions, a)] for m in traced])
    peak_list = [(_label(a, modules[i]), fitted[str(i)]) for i, a in enumerate(anchors)]
    parts = {k: formulas[k] for k in base.parts}
    flops = {k: formulas[k] for k in base.flops}
    resident = parts.get("optimizer_states", 0) + parts.get("master_weights", 0)
    # each configuration's sizes that must be >= 1, a positive multiple (64*B) as the size itself (B)
    domain = tuple(sorted({_primitive(d) for m in traced for d in m.domain}, key=sympy.default_sort_key))
    everywhere = [n for n in base.notes if all(n in m.notes for m in traced)]
    notes = [*space.notes, *everywhere]
    if len(everywhere) < len({n for m in traced for n in m.notes}):
        notes.append("notes that differ between configurations are left out: `symcost memory` at one configuration "
                     "gives them")
    notes.append(f"fitted from {len(steps.memo)} derivations (and {sum(len(c.memo) for c in concrete)} at concrete "
                 f"input sizes, to find the terms); verified exactly at {len(verified)} further configurations; the "
                 f"peak is the largest of the live bytes at {len(anchors)} op{'s' if len(anchors) > 1 else ''}, each "
                 "fitted the same way")
    fitting = {"windows": {f: list(w) for f, w in windows.items()}, "derivations": len(steps.memo),
               "verified_at": verified, "peak_verified_at": verified_peak,
               "traced_at": [dict(key) for key in {k: 0 for t in (steps, *concrete) for k in t.memo}]}
    conditions = ConfigCost(space.target, shape, {f: v for f, v in fields.items()}, dict(space.fixed),
                            list(space.relations), {}, bounds=list(space.bounds), past=past,
                            fit={"traced_at": fitting["traced_at"]})
    tops = ", ".join(f"{k} <= {v}" for k, v in conditions.sampled().items())
    notes.append(f"the configurations derived reach {tops}: a number beyond them is given only after a derivation "
                 "at its own configuration agrees")
    out = ConfigMemory(space.target, shape, base.dtype, base.backward, parts, peak_list, resident, domain, notes,
                       verified, flops, config=dict(fields), conditions=conditions, fitting=fitting)
    out.derive_at = _deriver(space, shape, past, options)  # (not a field) what ``_confirm`` derives
    return out


def _deriver(space, shape: tuple, past, options: dict):
    """values -> every heading and the peak of the step derived at that one configuration and input size."""
    def derive_at(values: dict) -> dict:
        def put(d):
            return int(d.xreplace({s: values[str(s)] for s in d.free_symbols})) if isinstance(d, sympy.Basic) else d

        point = {f: values[str(s)] for f, s in space.symbols.items()}
        one = _Steps(space, tuple(put(d) for d in shape), {**options, "past": put(past)}, lambda _: None)
        try:
            one(point)
        except TraceError as e:
            raise UsageError(f"beyond the configurations the formulas were derived at, a derivation at "
                             f"{', '.join(f'{k}={v}' for k, v in values.items())} failed: {e}") from None
        return next(iter(one.steps.values())).at({})

    return derive_at

