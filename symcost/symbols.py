"""Every size symbol symcost uses, declared once (as ``sympy.abc`` does).

Sizes are positive integers; paddings and the bias flag may be zero, so they
are nonnegative integers.  The names print well in LaTeX (``C_in`` -> ``C_{in}``).
"""
from __future__ import annotations

import sympy

from .symbol_names import is_symbol_name



def size(name: str) -> sympy.Symbol:
    """A positive-integer size symbol."""
    return sympy.Symbol(name, integer=True, positive=True)


def offset(name: str) -> sympy.Symbol:
    """A nonnegative-integer symbol (padding, output padding, a 0/1 flag)."""
    return sympy.Symbol(name, integer=True, nonnegative=True)


def user_symbol(name: str) -> sympy.Symbol:
    """A symbol named by the user, validated so no string is ever evaluated."""
    if not is_symbol_name(name):
        raise ValueError(f"{name!r} is not a valid symbol name (letters, digits, '_', starting with a letter)")
    return size(name)


N = size("N")            # batch
C_in, C_out = size("C_in"), size("C_out")
L, D, H, W = size("L"), size("D"), size("H"), size("W")
F_in, F_out = size("F_in"), size("F_out")
g = size("g")            # groups
b = offset("b")          # bias flag: 1 with bias, 0 without
E, h = size("E"), size("h")   # embed dim, heads
S = size("S")            # key/value sequence length
V = size("V")            # vocabulary size
M, K, P = size("M"), size("K"), size("P")  # matmul (M x K) @ (K x P)

#: spatial size symbols by number of spatial dims (conv1d uses L; 3d uses D, H, W)
SPATIAL = {1: (L,), 2: (H, W), 3: (D, H, W)}
_AXIS = {1: ("",), 2: ("h", "w"), 3: ("d", "h", "w")}


def per_axis(prefix: str, dims: int, *, nonnegative: bool = False) -> tuple[sympy.Symbol, ...]:
    """``per_axis("K", 2)`` -> (K_h, K_w); for one dim just (K,)."""
    make = offset if nonnegative else size
    return tuple(make(f"{prefix}_{a}" if a else prefix) for a in _AXIS[dims])
