"""Numbers for people: one unit (K, M, G, T) per column, named in the header, and grouped digits."""
from __future__ import annotations

import math

PREFIXES = ((1, ""), (10**3, "K"), (10**6, "M"), (10**9, "G"), (10**12, "T"))


def choose_unit(values) -> tuple[int, str]:
    """The unit for a column: the prefix that puts the column's typical (median nonzero) entry between 1 and 999,
    or the next larger one where the largest entry would need five digits before the point.  Columns of small
    integers (all below 10,000) stay unscaled."""
    nonzero = sorted(abs(v) for v in values if v)
    if not nonzero:
        return 1, ""
    typical = nonzero[len(nonzero) // 2]
    if max(nonzero) < 10**4:
        return 1, ""
    # the typical entry reads as 1 to 999 units; a larger prefix where the largest entry would need 5 digits
    k = min(max(int(math.floor(math.log10(typical) / 3)), 0), len(PREFIXES) - 1)
    while k < len(PREFIXES) - 1 and max(nonzero) >= 10**4 * PREFIXES[k][0]:
        k += 1
    return PREFIXES[k]


def grouped(n: int, sep: str = ",") -> str:
    return f"{n:,}".replace(",", sep)


def scaled(value: int, unit: int, digits: int = 2, sep: str = ",") -> str:
    """``value / unit`` with ``digits`` decimals and grouped thousands; exact zero is ``0``, a nonzero value
    that would print as zero is ``<0.01`` (so a small cost never reads as none)."""
    if value == 0:
        return "0"
    if unit == 1:
        return grouped(value, sep)
    x = value / unit
    if digits > 0 and abs(x) < 0.5 * 10**-digits:
        return ("-" if x < 0 else "") + "<" + f"{10**-digits:.{digits}f}"
    text = f"{x:,.{digits}f}"
    return text.replace(",", sep) if sep != "," else text
