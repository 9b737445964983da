"""Measuring a real forward pass on this machine: per traced row and whole, with the regime stated.

Per row: a forward pre-hook and a forward hook on each traced module; functional rows (``x + identity``) timed
around each aten call by a ``TorchDispatchMode``; the whole forward without hooks.  Warm-up passes first, then
repeats, summarised by their median or minimum; the notes warn when the machine is loaded or when the sum of the
layers and the whole forward disagree by more than 25 %.
"""
from __future__ import annotations

import os
import platform
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

from .dtypes import torch_dtype
from ..progress import Progress

#: the sum of the layers and the whole forward may differ by this much before a note says so
DISAGREEMENT = 0.25


def regime() -> dict:
    """Where measurements run: the CPU, the thread count, torch's version."""
    import torch

    return {"device": "cpu", "cpu": cpu_name(), "threads": torch.get_num_threads(),
            "interop_threads": torch.get_num_interop_threads(), "logical_cpus": os.cpu_count(),
            "torch": torch.__version__, "python": platform.python_version()}


def threads_text(n) -> str:
    return f"{n} thread" + ("" if n == 1 else "s")


def regime_text(r: Mapping, dtype: str = "fp32") -> str:
    return f"CPU ({r.get('cpu', '?')}), {threads_text(r.get('threads', '?'))}, {dtype}, torch {r.get('torch', '?')}"


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def last_level_cache_bytes(root: str | os.PathLike = "/sys/devices/system/cpu/cpu0/cache") -> int:
    """The largest CPU cache's size (Linux sysfs: ``index*/size`` such as ``32768K``), 0 where it cannot be read."""
    sizes = []
    for f in Path(root).glob("index*/size"):
        try:
            text = f.read_text().strip().upper()
        except OSError:
            continue
        scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
        digits = text.rstrip("KMG")
        if digits.isdigit():
            sizes.append(int(digits) * scale)
    return max(sizes, default=0)


