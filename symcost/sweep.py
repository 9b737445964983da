"""Assignments of the input symbols: ``--at R=224,225,193`` or ``--at R=64:1024:8`` (inclusive), several ``--at``
of different symbols giving their product, a symbol given again further points; and ``--assume-divisible`` to make
floors vanish."""
from __future__ import annotations

import itertools
import math

from .parse import UsageError

#: the most points one sweep evaluates (its values are built in memory: a range is counted before it is built)
MAX_POINTS = 100_000


def _too_many(what: str, n: int) -> UsageError:
    return UsageError(f"{what}: {n:,} points; at most {MAX_POINTS:,} are evaluated at once (use a coarser step)")


def parse_values(text: str) -> list[int]:
    text = text.strip()
    try:
        if ":" in text:
            parts = [int(p) for p in text.split(":")]
            if len(parts) not in (2, 3):
                raise ValueError
            start, stop, step = parts[0], parts[1], parts[2] if len(parts) == 3 else 1
            if step < 1 or stop < start:
                raise UsageError(f"range {text!r}: expected start:stop:step with start <= stop and step >= 1")
            if (stop - start) // step + 1 > MAX_POINTS:
                raise _too_many(f"range {text!r}", (stop - start) // step + 1)
            values = list(range(start, stop + 1, step))
        else:
            values = [int(p) for p in text.split(",") if p.strip()]
    except UsageError:
        raise
    except ValueError:
        raise UsageError(f"values {text!r}: expected integers like 224,225 or a range start:stop:step") from None
    if not values or any(v < 1 for v in values):
        raise UsageError(f"values {text!r}: sizes must be positive integers")
    return values


def _groups(specs: list[str], names: list[str] | None) -> list[dict[str, list[int]]]:
    """``["R=224,225", "H=1,W=2"]`` -> groups of name -> values (a symbol given again starts a new group);
    ``names``: the symbols allowed (None: any name, for a check made before the symbols are known).  At most
    ``MAX_POINTS`` points in all, counted before any is built."""
    groups: list[dict[str, list[int]]] = [{}]
    for spec in split_assignments(specs):
        name, sep, values = spec.partition("=")
        name = name.strip()
        if not sep:
            raise UsageError(f"--at {spec!r}: expected NAME=VALUES, e.g. R=224,225 or R=64:1024:8")
        if names is not None and name not in names:
            raise UsageError(f"--at {spec!r}: the input has no symbol {name!r} "
                             f"(its symbols: {', '.join(names) or 'none'})")
        if name in groups[-1]:  # a symbol given again: the points of a new group
            groups.append({})
        groups[-1][name] = parse_values(values)
    total = sum(math.prod(len(v) for v in g.values()) for g in groups)
    if total > MAX_POINTS:
        raise _too_many("--at " + " ".join(f"{n}=({len(v):,} values)" for g in groups for n, v in g.items()), total)
    return groups


def split_assignments(specs: list[str]) -> list[str]:
    """Each ``--at`` text split into its assignments: "H=224,W=193" is two, "R=224,225" one with two values."""
    import re

    return [part for spec in specs for part in re.split(r",(?=\s*[A-Za-z][A-Za-z0-9_]*\s*=)", spec)]


def check_assignments(specs: list[str]) -> None:
    """``--at`` well formed and within ``MAX_POINTS``, checked before a derivation that names its symbols."""
    _groups(specs, None)


def parse_assignments(specs: list[str], symbols: list) -> list[dict[str, int]]:
    """``["R=224,225"]`` -> [{"R": 224}, {"R": 225}]; every input symbol must get values.

    Assignments of different symbols combine by their product (``--at H=224 --at W=193,200``: two points); an
    assignment of a symbol that already has values starts a new group of points, so a repeated ``--at``
    accumulates points instead of replacing earlier ones (``--at P=5,N=8 --at P=17,N=20``: two points, ``--at
    R=224 --at R=225``: two).  Each group must give every symbol; duplicate points are kept once."""
    names = [str(s) for s in symbols]
    groups = _groups(specs, names)
    points: list[dict[str, int]] = []
    for given in groups:
        missing = [n for n in names if n not in given]
        if missing:
            where = f" (in the group {', '.join(f'{k}=…' for k in given)})" if len(groups) > 1 else ""
            raise UsageError(f"--at gives no values for {', '.join(missing)}{where}")
        for combo in itertools.product(*(given[n] for n in names)):
            point = dict(zip(names, combo))
            if point not in points:
                points.append(point)
    return points


def parse_trace_sizes(text: str, symbols: list) -> tuple[dict[str, int], dict[str, int]]:
    """``--trace-sizes H=241:209,W=225:193`` -> the two assignments a symbolic input is recorded at."""
    names = [str(s) for s in symbols]
    first: dict[str, int] = {}
    second: dict[str, int] = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        name, sep, pair = part.partition("=")
        values = pair.split(":")
        if not sep or len(values) != 2 or not all(v.strip().isdigit() and int(v) > 0 for v in values):
            raise UsageError(f"--trace-sizes {part!r}: expected NAME=A:B with two positive integers, e.g. H=241:209")
        if name.strip() not in names:
            raise UsageError(f"--trace-sizes {part!r}: the input has no symbol {name.strip()!r} "
                             f"(its symbols: {', '.join(names) or 'none'})")
        a, b = (int(v) for v in values)
        if a == b:
            raise UsageError(f"--trace-sizes {part!r}: the two sizes must differ")
        if name.strip() in first:
            raise UsageError(f"--trace-sizes {part!r}: {name.strip()} is given twice; give it once")
        first[name.strip()], second[name.strip()] = a, b
    missing = [n for n in names if n not in first]
    if missing:
        raise UsageError(f"--trace-sizes gives no sizes for {', '.join(missing)}")
    return first, second


def assume_divisible(expr, symbols, k: int):
    """The formula for inputs that are multiples of ``k``: substitute S = k*s, let sympy drop the floors,
    and write it back in S."""
    import sympy

    stand_in = {s: sympy.Symbol(f"{s}_div", integer=True, positive=True) for s in symbols}
    out = expr.xreplace({s: k * t for s, t in stand_in.items()})
    return sympy.expand(out.xreplace({t: s / k for s, t in stand_in.items()}))


def check_divisible(k: int, points: list[dict] | None) -> None:
    """Refuse ``--assume-divisible K`` when K is not positive or a requested size breaks the assumption (the
    simplified formula is wrong there: floors it dropped are not whole numbers)."""
    if k < 1:
        raise UsageError(f"--assume-divisible needs a positive integer, got {k}")
    for point in points or ():
        for name, value in point.items():
            if value % k:
                raise UsageError(f"--assume-divisible {k}: {name}={value} is not a multiple of {k}, so the simplified "
                                 f"formula does not hold there; drop --assume-divisible for exact values at any size")


def parse_range(text: str, symbols: list[str]) -> tuple[str, list[int]]:
    """``R=32:1024:32`` (inclusive) or ``R=224,256,288`` -> ("R", values); the name may be left out when the
    input has one symbol."""
    name, sep, values = text.partition("=")
    if not sep:
        name, values = (symbols[0] if len(symbols) == 1 else ""), text
        if not name:
            raise UsageError(f"--range {text!r}: expected NAME=START:STOP:STEP, e.g. R=32:1024:32")
    name = name.strip()
    if name not in symbols:
        raise UsageError(f"--range {text!r}: the input has no symbol {name!r} (its symbols: "
                         f"{', '.join(symbols) or 'none'})")
    try:
        xs = parse_values(values)
    except UsageError as e:
        raise UsageError(f"--range: {e}") from None
    if len(xs) < 2:
        raise UsageError(f"--range {text!r}: a plot needs at least two sizes")
    return name, xs
