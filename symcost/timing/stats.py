"""Rank correlation: how well a prediction orders the layers."""
from __future__ import annotations

import math
from typing import Mapping, Sequence


def rankdata(xs: Sequence[float]) -> list[float]:
    """Ranks 1..n, ties given the mean of the ranks they span (as ``scipy.stats.rankdata``)."""
    order = sorted(range(len(xs)), key=lambda i: xs[i])
    ranks = [0.0] * len(xs)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and xs[order[j + 1]] == xs[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def pearson(x: Sequence[float], y: Sequence[float]) -> float | None:
    n = len(x)
    if n != len(y):
        raise ValueError(f"pearson: {n} and {len(y)} values")
    if n < 2:
        return None
    mx, my = sum(x) / n, sum(y) / n
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y))
    sxx = sum((a - mx) ** 2 for a in x)
    syy = sum((b - my) ** 2 for b in y)
    if sxx == 0 or syy == 0:
        return None
    return max(-1.0, min(1.0, sxy / math.sqrt(sxx * syy)))


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman's rank correlation (Pearson's r of the tie-averaged ranks), in [-1, 1].

    ``None`` when it is undefined: fewer than two pairs, or one side constant."""
    return pearson(rankdata(list(x)), rankdata(list(y)))


def shares(values: Mapping[str, float]) -> dict[str, float]:
    """Each value's fraction of their sum (0 for all when the sum is 0)."""
    total = sum(values.values())
    return {k: (v / total if total else 0.0) for k, v in values.items()}