def keep_freed_memory() -> bool:
    """Stop glibc's malloc from handing freed memory back to the operating system, for this process.

    By default glibc serves large blocks (above a threshold that starts at 128 KiB) with ``mmap`` and unmaps them
    when freed, and trims the heap top: a forward pass then allocates its activations as fresh pages, and every
    first touch is a page fault (the kernel zeroes each 4 KiB page).  On a virtual machine that costs
    milliseconds per forward at batch 32 and varies with the host's load: neither the roofline nor the model's
    arithmetic has anything to do with it.  ``mallopt`` raises the ``mmap`` threshold to its 32 MiB maximum and
    stops trimming (what the ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` environment variables do at
    start-up, and what jemalloc or tcmalloc deployments get anyway).  Returns whether it took effect (False off
    glibc).  It cannot be undone within the process.
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3
    return all(mallopt(k, v) == 1 for k, v in ((m_mmap_threshold, 32 << 20), (m_trim_threshold, 1 << 30),
                                               (m_top_pad, 64 << 20)))


def page_faults() -> int | None:
    """Minor page faults of this process so far (``None`` where ``resource`` is unavailable)."""
    try:
        import resource
    except ImportError:
        return None
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


#: how the samples of one timing are summarised: the median (the typical time) or the minimum (the time least
#: disturbed by other work: on a shared machine, interference only ever adds time)
STATS: dict[str, Callable[[Sequence[float]], float]] = {"median": statistics.median, "min": min}


@dataclass
class Measurement:
    """Times of a real forward pass, per traced row (``None`` where a row could not be timed): the ``stat``
    (median or min) of ``repeats`` samples each."""

    per_row: list[float | None]
    forward_s: float            # the whole forward pass, no hooks
    repeats: int
    method: str
    regime: dict
    notes: list[str] = field(default_factory=list)
    samples: dict = field(default_factory=dict)   # row index -> every sample (seconds)
    stat: str = "median"
    faults_per_forward: float | None = None       # minor page faults per hookless forward pass (median)

    @property
    def layers_s(self) -> float:
        return sum(t for t in self.per_row if t is not None)


def measure_forward(model, x, repeats: int = 10, warmup: int = 2, stat: str = "median") -> tuple[float, list[float]]:
    """Seconds of ``model(x)`` (eval, no grad): the ``stat`` of ``repeats`` samples after ``warmup``."""
    import torch

    model.eval()
    with torch.no_grad():
        for _ in range(warmup):
            model(x)
        samples = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(x)
            samples.append(time.perf_counter() - t0)
    return STATS[stat](samples), samples


def measure_layers(model, mc, input_shape: Sequence[int], dtype: str = "fp32", repeats: int = 10,
                   warmup: int = 2, seed: int = 0, progress: Progress | None = None,
                   stat: str = "median") -> Measurement:
    """Time every row of ``mc`` (the trace of ``model``) on a real forward pass on this CPU.

    * module rows: ``time.perf_counter`` between a forward pre-hook and a forward hook on that very module
      (in place, with the caches as the forward leaves them); a module called k times has k rows, matched in
      call order.
    * functional rows (``x + identity`` in a forward): a ``TorchDispatchMode`` times each aten op that runs
      outside every hooked module, keyed like the trace's row names (innermost module, ``:``, op), in order.
    * the whole forward, without hooks or modes, for the total.

    The three kinds of pass alternate within each repeat, so slow drift on a shared machine hits them alike;
    every figure is the ``stat`` (median or min) of ``repeats`` samples.  ``model`` is put in eval mode and
    converted to ``dtype``.
    """
    import torch

    p = progress or Progress("measuring", enabled=False)
    if stat not in STATS:
        raise ValueError(f"unknown statistic {stat!r}; choose one of: {', '.join(STATS)}")
    summarise = STATS[stat]
    tdt = torch_dtype(dtype)
    model.eval()
    model.to(tdt)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*[int(d) for d in input_shape], generator=g).to(tdt)
    names = {id(m): (n or "(model)") for n, m in model.named_modules()}
    by_name = {(n or "(model)"): m for n, m in model.named_modules()}

    rows = [r for r in mc.rows if r.is_call]
    module_rows: dict[str, list[int]] = {}
    func_rows: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        (func_rows if r.functional else module_rows).setdefault(r.name, []).append(i)
    notes = []
    missing = sorted(n for n in module_rows if n not in by_name)
    if missing:
        notes.append(f"{len(missing)} traced module(s) not found in the model: {', '.join(missing[:3])}")
    hooked = {n: by_name[n] for n in module_rows if n in by_name}

    module_timer = _ModuleTimer(hooked)
    op_timer = _op_timer(names, {id(m) for m in hooked.values()}, func_rows) if func_rows else None
    per_sample: dict[int, list[float]] = {i: [] for i in range(len(rows))}
    forward: list[float] = []
    faults: list[int] = []
    bad: set[str] = set()
    with torch.no_grad():
        for _ in range(warmup):
            model(x)
        for rep in range(repeats):
            p.update(f"repeat {rep + 1} of {repeats}")
            f0 = page_faults()
            t0 = time.perf_counter()
            model(x)
            forward.append(time.perf_counter() - t0)
            if f0 is not None:
                faults.append(page_faults() - f0)
            _assign(per_sample, module_rows, module_timer.run(model, x), bad)
            if op_timer is not None:
                _assign(per_sample, func_rows, op_timer.run(model, x), bad)
    if bad:
        notes.append(f"{len(bad)} row name(s) ran a different number of times than traced, left unmeasured: "
                     + ", ".join(sorted(bad)[:3]))
    per_row = [summarise(per_sample[i]) if len(per_sample[i]) == repeats and rows[i].name not in bad
               else None for i in range(len(rows))]
    method = ("forward pre-hook to forward hook on each traced module (perf_counter); functional ops timed "
              "around each aten call by a TorchDispatchMode; whole forward timed without hooks; "
              f"{'medians' if stat == 'median' else 'minima'} of {repeats} interleaved repeats after {warmup} "
              "warm-up passes, torch.no_grad(), eval()")
    m = Measurement(per_row, summarise(forward), repeats, method, regime(), notes,
                    {i: s for i, s in per_sample.items()}, stat,
                    statistics.median(faults) if faults else None)
    m.notes += trust_notes(m)
    return m


def _assign(per_sample: dict, rows: dict[str, list[int]], times: dict[str, list[float]], bad: set) -> None:
    """One pass's times to the rows of each name, in call order; a name that ran another number of times than
    traced is ``bad`` (left unmeasured)."""
    for n, idx in rows.items():
        got = times.get(n, [])
        if len(got) != len(idx):
            bad.add(n)
            continue
        for i, t in zip(idx, got):
            per_sample[i].append(t)


class _ModuleTimer:
    """Module rows: ``time.perf_counter`` between a forward pre-hook and a forward hook on each traced module,
    hooked for one pass only; ``run`` gives the calls' times per module name."""

    def __init__(self, hooked: dict):
        self.hooked = hooked
        self.calls: dict[str, list[float]] = {}
        self.starts: list[float] = []

    def run(self, model, x) -> dict[str, list[float]]:
        handles = []
        for n, m in self.hooked.items():
            handles += [m.register_forward_pre_hook(self._pre), m.register_forward_hook(self._post(n))]
        self.calls, self.starts = {}, []
        try:
            model(x)
        finally:
            for h in handles:
                h.remove()
        return self.calls

    def _pre(self, mod, args):
        self.starts.append(time.perf_counter())

    def _post(self, name):
        def post(mod, args, out):
            self.calls.setdefault(name, []).append(time.perf_counter() - self.starts.pop())
        return post


