"""The cache's file format: JSON holding plain data, sympy expressions and symcost's result types, nothing else.

A cache entry is data, never code: reading one builds only the types named here (``_OBJECTS``, ``_ENUMS``) and
sympy expressions made of the node types of ``_sympy_nodes`` from integers and symbol names (no string is parsed or
evaluated, no class is looked up by a name the file gives).  ``dumps`` raises ``Unencodable`` for any other value
(the caller then stores nothing: only slower); ``loads`` raises ``Damaged`` for anything it does not recognise
(the caller rebuilds the entry).
"""
from __future__ import annotations

import dataclasses
import json
from enum import Enum


class Unencodable(TypeError):
    """A value the format does not hold."""


class Damaged(ValueError):
    """Text that is not a value this format writes."""


#: symcost's result types an entry may hold: name -> the module defining it (imported only when an entry holds
#: one, so a cached sweep's plain summary is read without sympy)
_OBJECTS = {"ModelCost": "symcost.model", "Row": "symcost.model", "Cost": "symcost.cost", "Summary": "symcost.summary",
            "ConfigCost": "symcost.hyper", "Relation": "symcost.hyper.space", "Bound": "symcost.hyper.space"}
_ENUMS = {"RowKind": "symcost.model"}


def _known(table: dict, name: str):
    """The class ``name`` of ``table``, or None (only fixed module names are imported, never one from a file)."""
    import importlib

    module = table.get(name) if isinstance(name, str) else None
    return getattr(importlib.import_module(module), name) if module else None


def _sympy_nodes() -> dict:
    """The sympy node types a derivation is made of, by name; a node of any other type is not stored."""
    import sympy
    from sympy.core import relational
    from sympy.functions.elementary.piecewise import ExprCondPair

    from .exact import gcd

    nodes = (sympy.Add, sympy.Mul, sympy.Pow, sympy.floor, sympy.ceiling, sympy.Min, sympy.Max, sympy.Mod, gcd,
             sympy.Piecewise, ExprCondPair, sympy.And, sympy.Or, sympy.Not, relational.Equality,
             relational.Unequality, relational.LessThan, relational.StrictLessThan, relational.GreaterThan,
             relational.StrictGreaterThan)
    return {c.__name__: c for c in nodes}


_CACHE: dict = {}


def _table(name: str, make):
    if name not in _CACHE:
        _CACHE[name] = make()
    return _CACHE[name]


# ---- writing ----------------------------------------------------------------------------------------------------

def dumps(value) -> str:
    """``value`` as JSON text; ``Unencodable`` if it holds anything outside the format."""
    try:
        return json.dumps(_encode(value), separators=(",", ":"), allow_nan=False)
    except (ValueError, RecursionError) as e:  # a non-finite float, a cycle, a very deep value
        raise Unencodable(str(e)) from None


def _encode(v):
    if v is None or type(v) in (bool, int, str):  # exactly: an str Enum (RowKind) is written as its enum
        return v
    if type(v) is float:
        return {"float": repr(v)}
    if type(v) is list:
        return [_encode(x) for x in v]
    if type(v) is tuple:
        return {"tuple": [_encode(x) for x in v]}
    if type(v) is set:
        return {"set": [_encode(x) for x in v]}
    if type(v) is dict:
        return {"dict": [[_encode(k), _encode(x)] for k, x in v.items()]}
    import sys

    if "sympy" in sys.modules and isinstance(v, sys.modules["sympy"].Basic):
        return {"sympy": _encode_expr(v)}
    name = type(v).__name__
    if isinstance(v, Enum) and _known(_ENUMS, name) is type(v):
        return {"enum": name, "value": v.value}
    if name == "Totals" and type(v).__module__ == "symcost.model":
        return {"totals": v.convention, "values": _encode(dict(v))}
    if dataclasses.is_dataclass(v) and _known(_OBJECTS, name) is type(v):
        return {"object": name, "fields": {f.name: _encode(getattr(v, f.name)) for f in dataclasses.fields(v)}}
    raise Unencodable(f"a {type(v).__module__}.{type(v).__name__} is not stored in the cache")


def _encode_expr(e):
    import sympy

    if e is sympy.true or e is sympy.false:
        return [str(bool(e)).lower()]
    if e.is_Integer:
        return ["int", int(e)]
    if e.is_Rational:
        return ["rational", int(e.p), int(e.q)]
    if type(e) is sympy.Symbol:
        given = getattr(e, "_assumptions_orig", None) or e.assumptions0  # as the symbol was made (R: integer, positive)
        return ["symbol", e.name, {k: bool(v) for k, v in sorted(given.items()) if v is not None}]
    if type(e) is sympy.Dummy or not isinstance(e, tuple(_table("sympy", _sympy_nodes).values())) \
            or _table("sympy", _sympy_nodes).get(type(e).__name__) is not type(e):
        raise Unencodable(f"a sympy {type(e).__name__} is not stored in the cache")
    return [type(e).__name__, *(_encode_expr(a) for a in e.args)]


# ---- reading ----------------------------------------------------------------------------------------------------

