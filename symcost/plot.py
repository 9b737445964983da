"""Plots of a model's cost against its input size, from one symbolic derivation per model.

Each curve is the model's closed-form total (``ModelCost.lambdified``) evaluated over a NumPy array of sizes --
never a trace or a counter per point -- and points outside the model's domain (``ModelCost.valid``: some tensor
would shrink below one element) are left out with a note.  Files are PNG, PDF or SVG by suffix, written with the
Agg backend and without timestamps or version strings, so the same inputs give the same bytes.

matplotlib and numpy are imported inside the functions: importing this module stays cheap.
"""
from __future__ import annotations

from pathlib import Path

METRICS = ("params", "macs", "flops", "reads", "writes")
SUFFIXES = (".png", ".pdf", ".svg")
FIGSIZE = (8.0, 5.0)
DPI = 120


def metric_label(metric: str, convention: str) -> tuple[str, str]:
    """(axis name, unit noun) for a metric."""
    return {
        "params": ("Parameters", ""),
        "macs": ("MACs", ""),
        "flops": (f"FLOPs [{convention}]", ""),
        "reads": ("Reads", "elements"),
        "writes": ("Writes", "elements"),
        "traffic": ("Reads + writes", "elements"),
    }[metric]


def axis_unit(maximum: float) -> tuple[int, str]:
    from .render import prefix_for

    return prefix_for(maximum) if maximum > 0 else (1, "")


def axis_title(metric: str, convention: str, maximum: float) -> tuple[str, int]:
    name, noun = metric_label(metric, convention)
    unit, prefix = axis_unit(maximum)
    inside = " ".join(p for p in (prefix, noun) if p)
    return (f"{name} ({inside})" if inside else name), unit


def default_input_size(target: str) -> tuple | None:
    """``targets.default_input_size`` (timm's ``input_size``, a Hugging Face config's ``max_position_embeddings``,
    torchvision's weights), cached beside the derivations: importing a model library to read one number costs
    seconds."""
    from . import cache
    from .targets import default_input_size as uncached

    key = cache.cache_key(target, "default_input_size", False, "")
    hit = cache.load(key, "size")
    if isinstance(hit, tuple) or hit == "none":
        return None if hit == "none" else hit
    try:
        size = uncached(target)
    except Exception:  # noqa: BLE001  (a library missing or a registry it cannot read: no default, no marker)
        size = None
    cache.store(key, {"size": "none" if size is None else tuple(int(v) for v in size)})
    return size


def marker_label(targets) -> str:
    """What the marked size is, in a plot's legend: the weights' input size for image models, the context length
    (``max_position_embeddings``) for Hugging Face models."""
    from .targets import Target

    kinds = {"hf" if Target.of(t).is_hf else "image" for t in targets}
    return {frozenset({"hf"}): "the config's max_position_embeddings",
            frozenset({"image"}): "the weights' input size"}.get(frozenset(kinds), "the model's default input size")


def default_size(target: str, shape=(1, 3, "R", "R"), symbol: str = "R") -> int | None:
    """The value ``symbol`` of the input ``shape`` takes at the input size ``target`` was made for
    (``default_input_size``, its dims lined up with the shape's last ones: 1x3xRxR and (3, 288, 288) give
    R = 288; 1xL and GPT-2's (1024,) give L = 1024), or None when the target has no default or the symbol sits
    where it gives no single value."""
    size = default_input_size(target)
    if not size:
        return None
    dims = tuple(str(d) if not isinstance(d, int) else d for d in shape)
    if len(dims) < len(size):
        return None
    tail = dims[len(dims) - len(size):]
    values = {v for d, v in zip(tail, size) if d == str(symbol)}
    if str(symbol) in dims[:len(dims) - len(size)] or len(values) != 1:
        return None  # the symbol is the batch, or two dims of different defaults
    if any(isinstance(d, int) and d != v for d, v in zip(tail, size)):
        return None  # the shape is not the model's input (1x3xRxR for a token model, a different channel count)
    return values.pop()


