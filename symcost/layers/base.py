"""The base every layer type derives from: declared arguments, validation, ``cost``.

As in ``sympy.stats``: arguments are declared once (``args``), ``check`` raises
only when a condition is *definitely* violated, so symbolic sizes pass.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from difflib import get_close_matches
from typing import Any, ClassVar, Sequence

import sympy

from ..cost import Cost
from ..memo import shared_memo
from ..symbols import user_symbol

REQUIRED = object()


from ..errors import LayerError  # noqa: E402  (re-exported: layers raise it)


def definitely(cond) -> bool:
    """True only when a sympy relation is provably true (symbols stay undecided)."""
    return cond if isinstance(cond, bool) else cond is sympy.true


def is_number(x) -> bool:
    return not isinstance(x, sympy.Basic) or not x.free_symbols


_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}
#: words torch takes as option values: never a size symbol (padding=same on a ConvTranspose is a mistake, not "same")
_KEYWORDS = {"same", "valid", "full", "none", "true", "false", "yes", "no", "on", "off", "zeros", "reflect",
             "replicate", "circular", "nearest", "linear", "bilinear", "bicubic", "trilinear", "area", "eval", "train",
             "tanh", "mean", "sum"}


def unknown_argument(layer: str, key: str, names: list[str]) -> str:
    """``conv2d: unknown argument 'in_chanels'; did you mean in_channels? it takes: ...``"""
    close = get_close_matches(key, names, 1, 0.75)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return f"{layer}: unknown argument {key!r}{hint}; it takes: {', '.join(names) or 'none'}"


@dataclass(frozen=True)
class Arg:
    """One constructor argument, named as in ``torch.nn``.

    kind: "size" (positive int), "count" (nonnegative int), "tuple" (positive ints,
    one per spatial axis), "offsets" (nonnegative ints per axis), "flag" (bool,
    symbolically a 0/1 symbol), "float", "choice", "shape" (a tuple of any length),
    "dims" (a tuple of dimension indices, negative allowed),
    "int" (any integer, e.g. a dim).
    symbol: what an omitted argument becomes in a symbolic formula (None: the default).
    An argument whose default is None (torch's "unset", e.g. a pooling stride) also
    accepts None, and "none" on the command line.
    """

    name: str
    kind: str
    default: Any = REQUIRED
    symbol: Any = None
    help: str = ""
    choices: tuple = ()

    def parse(self, text: str, allow_symbols: bool):
        """Parse a CLI value.  Never evaluates: integers, booleans, floats, or validated names."""
        text = text.strip()
        if self.default is None and text.lower() == "none":
            return None
        if self.kind == "flag":
            low = text.lower()
            if low in _TRUE:
                return True
            if low in _FALSE:
                return False
            raise LayerError(f"{self.name}: expected true or false, got {text!r}")
        if self.kind == "float":
            try:
                value = float(text)
            except ValueError:
                raise LayerError(f"{self.name}: expected a number, got {text!r}") from None
            # nan and inf parse as floats; no layer takes nan, and only a bound may be unbounded (hardtanh's)
            if math.isnan(value) or (math.isinf(value) and self.name not in ("min_val", "max_val")):
                raise LayerError(f"{self.name}: expected a finite number, got {text!r}")
            return value
        if text in self.choices:
            return text
        if self.kind == "choice":
            raise LayerError(f"{self.name}: expected one of {self.choice_list()}, got {text!r}")
        close = [c for c in self.choices if c.lower() == text.lower()] or get_close_matches(text, self.choices, 1, 0.75)
        if close:  # a misspelt choice of a numeric argument would otherwise become a symbol
            raise LayerError(f"{self.name}: expected {self.choice_list()} or an integer, got {text!r} "
                             f"(did you mean {close[0]!r}?)")
        items = [t.strip() for t in text.split(",")]
        if self.kind in ("size", "count", "int") and len(items) == 1:
            return self._scalar(items[0], allow_symbols)
        if self.kind in ("tuple", "offsets", "shape", "dims"):
            vals = tuple(self._scalar(t, allow_symbols and self.kind != "dims") for t in items)
            return vals[0] if len(vals) == 1 and self.kind not in ("shape", "dims") else vals
        raise LayerError(f"{self.name}: expected one integer, got {text!r}")

    def choice_list(self) -> str:
        return ", ".join(map(repr, self.choices))

    def _scalar(self, t: str, allow_symbols: bool):
        try:
            return int(t)
        except ValueError:
            pass
        if allow_symbols and t.lower() in _KEYWORDS:
            raise LayerError(f"{self.name}: expected an integer or a symbol name, got the keyword {t!r}"
                             + (f" (this layer's {self.name} takes {self.choice_list()} or a number)" if self.choices
                                else f" ({self.name} takes numbers only here)"))
        if allow_symbols:
            try:
                return user_symbol(t)
            except ValueError as e:
                if t[:1].isdigit() or t[:1] in "+-.":  # a number, not a name: say what numbers it takes
                    raise LayerError(f"{self.name} must be {self.what_number()} or a symbol name, got {t}") from None
                raise LayerError(f"{self.name}: {e}") from None
        raise LayerError(f"{self.name}: expected an integer, got {t!r}")

    def what_number(self) -> str:
        """The integers this argument takes, in words (its ``kind``)."""
        return {"size": "a positive integer", "tuple": "a positive integer", "count": "a nonnegative integer",
                "offsets": "a nonnegative integer"}.get(self.kind, "an integer")


def how_many_inputs(low: int, high: float) -> str:
    def n(k):
        return f"{k} input" + ("" if k == 1 else "s")

    if low == high:
        return n(low)
    return f"{low} to {n(high)}" if high != float("inf") else f"at least {n(low)}"


_INPUT_COUNTS: dict[type, tuple[int, float]] = {}
#: the costs of the traces running now (``cost_memo``), innermost last
_MEMOS: list[dict] = []


def cost_memo():
    """Within this block, a catalog layer's ``cost`` on the same arguments and input shapes is computed once (a
    model repeats identical blocks: Llama's 32).  A ``Cost`` is immutable, so every caller may share it.  Nested
    blocks share the outer memo."""
    return shared_memo(_MEMOS)


def _frozen(v):
    """A memo key for an argument or shape: each value with its type (1, 1.0 and Integer(1) hash alike)."""
    if isinstance(v, tuple):
        return tuple, tuple(_frozen(x) for x in v)
    if isinstance(v, float):  # -0.0 == 0.0
        return float, repr(v)
    return type(v), v


def _memo_of(layer: "Layer", shapes: tuple) -> tuple[dict | None, tuple | None]:
    """The active memo and ``layer``'s key in it; (None, None) outside ``cost_memo``, for a layer class outside
    symcost's catalog (a user's ``_cost`` need not be a pure function of its arguments) or an unhashable argument."""
    if not _MEMOS or not type(layer).__module__.startswith("symcost."):
        return None, None
    # sympy sizes as they are (an Integer never equals a float), anything else with its type
    sympy_only = all(isinstance(d, sympy.Basic) for s in shapes for d in s)
    key = (type(layer), tuple((k, _frozen(v)) for k, v in layer.values.items()),
           shapes if sympy_only else _frozen(shapes))
    try:
        hash(key)
    except TypeError:
        return None, None
    return _MEMOS[-1], key


class Layer:
    """A layer type: subclasses set the class attributes and implement ``_cost``."""

    name: ClassVar[str]
    family: ClassVar[str]
    torch_name: ClassVar[str]
    summary: ClassVar[str]
    args: ClassVar[tuple[Arg, ...]] = ()
    #: symbolic input shapes used when the user gives none
    default_inputs: ClassVar[tuple[tuple, ...]] = ()
    #: the time model's kind of a call (one of ``symcost.timing.KINDS``); "" takes the family's (a family the time
    #: model does not know must name one here, or timing it is refused)
    time_kind: ClassVar[str] = ""

    def __init__(self, *, symbolic: bool = False, **kwargs: Any) -> None:
        known = {a.name: a for a in self.args}
        unknown = [k for k in kwargs if k not in known]
        if unknown:
            raise LayerError(unknown_argument(self.name, unknown[0], list(known)))
        self.values: dict[str, Any] = {}
        for a in self.args:
            if a.name in kwargs:
                v = kwargs[a.name]
            elif symbolic and a.symbol is not None:
                v = a.symbol
            elif a.default is REQUIRED:
                raise LayerError(f"{self.name}: missing required argument {a.name!r} ({a.help or a.kind})")
            else:
                v = a.default
            self.values[a.name] = self._normalize(a, v)
        self.check_args()

    def backward(self, *input_shapes: Sequence) -> dict[str, Cost]:
        """The gradient of each input and parameter (``grad_input``, ``grad_weight`` …), one ``Cost`` each, on
        ``input_shapes`` (default: the symbolic inputs).  A class writes its own as ``_backward(*shapes)``; the
        built-in layers' rules are in ``symcost.layers.layer_backward``.  ``LayerError`` where there is none."""
        from ..registry import backward_of

        return backward_of(self, *input_shapes)

    # ---- argument helpers -------------------------------------------------
    def __getattr__(self, item):
        values = self.__dict__.get("values", {})
        if item in values:
            return values[item]
        raise AttributeError(item)

    def _normalize(self, a: Arg, v):
        if v is None and a.default is None:
            return None  # an optional argument left unset, as torch's None
        if isinstance(v, str) and a.kind != "float":
            if v in a.choices:
                return v
            options = f"one of {a.choice_list()}" if a.choices else "a number"
            raise LayerError(f"{self.name}: {a.name} must be {options}, got {v!r}")
        if a.kind == "choice":  # a choice is never a number or a symbol
            raise LayerError(f"{self.name}: {a.name} must be one of {a.choice_list()}, got {v!r}")
        if a.kind == "flag":
            if isinstance(v, bool):
                return sympy.Integer(int(v))
            if isinstance(v, sympy.Symbol):
                return v
            raise LayerError(f"{self.name}: {a.name} must be true or false, got {v!r}")
        if a.kind in ("size", "count", "int"):
            return self._int(a, v)
        if a.kind in ("tuple", "offsets"):
            vals = v if isinstance(v, (tuple, list)) else (v,) * self.dims
            if len(vals) != self.dims:
                raise LayerError(f"{self.name}: {a.name} needs {self.dims} value(s), got {len(vals)}")
            return tuple(self._int(a, x) for x in vals)
        if a.kind == "dims":
            vals = v if isinstance(v, (tuple, list)) else (v,)
            if not all(isinstance(x, int) and not isinstance(x, bool) for x in vals):
                raise LayerError(f"{self.name}: {a.name} must be integers (dims), got {v!r}")
            return tuple(vals)
        if a.kind == "shape":
            vals = v if isinstance(v, (tuple, list)) else (v,)
            return tuple(self._int(a, x) for x in vals)
        if a.kind == "float" and isinstance(v, float) and math.isnan(v):
            # torch runs some layers with a nan argument, but every output is then nan: nothing to count
            raise LayerError(f"{self.name}: {a.name} must be a number, got nan")
        return v

    def _int(self, a: Arg, v):
        if isinstance(v, bool) or not isinstance(v, (int, sympy.Basic)):
            raise LayerError(f"{self.name}: {a.name} must be an integer, got {v!r}")
        v = sympy.Integer(v) if isinstance(v, int) else v
        low = {"size": 1, "tuple": 1, "shape": 1, "count": 0, "offsets": 0}.get(a.kind)
        if low is not None and is_number(v) and v < low:
            what = "a positive integer" if low == 1 else "a nonnegative integer"
            raise LayerError(f"{self.name}: {a.name} must be {what}, got {v}")
        return v

    dims: ClassVar[int] = 1

    def check_args(self) -> None:
        """Layer-specific argument checks (override)."""

    def fail(self, message: str) -> None:
        raise LayerError(f"{self.name}: {message}")

    # ---- the cost ------------------------------------------------------------
    def cost(self, *input_shapes: Sequence) -> Cost:
        """The cost of one call on inputs of the given shapes (default: symbolic)."""
        shapes = input_shapes or self.default_input_shapes()
        low, high = self.input_count()
        if not low <= len(shapes) <= high:
            self.fail(f"takes {how_many_inputs(low, high)}, got {len(shapes)}: "
                      + ", ".join("x".join(map(str, s)) for s in shapes))
        shapes = tuple(tuple(sympy.Integer(d) if isinstance(d, int) else d for d in s) for s in shapes)
        memo, key = _memo_of(self, shapes) if _MEMOS else (None, None)
        if key is not None and key in memo:
            return memo[key]
        for s in shapes:
            for d in s:
                if is_number(d) and d < 1:
                    self.fail(f"input sizes must be positive integers, got shape {tuple(s)}")
        out = replace(self._cost(*shapes), family=self.family, layer=self.name)
        if key is not None:
            memo[key] = out
        return out

    @classmethod
    def input_count(cls) -> tuple[int, float]:
        """(fewest, most) input shapes ``cost`` takes, read from ``_cost``'s signature (most: inf if variadic)."""
        if cls in _INPUT_COUNTS:  # per class: inspect.signature took a third of a trace's costing
            return _INPUT_COUNTS[cls]
        import inspect

        params = list(inspect.signature(cls._cost).parameters.values())[1:]
        low = sum(p.kind is p.POSITIONAL_OR_KEYWORD and p.default is p.empty for p in params)
        high = math.inf if any(p.kind is p.VAR_POSITIONAL for p in params) else len(params)
        _INPUT_COUNTS[cls] = low, high
        return low, high

    #: trailing inputs of ``_cost`` that only the tracer passes (the output shape it already knows): the command
    #: line and ``symcost.numbers`` refuse them rather than read a second input as the output
    tracer_inputs: ClassVar[int] = 0

    @classmethod
    def user_input_count(cls) -> tuple[int, float]:
        """(fewest, most) input shapes a user gives: ``input_count`` less the tracer-only ones."""
        low, high = cls.input_count()
        return low, high - cls.tracer_inputs

    def default_input_shapes(self) -> tuple[tuple, ...]:
        return self.default_inputs

    def _cost(self, *shapes) -> Cost:
        raise NotImplementedError

    def plain_args(self) -> dict:
        """The arguments as JSON-ready values: ints, lists, bools for numeric flags, strings for symbols."""
        def plain(v, flag: bool = False):
            if isinstance(v, tuple):
                return [plain(x) for x in v]
            if isinstance(v, sympy.Basic):
                if v.is_Integer:
                    return bool(v) if flag else int(v)
                return str(v)
            return v

        return {a.name: plain(self.values[a.name], a.kind == "flag") for a in self.args}

    def describe_args(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.values.items())

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.describe_args()})"