def _op_timer(names: dict, hooked_ids: set, func_rows: dict):
    """Functional rows: a ``TorchDispatchMode`` timing each aten op that runs outside every hooked module, keyed
    like the trace's rows (innermost module, ``:``, op); ``run`` gives the times per row name."""
    from torch.nn.modules import module as nn_module
    from torch.utils._python_dispatch import TorchDispatchMode

    class OpTimer(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.stack: list[str] = []
            self.inside = 0
            self.times: dict[str, list[float]] = {}

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            if self.inside:
                return func(*args, **kwargs)
            t0 = time.perf_counter()
            out = func(*args, **kwargs)
            dt = time.perf_counter() - t0
            key = f"{self.stack[-1] if self.stack else '(model)'}:{str(func.overloadpacket).split('.', 1)[1]}"
            if key in func_rows:
                self.times.setdefault(key, []).append(dt)
            return out

        def enter(self, mod, args):
            if id(mod) in names:
                self.stack.append(names[id(mod)])
                if id(mod) in hooked_ids:
                    self.inside += 1

        def leave(self, mod, args, out):
            if id(mod) in names and self.stack and self.stack[-1] == names[id(mod)]:
                self.stack.pop()
                if id(mod) in hooked_ids:
                    self.inside -= 1

        def run(self, model, x) -> dict[str, list[float]]:
            self.times, self.stack, self.inside = {}, [], 0
            h1 = nn_module.register_module_forward_pre_hook(self.enter)
            h2 = nn_module.register_module_forward_hook(self.leave)
            try:
                with self:
                    model(x)
            finally:
                h1.remove()
                h2.remove()
            return self.times

    return OpTimer()


def load_average() -> float | None:
    """The 1-minute load average per logical CPU (``None`` where the OS does not say)."""
    try:
        return os.getloadavg()[0] / (os.cpu_count() or 1)
    except (AttributeError, OSError):
        return None


def trust_notes(m: Measurement) -> list[str]:
    """Warnings a user needs before trusting ``m``: a loaded machine, layers that do not add up to the forward."""
    notes = []
    load = load_average()
    if load is not None and load > 0.8:
        notes.append(f"the machine is loaded (1-minute load average {load:.2f} per CPU): other work inflates and "
                     "scatters these times; rerun when idle, or use --stat min")
    if m.forward_s > 0 and m.layers_s > 0:
        gap = abs(m.layers_s - m.forward_s) / m.forward_s
        if gap > DISAGREEMENT:
            notes.append(f"the layers add up to {m.layers_s * 1e3:.3g} ms but the whole forward takes "
                         f"{m.forward_s * 1e3:.3g} ms ({100 * gap:.0f} % apart, over {100 * DISAGREEMENT:.0f} %): "
                         "hooks, untraced ops or interference distort the per-layer times")
    return notes