def evaluate(mc, xs, metric: str, convention: str):
    """(sizes inside the domain, the metric there, sizes skipped): one vectorised call of the formula."""
    import numpy as np

    xs = np.asarray(xs, dtype=np.int64)
    if len(mc.symbols) != 1:
        raise ValueError(f"a plot needs exactly one input symbol; the derivation has {len(mc.symbols)}")
    ok = np.asarray(mc.valid(xs), dtype=bool)
    good = xs[ok]
    values = mc.lambdified(convention, metrics=(metric,))(good)[metric] if good.size else np.zeros(0, np.int64)
    return good, values, xs[~ok]


def skipped_note(label: str, symbol: str, skipped, total: int) -> str:
    shown = ", ".join(str(int(v)) for v in skipped[:6]) + (", …" if len(skipped) > 6 else "")
    return (f"{label}: {len(skipped)} of {total} sizes outside the model's domain (a tensor would have fewer than "
            f"one element), skipped: {symbol}={shown}")


def _figure(title: str, figsize=FIGSIZE, ncols: int = 1):
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, ncols, figsize=figsize, dpi=DPI)
    for ax in (axes if ncols > 1 else [axes]):
        ax.grid(True, which="major", alpha=0.3)
    if ncols > 1:
        fig.suptitle(title, fontsize=11)
    else:
        axes.set_title(title, fontsize=11)
    return fig, axes


def literal(name: str) -> str:
    """A model's name as matplotlib text: a ``$`` in it is a dollar sign, not the start of mathtext (which would
    fail to parse, or typeset the name as math)."""
    return str(name).replace("$", r"\$")


def figure(title: str, figsize=FIGSIZE, ncols: int = 1):
    """A figure (Agg backend) of ``ncols`` axes side by side, gridded; for ``draw_*`` and ``save``."""
    return _figure(title, figsize, ncols)


def save(fig, out) -> Path:
    """Write ``fig`` to ``out`` (PNG, PDF or SVG by suffix) with no timestamps or version strings."""
    import matplotlib
    import matplotlib.pyplot as plt

    out = Path(out)
    suffix = out.suffix.lower()
    metadata = {".png": {"Software": None},
                ".pdf": {"Creator": None, "Producer": None, "CreationDate": None},
                ".svg": {"Creator": None, "Date": None}}[suffix]
    with matplotlib.rc_context({"svg.hashsalt": "symcost", "pdf.compression": 9}):
        fig.savefig(out, format=suffix[1:], metadata=metadata, dpi=DPI)
    plt.close(fig)
    return out


def draw_models(ax, models: list, symbol: str, xs, metric: str, convention: str, *, logx: bool = False,
                logy: bool = False, defaults: dict | None = None, shape_text: str = "",
                marker_label: str = "the weights' input size") -> list[str]:
    """One curve per (label, ModelCost) on ``ax``; ``defaults``: label -> input size to mark (``marker_label``
    in the legend).  Returns notes."""
    import numpy as np

    notes, curves = [], []
    for label, mc in models:
        good, values, skipped = evaluate(mc, xs, metric, convention)
        if skipped.size:
            notes.append(skipped_note(label, symbol, skipped, len(xs)))
        if good.size:
            curves.append((label, mc, good, values))
    if not curves:
        raise ValueError(f"no size in the range is inside any model's domain ({symbol}={int(np.min(xs))}…"
                         f"{int(np.max(xs))})")
    maximum = max(float(v.max()) for *_, v in curves)
    ytitle, unit = axis_title(metric, convention, maximum)
    lo, hi = int(np.min(xs)), int(np.max(xs))
    marker = None
    for i, (label, mc, good, values) in enumerate(curves):
        color = f"C{i % 10}"
        ax.plot(good, values / unit, label=literal(label), color=color, linewidth=1.6)
        size = (defaults or {}).get(label)
        if size is not None and lo <= size <= hi and bool(mc.valid(np.array([size]))[0]):
            v = mc.lambdified(convention, metrics=(metric,))(np.array([size]))[metric][0]
            marker = ax.plot([size], [v / unit], "o", color=color, markeredgecolor="black", markersize=6,
                             zorder=5)[0]
    sizes = {s for s in (defaults or {}).values() if s is not None and lo <= s <= hi}
    if len(sizes) == 1:
        s = sizes.pop()
        ax.axvline(s, color="0.5", linestyle=":", linewidth=1)
        ax.annotate(f"{symbol}={s}", (s, 0), xycoords=("data", "axes fraction"), xytext=(3, 4),
                    textcoords="offset points", fontsize=8, color="0.35")
    _axes(ax, symbol, shape_text, ytitle, logx, logy)
    handles, labels = ax.get_legend_handles_labels()
    if marker is not None:
        from matplotlib.lines import Line2D

        handles.append(Line2D([], [], marker="o", linestyle="", color="white", markeredgecolor="black"))
        labels.append(marker_label)
    ax.legend(handles, labels, fontsize=9, framealpha=0.9, edgecolor="none")
    return notes


