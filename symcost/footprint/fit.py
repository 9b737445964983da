"""What fits: the largest value of one symbol at which the peak stays within a number of bytes.

The peak is a ``Max`` of sums of products of sizes with positive coefficients.  Where each size is shown
nondecreasing in the symbol (``derive.nondecreasing``: sums, positive multiples, floors) and >= 0 from the symbol's
least value on, the peak is nondecreasing in it, and a doubling search then bisection finds the largest value
exactly (integers throughout).  Otherwise the search is refused, with the reason.
"""
from __future__ import annotations

import re

import sympy

from ..errors import UsageError
from .derive import nondecreasing

_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def parse_bytes(text: str) -> int:
    """``80GB`` (10**9 bytes each), ``80GiB`` (2**30), ``1.5TB``, ``123456`` -> bytes (an integer: a fraction of a
    byte is refused)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?i?B?)\s*", text or "", flags=re.IGNORECASE)
    if not m or m.group(2).upper() not in _UNITS:
        raise UsageError(f"bytes {text!r}: expected a number with an optional unit, e.g. 80GB, 80GiB or 2e9 written "
                         "out (units: B, KB, MB, GB, TB in powers of 1000; KiB, MiB, GiB, TiB in powers of 1024)")
    number, unit = m.group(1), m.group(2).upper()
    whole, _, frac = number.partition(".")
    scale = _UNITS[unit]
    value = int(whole) * scale + (int(frac) * scale // 10 ** len(frac) if frac else 0)
    if frac and int(frac) * scale % 10 ** len(frac):
        raise UsageError(f"bytes {text!r} is not a whole number of bytes")
    return value


def fit(mem, symbol: str, budget: int, values: dict) -> dict:
    """The largest value of ``symbol`` (the others at ``values``) whose peak is at most ``budget`` bytes:
    ``{"symbol", "value", "peak", "next_value", "next_peak", "peak_op"}``; ``value`` None where even the least value
    does not fit, ``next_value`` None where the domain ends there."""
    names = {str(s): s for s in mem.symbols}
    if symbol not in names:
        raise UsageError(f"--fit solves for a symbol of the input; {symbol!r} is none of "
                         f"{', '.join(names) or '(none: the input is concrete)'}")
    missing = [n for n in names if n != symbol and n not in values]
    if missing:
        raise UsageError(f"--fit solves for {symbol}: give the others with --at ({', '.join(missing)})")
    s = names[symbol]
    subs = {names[n]: sympy.Integer(int(v)) for n, v in values.items() if n in names and n != symbol}
    candidates = [e.xreplace(subs) for _, e in mem.peaks]
    resident = sympy.sympify(mem.resident).xreplace(subs)
    low, high = _range(mem.domain, s, subs)
    for e in candidates + [resident]:
        reason = _why_not_monotone(sympy.sympify(e), s, low)
        if reason:
            raise UsageError(f"--fit: the peak is not shown nondecreasing in {symbol} ({reason}); evaluate it with "
                             f"--at {symbol}=... instead")

    def peak(v: int) -> int:
        x = {s: sympy.Integer(v)}
        return max(int(e.xreplace(x)) for e in candidates) + int(resident.xreplace(x))

    out = {"symbol": symbol, "budget": budget, "least": low, "most": high}
    if peak(low) > budget:
        out.update(value=None, peak=None, next_value=low, next_peak=peak(low))
        return out
    lo, hi = low, low  # peak(lo) <= budget
    while high is None or hi < high:
        step = hi * 2 if high is None else min(hi * 2, high)
        if peak(step) > budget:
            hi = step
            break
        lo = hi = step
    else:
        out.update(value=lo, peak=peak(lo), next_value=None, next_peak=None)
        return out
    while hi - lo > 1:  # peak(lo) <= budget < peak(hi)
        mid = (lo + hi) // 2
        if peak(mid) <= budget:
            lo = mid
        else:
            hi = mid
    out.update(value=lo, peak=peak(lo), next_value=lo + 1, next_peak=peak(lo + 1))
    return out


def _range(domain, s, subs: dict) -> tuple[int, int | None]:
    """The least and the most value of ``s`` in the domain (None: no most), the other symbols at ``subs``."""
    low, high = 1, None
    for d in domain:
        d = d.xreplace(subs)
        if s not in d.free_symbols:
            if d.free_symbols or int(d) < 1:
                raise UsageError(f"--fit: the values given lie outside the formulas' domain ({d} >= 1)")
            continue
        if nondecreasing(d, s):
            while int(d.xreplace({s: sympy.Integer(low)})) < 1:
                low += 1
                if low > 1 << 20:
                    raise UsageError(f"--fit: no value of {s} satisfies {d} >= 1")
        elif nondecreasing(-d, s) or nondecreasing(sympy.expand(-d), s):
            # nonincreasing: the largest value where it is >= 1, by doubling then bisection
            lo, hi = 0, 1
            while int(d.xreplace({s: sympy.Integer(hi)})) >= 1:
                lo, hi = hi, hi * 2
            while hi - lo > 1:
                mid = (lo + hi) // 2
                lo, hi = (mid, hi) if int(d.xreplace({s: sympy.Integer(mid)})) >= 1 else (lo, mid)
            high = lo if high is None else min(high, lo)
        else:
            raise UsageError(f"--fit: the domain condition {d} >= 1 is neither nondecreasing nor nonincreasing in {s}")
    if high is not None and high < low:
        raise UsageError(f"--fit: no value of {s} lies in the formulas' domain")
    return low, high


def _why_not_monotone(e, s, low: int) -> str | None:
    """None where ``e`` is a sum of terms, each a positive coefficient times factors nondecreasing in ``s`` and
    >= 0 from ``low`` on; else what fails."""
    for term in sympy.Add.make_args(e):
        coef, rest = term.as_coeff_Mul()
        if s not in rest.free_symbols:
            continue
        if coef <= 0:
            return f"the term {term} has a negative coefficient"
        for factor in sympy.Mul.make_args(rest):
            if s not in factor.free_symbols:
                if not factor.is_number and factor.free_symbols:
                    return f"the factor {factor} is not a number"
                continue
            base, exp = factor.as_base_exp()
            if not (exp.is_Integer and exp > 0 and nondecreasing(base, s)):
                return f"the factor {factor} is not shown nondecreasing"
            if int(base.xreplace({s: sympy.Integer(low)})) < 0:
                return f"the factor {factor} is negative at {s} = {low}"
    return None