def loads(text):
    """The value ``dumps`` wrote; ``Damaged`` for anything else (never a value of a type the format lacks)."""
    try:
        return decode(json.loads(text, parse_constant=_no_constant))
    except (ValueError, RecursionError) as e:
        raise Damaged(f"{type(e).__name__}: {e}") from None


def encode(value):
    """``value`` as JSON-ready data (``dumps`` without the text)."""
    return _encode(value)


def decode(data):
    """The value ``encode`` made of ``data``; ``Damaged`` for anything else."""
    try:
        return _decode(data)
    except Damaged:
        raise
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, RecursionError, OverflowError) as e:
        raise Damaged(f"{type(e).__name__}: {e}") from None


def _no_constant(name):
    raise Damaged(f"{name} is not written by symcost")


def _decode(v):
    if v is None or isinstance(v, (bool, str, int)):
        return v
    if isinstance(v, list):
        return [_decode(x) for x in v]
    if not isinstance(v, dict) or not v:
        raise Damaged(f"unexpected {type(v).__name__}")
    if len(v) == 1:
        (tag, payload), = v.items()
        if tag == "float" and isinstance(payload, str):
            return float(payload)
        if tag in ("tuple", "set") and isinstance(payload, list):
            items = [_decode(x) for x in payload]
            return tuple(items) if tag == "tuple" else set(items)
        if tag == "dict" and isinstance(payload, list):
            out = {}
            for pair in payload:
                if not isinstance(pair, list) or len(pair) != 2:
                    raise Damaged("a dict item is not a pair")
                out[_decode(pair[0])] = _decode(pair[1])
            return out
        if tag == "sympy":
            return _decode_expr(payload)
    if set(v) == {"enum", "value"} and _known(_ENUMS, v["enum"]) is not None:
        return _known(_ENUMS, v["enum"])(v["value"])
    if set(v) == {"totals", "values"} and isinstance(v["totals"], str):
        from .model import Totals

        return Totals(v["totals"], _decode(v["values"]))
    if set(v) == {"object", "fields"} and isinstance(v["fields"], dict):
        cls = _known(_OBJECTS, v["object"])
        if cls is None:
            raise Damaged(f"unknown object {v['object']!r}")
        names = [f.name for f in dataclasses.fields(cls)]
        if sorted(names) != sorted(v["fields"]):
            raise Damaged(f"the fields of a {v['object']} differ from symcost's")
        hints = _hints(cls)
        obj = object.__new__(cls)  # the fields as stored: no __post_init__ to run twice
        for name in names:
            value = _decode(v["fields"][name])
            if name in hints and not _fits(value, hints[name]):
                raise Damaged(f"{v['object']}.{name} is a {type(value).__name__}")
            object.__setattr__(obj, name, value)
        return obj
    raise Damaged(f"unknown value {sorted(v)!r}")


def _hints(cls) -> dict:
    """A dataclass's field types, where they resolve (``from __future__ import annotations`` keeps them as text)."""
    import typing

    key = f"hints {cls.__name__}"
    if key not in _CACHE:
        import sys

        try:
            _CACHE[key] = typing.get_type_hints(cls, vars(sys.modules[cls.__module__]))
        except Exception:  # noqa: BLE001  (a hint that does not resolve: its fields are not checked)
            _CACHE[key] = {}
    return _CACHE[key]


def _fits(value, hint) -> bool:
    """``value`` is of the type ``hint`` (outer types and list/dict items; anything else is not checked)."""
    import types
    import typing

    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is typing.Any or hint is object:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, a) for a in args)
    if hint is type(None):
        return value is None
    if origin is None:
        if not isinstance(hint, type):
            return True
        if hint is float:
            return isinstance(value, (int, float)) and not isinstance(value, bool)
        return isinstance(value, hint)
    if not isinstance(value, origin if isinstance(origin, type) else object):
        import collections.abc as abc

        return origin is abc.Mapping and isinstance(value, dict)
    if origin is list and args:
        return all(_fits(x, args[0]) for x in value)
    if origin is dict and len(args) == 2:
        return all(_fits(k, args[0]) and _fits(x, args[1]) for k, x in value.items())
    return True


def _decode_expr(node):
    import sympy

    if not isinstance(node, list) or not node or not isinstance(node[0], str):
        raise Damaged("an expression node is not [kind, ...]")
    kind, args = node[0], node[1:]
    if kind in ("true", "false") and not args:
        return sympy.true if kind == "true" else sympy.false
    if kind == "int" and len(args) == 1 and type(args[0]) is int:
        return sympy.Integer(args[0])
    if kind == "rational" and len(args) == 2 and all(type(a) is int for a in args) and args[1] > 0:
        return sympy.Rational(args[0], args[1])
    if kind == "symbol" and len(args) == 2 and isinstance(args[0], str) and isinstance(args[1], dict) \
            and all(isinstance(k, str) and isinstance(x, bool) for k, x in args[1].items()):
        return sympy.Symbol(args[0], **args[1])
    cls = _table("sympy", _sympy_nodes).get(kind)
    if cls is None:
        raise Damaged(f"unknown expression node {kind!r}")
    return cls(*(_decode_expr(a) for a in args))