def plot_models(models: list, symbol: str, xs, metric: str, convention: str, out, *, logx: bool = False,
                logy: bool = False, defaults: dict | None = None, shape_text: str = "", title: str | None = None,
                marker_label: str = "the weights' input size"):
    """One curve per (label, ModelCost), saved to ``out``.  Returns the notes."""
    name = metric_label(metric, convention)[0]
    fig, ax = _figure(title or f"{name} vs input size" + (f" (input {shape_text})" if shape_text else ""))
    notes = draw_models(ax, models, symbol, xs, metric, convention, logx=logx, logy=logy, defaults=defaults,
                        shape_text=shape_text, marker_label=marker_label)
    fig.tight_layout()
    save(fig, out)
    return notes


def draw_breakdown(ax, label: str, mc, symbol: str, xs, metric: str, convention: str, *, logx: bool = False,
                   logy: bool = False, default: int | None = None, shape_text: str = "",
                   metrics: tuple | None = None) -> list[str]:
    """A stacked area of one model's cost by layer family (``ModelCost.by_family``) on ``ax``; each family's
    legend entry gives its share at ``default`` (or at the largest size).  ``metrics`` sums several metrics
    (("reads", "writes"): memory traffic).  Returns the notes."""
    import numpy as np
    import sympy

    metrics = metrics or (metric,)
    notes = []
    good, _, skipped = evaluate(mc, xs, metrics[0], convention)
    if skipped.size:
        notes.append(skipped_note(label, symbol, skipped, len(xs)))
    if not good.size:
        raise ValueError(f"no size in the range is inside {label}'s domain")
    families: dict = {}
    for m in metrics:
        for fam, expr in mc.by_family(convention, m).items():
            families[fam] = families.get(fam, sympy.Integer(0)) + expr
    at = default if default is not None and good.min() <= default <= good.max() else int(good.max())
    series, share = {}, {}
    for fam, expr in families.items():
        f = sympy.lambdify(mc.symbols, expr, modules="numpy")
        grid = np.append(good, at)
        v = np.rint(np.broadcast_to(np.asarray(f(grid), dtype=np.float64), grid.shape))
        if np.any(v != 0):
            series[fam or "other"], share[fam or "other"] = v[:-1], v[-1]
    if not series:
        raise ValueError(f"{label}: {metric} is zero at every size")
    order = sorted(series, key=lambda k: -series[k][-1])
    total = sum(series.values())
    whole = sum(share.values()) or 1
    ytitle, unit = axis_title("traffic" if len(metrics) > 1 else metric, convention, float(total.max()))
    colors = [f"C{i % 10}" for i in range(len(order))]
    labels = [f"{k} ({_percent(share[k] / whole)} at {symbol}={at})" for k in order]
    ax.stackplot(good, *[series[k] / unit for k in order], labels=labels, colors=colors, alpha=0.85)
    if default is not None and good.min() <= default <= good.max():
        ax.axvline(default, color="0.3", linestyle=":", linewidth=1)
        ax.annotate(f"default {symbol}={default}", (default, 0), xycoords=("data", "axes fraction"),
                    xytext=(3, 4), textcoords="offset points", fontsize=8, color="0.3")
    _axes(ax, symbol, shape_text, ytitle, logx, logy)
    handles, names = ax.get_legend_handles_labels()
    ax.legend(handles[::-1], names[::-1], fontsize=8.5, loc="upper left", framealpha=0.9, edgecolor="none")
    return notes


