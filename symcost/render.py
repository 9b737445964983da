"""Numbers and tables for people: the one formatter and the one table renderer every command uses.

Numbers: exact integers with grouped thousands (``4,089,184,256``); a formula as its string.  Scaled numbers use
the prefixes K, M, G, T for powers of 1000 -- uppercase K for every quantity, counts (MACs, params) and rates
(``FLOP/s``, ``B/s``) alike, as ML papers write thousands -- so a column and an axis read the same way.

Tables are rendered by rich, deterministically: no colour, no markup, no terminal-width truncation (a name stays
whole when piped), trailing spaces stripped.  Columns are separated by two spaces; a row of dashes under the header.
rich is imported when a table is drawn, so importing this module stays cheap.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

#: (scale, prefix) for powers of 1000
PREFIXES = ((1, ""), (10**3, "K"), (10**6, "M"), (10**9, "G"), (10**12, "T"))


# ---- numbers --------------------------------------------------------------------------------------------------

def count(v) -> str:
    """An exact count: ``1,234,567``; a formula (or anything not an int) as its string; None as ``-``."""
    if v is None:
        return "-"
    return f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else str(v)


def grouped(n: int, sep: str = ",") -> str:
    return f"{n:,}".replace(",", sep)


def prefix_for(x: float) -> tuple[int, str]:
    """The largest prefix at or below ``|x|`` (``(1, "")`` below 1000 or for 0)."""
    k = math.floor(math.log10(abs(x)) / 3) if x else 0
    return PREFIXES[min(max(k, 0), len(PREFIXES) - 1)]


def si(x: float, unit: str, digits: int = 3) -> str:
    """``x`` with a prefix and ``digits`` significant digits: ``si(9.9e14, "FLOP/s")`` is ``990 TFLOP/s``."""
    scale, prefix = prefix_for(x)
    return f"{x / scale:.{digits}g} {prefix}{unit}"


def seconds(s: float | None) -> str:
    """A duration in s, ms or us (3 decimals, 1 for us); None as ``-``."""
    if s is None:
        return "-"
    if s >= 1:
        return f"{s:.3f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.3f} ms"
    return f"{s * 1e6:.1f} us"


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
    k = PREFIXES.index(prefix_for(typical))
    while k < len(PREFIXES) - 1 and max(nonzero) >= 10**4 * PREFIXES[k][0]:
        k += 1
    return PREFIXES[k]


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


def scaled_total(value: int, unit: int, digits: int = 2, sep: str = ",") -> str:
    """A column's total: in the column's unit (``scaled``) while it reads as a few digits there; a total of a
    thousand units or more in its own prefix, named (``11.69M`` under a column of K, as a paper writes a model's
    11,689,512 parameters), not ``11,689.51``."""
    if unit == 1 or abs(value) < 1000 * unit:
        return scaled(value, unit, digits, sep)
    own, prefix = prefix_for(value)
    return scaled(value, own, digits, sep) + prefix


# ---- tables ---------------------------------------------------------------------------------------------------

def table(header: Sequence[str] | None, rows: Iterable[Sequence[str]], right: Iterable[int] = (),
          indent: int = 0) -> str:
    """Rows of strings as aligned columns: ``right`` holds the indices of right-aligned columns (numbers); no
    ``header`` gives a bare grid (label/value lines).  Every line is indented by ``indent`` spaces."""
    from io import StringIO

    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    rows = [[str(c) for c in r] for r in rows]
    ncols = len(header) if header is not None else max((len(r) for r in rows), default=0)
    if ncols == 0:
        return ""
    body = [list(header), ["-" * max(len(r[i]) for r in [header, *rows]) for i in range(ncols)], *rows] \
        if header is not None else rows
    right = set(right)
    grid = Table(box=None, show_header=False, show_edge=False, pad_edge=False, padding=(0, 2, 0, 0),
                 highlight=False, expand=False)
    for i in range(ncols):
        grid.add_column(justify="right" if i in right else "left", no_wrap=True, overflow="fold")
    for r in body:
        grid.add_row(*(Text(c) for c in r))  # Text: brackets such as [torch] are not rich markup
    width = sum(max(len(r[i]) if i < len(r) else 0 for r in body) + 2 for i in range(ncols)) + 1
    out = StringIO()
    console = Console(file=out, width=width, color_system=None, force_terminal=False, force_jupyter=False,
                      force_interactive=False, no_color=True, highlight=False, markup=False, emoji=False,
                      legacy_windows=False, soft_wrap=False)
    console.print(grid)
    pad = " " * indent
    return "\n".join(pad + line.rstrip() for line in out.getvalue().splitlines())


def pairs(rows: Iterable[tuple[str, str]], indent: int = 0) -> str:
    """``label  value`` lines, the labels padded to one width (a formula's or an evaluation's fields)."""
    return table(None, rows, indent=indent)