def plot_breakdown(label: str, mc, symbol: str, xs, metric: str, convention: str, out, *, logx: bool = False,
                   logy: bool = False, default: int | None = None, shape_text: str = "", title: str | None = None):
    """``draw_breakdown`` in a figure of its own, saved to ``out``.  Returns the notes."""
    name = metric_label(metric, convention)[0]
    fig, ax = _figure(title or f"{literal(label)}: {name} by layer family"
                      + (f" (input {shape_text})" if shape_text else ""))
    notes = draw_breakdown(ax, label, mc, symbol, xs, metric, convention, logx=logx, logy=logy, default=default,
                           shape_text=shape_text)
    fig.tight_layout()
    save(fig, out)
    return notes


def plot_scatter(points: list, out, *, xlabel: str, ylabel: str, title: str, lines=(1, 10, 100),
                 line_scale: float = 1.0, line_unit: str = "", figsize=FIGSIZE, footnote: str = ""):
    """Labelled points (label, x, y[, (dx, dy, ha) of the label]) on log-log axes, with dashed lines
    y = k * line_scale * x for k in ``lines`` (constant ratio, e.g. arithmetic intensity), saved to ``out``."""
    import numpy as np

    fig, ax = _figure(title, figsize)
    xs = np.array([p[1] for p in points], dtype=float)
    ys = np.array([p[2] for p in points], dtype=float)
    import matplotlib

    cmap = matplotlib.colormaps["tab10" if len(points) <= 10 else "tab20"]
    for i, (label, x, y, *place) in enumerate(points):
        dx, dy, ha = place[0] if place else (6, 3, "left")
        ax.plot([x], [y], "o", color=cmap(i % cmap.N), markersize=7, markeredgecolor="black", zorder=5)
        ax.annotate(label, (x, y), xytext=(dx, dy), textcoords="offset points", fontsize=8.5, zorder=6, ha=ha)
    ax.set_xscale("log")
    ax.set_yscale("log")
    x0, x1 = xs.min() / 2, xs.max() * 3
    y0, y1 = ys.min() / 3, ys.max() * 3
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    grid = np.geomspace(x0, x1, 50)
    for k in lines:
        ax.plot(grid, grid * k * line_scale, linestyle="--", color="0.6", linewidth=0.8, zorder=1)
        xe = min(x1, y1 / (k * line_scale))      # where the line leaves the box
        if x0 < xe and y0 < xe * k * line_scale:
            ax.annotate(f"{k:g} {line_unit}".strip(), (xe, xe * k * line_scale), xytext=(-4, -12),
                        textcoords="offset points", fontsize=7.5, color="0.45", ha="right")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if footnote:
        fig.text(0.01, 0.01, footnote, fontsize=7.5, color="0.4", ha="left", va="bottom")
    fig.tight_layout(rect=(0, 0.03 if footnote else 0, 1, 1))
    save(fig, out)


def _percent(x: float) -> str:
    return "<0.1%" if 0 < x < 0.0005 else f"{100 * x:.1f}%"


def _axes(ax, symbol, shape_text, ytitle, logx, logy):
    ax.set_xlabel(f"{symbol}" + (f"  (input {shape_text})" if shape_text else ""))
    ax.set_ylabel(ytitle)
    if logx:
        ax.set_xscale("log", base=2)
    if logy:
        ax.set_yscale("log")
    else:
        ax.set_ylim(bottom=0)
