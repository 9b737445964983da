r"""Devices: the roofline's peak FLOP/s and bandwidth, and what a layer call costs on top of it.

A :class:`Device` holds the two roofs (peak FLOP/s per dtype, memory bandwidth) and, per *kind* of layer call
(``symcost.timing.kinds``), a :class:`KindRate`: the host seconds one call costs (Python module call, dispatch,
the first kernel launch) and the fractions of the two roofs its kernels attain.  A device without kind rates is
the plain roofline with one fixed cost per call (``overhead_s``), which is what every file written before the
per-kind model holds.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from .dtypes import dtype_name
from .kinds import EPILOGUES, KINDS, kind_chain


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


@dataclass(frozen=True)
class KindRate:
    """How one kind of layer call runs on a device, on top of the roofline.

    host_s:  host seconds per call (module call, dispatch, first launch); ``None``: the device's ``overhead_s``.
    compute: fraction of the dtype's peak FLOP/s its kernels attain (0 < compute <= 1 for a measured peak).
    memory:  fraction of the memory bandwidth its kernels attain.
    kernel_s: device seconds each of its kernels costs at least; ``None``: the device's ``kernel_s``.
    latency_s: device seconds each of its kernels adds to its roofline time (a GEMM's start-up and partly idle
             last wave): with it a small call attains a small fraction of the roofs and a large one nearly all,
             where a fraction alone would hold for every size.
    """

    host_s: float | None = None
    compute: float = 1.0
    memory: float = 1.0
    kernel_s: float | None = None
    latency_s: float = 0.0

    def __post_init__(self) -> None:
        for what in ("host_s", "kernel_s", "latency_s"):
            v = getattr(self, what)
            if v is not None and (not _finite(v) or v < 0):
                raise ValueError(f"{what} must be a number >= 0, got {v!r}")
        for what in ("compute", "memory"):
            v = getattr(self, what)
            if not _finite(v) or v <= 0:
                raise ValueError(f"{what} must be a positive fraction, got {v!r}")

    def to_dict(self) -> dict:
        return {"host_s": self.host_s, "compute": self.compute, "memory": self.memory, "kernel_s": self.kernel_s,
                "latency_s": self.latency_s}

    @classmethod
    def from_dict(cls, d: Mapping) -> "KindRate":
        if not isinstance(d, Mapping) or set(d) - {"host_s", "compute", "memory", "kernel_s", "latency_s"}:
            raise ValueError(f"a kind rate is an object with host_s, compute, memory, kernel_s, latency_s; got {d!r}")
        return cls(d.get("host_s"), d.get("compute", 1.0), d.get("memory", 1.0), d.get("kernel_s"),
                   d.get("latency_s", 0.0))


def _rates(table, where: str) -> dict[str, KindRate]:
    if not isinstance(table, Mapping):
        raise ValueError(f"{where} must map kind names to rates")
    unknown = sorted(set(table) - set(KINDS))
    if unknown:
        raise ValueError(f"{where} has unknown kind(s) {', '.join(unknown)}; known: {', '.join(KINDS)}")
    try:
        return {k: v if isinstance(v, KindRate) else KindRate.from_dict(v) for k, v in table.items()}
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None


@dataclass(frozen=True)
class Device:
    """What the time model needs to know about a machine.

    name:        what it is.
    peak_flops:  FLOP/s for a dtype without its own entry in ``peak_flops_by_dtype``.
    bandwidth:   memory bandwidth, bytes/s (bytes read plus bytes written per second).
    overhead_s:  host seconds per layer call for a kind without its own ``host_s`` (0 for a pure roofline).
    source:      where each number comes from (a datasheet, a fit to measurements, or ``symcost calibrate``).
    peak_flops_by_dtype: FLOP/s per dtype where it differs (tensor cores: fp16, bf16, tf32, int8).
    details:     anything else a JSON file carries (raw measurements, the regime); kept as is.
    kinds:       per kind of call, a :class:`KindRate`; kinds_by_dtype: the same per dtype, where measured.
    launch_s:    host seconds per kernel beyond a call's first (a conv's separate bias-add kernel).
    kernel_s:    device seconds every kernel costs at least (a near-empty kernel's duration).
    asynchronous: the host issues kernels and runs ahead (a GPU): a whole forward overlaps host and device time;
                 otherwise (a CPU) host and device time add.
    return_s:    on an asynchronous device, the host seconds of a call after it has launched its kernels (the module
                 call returning, its hooks): the kernels run meanwhile, so a call alone takes
                 ``host + max(0, device - return_s)`` and, in a whole forward, its kernels are issued ``return_s``
                 before its host time ends.
    fuses:       epilogues run inside the main kernel (``conv_bias``, ``depthwise_bias``); eager CUDA convolutions
                 do not fuse their bias (a separate elementwise kernel) but for PyTorch's own depthwise kernel (fp32,
                 bf16), oneDNN CPU convolutions do.  Default: all (one pass a call).
    tf32_conv, tf32_matmul: fp32 convolutions / matmuls run on TF32 tensor cores (``peak('tf32')``).
    cache_bytes: the last-level cache (0: none known).  A kernel moving more bytes than this runs at most at
                 ``bandwidth``: a kind's memory fraction above 1 (measured on layer-sized tensors a CPU's cache
                 holds) is the cache's, not DRAM's.
    first_touch_s: seconds per byte of an output that is freshly mapped memory (page faults: the OS zeroes each
                 page on its first write); 0 on a GPU, whose caching allocator reuses its blocks.
    first_touch_above: outputs larger than this many bytes are freshly mapped on every call (glibc serves a block
                 above its mmap threshold, which grows to at most 32 MiB, with mmap and unmaps it when freed).
    memory_bytes: the device's memory capacity in bytes, as its datasheet states it (0: not known); what
                 ``symcost memory --device`` fits a step's peak into.
    """

    name: str
    peak_flops: float
    bandwidth: float
    overhead_s: float = 0.0
    source: str = ""
    peak_flops_by_dtype: Mapping[str, float] = field(default_factory=dict)
    details: Mapping = field(default_factory=dict)
    kinds: Mapping[str, KindRate] = field(default_factory=dict)
    kinds_by_dtype: Mapping[str, Mapping[str, KindRate]] = field(default_factory=dict)
    launch_s: float = 0.0
    kernel_s: float = 0.0
    asynchronous: bool = False
    return_s: float = 0.0
    fuses: tuple[str, ...] = EPILOGUES
    tf32_conv: bool = False
    tf32_matmul: bool = False
    cache_bytes: int = 0
    first_touch_s: float = 0.0
    first_touch_above: int = 32 << 20
    memory_bytes: int = 0

    def __post_init__(self) -> None:
        for what, v in (("peak_flops", self.peak_flops), ("bandwidth", self.bandwidth)):
            if not _finite(v) or v <= 0:
                raise ValueError(f"device {self.name!r}: {what} must be a positive number, got {v!r}")
        for what in ("overhead_s", "launch_s", "kernel_s", "return_s", "first_touch_s", "cache_bytes",
                     "first_touch_above", "memory_bytes"):
            v = getattr(self, what)
            if not _finite(v) or v < 0:
                raise ValueError(f"device {self.name!r}: {what} must be a number >= 0, got {v!r}")
            object.__setattr__(self, what, float(v) if what.endswith("_s") else int(v))
        clean = {}
        for k, v in dict(self.peak_flops_by_dtype).items():
            if not _finite(v) or v <= 0:
                raise ValueError(f"device {self.name!r}: peak_flops_by_dtype[{k!r}] must be positive, got {v!r}")
            clean[dtype_name(k)] = float(v)
        unknown = sorted(set(self.fuses) - set(EPILOGUES))
        if unknown:
            raise ValueError(f"device {self.name!r}: unknown fused epilogue(s) {', '.join(unknown)}; "
                             f"known: {', '.join(EPILOGUES)}")
        object.__setattr__(self, "peak_flops_by_dtype", clean)
        object.__setattr__(self, "peak_flops", float(self.peak_flops))
        object.__setattr__(self, "bandwidth", float(self.bandwidth))
        object.__setattr__(self, "fuses", tuple(self.fuses))
        object.__setattr__(self, "kinds", _rates(self.kinds, f"device {self.name!r}: kinds"))
        object.__setattr__(self, "kinds_by_dtype", {
            dtype_name(dt): _rates(t, f"device {self.name!r}: kinds_by_dtype[{dt!r}]")
            for dt, t in dict(self.kinds_by_dtype).items()})

    def peak(self, dtype: str = "fp32") -> float:
        """Peak FLOP/s at ``dtype`` (``peak_flops`` where the device lists no figure of its own for it)."""
        return self.peak_flops_by_dtype.get(dtype_name(dtype), self.peak_flops)

    def ridge(self, dtype: str = "fp32") -> float:
        """The intensity (FLOP/byte) at which compute time equals memory time."""
        return self.peak(dtype) / self.bandwidth

    def _tables(self, kind: str, dtype: str):
        """The rate tables to read ``kind`` from, in order: its own (the dtype's, then the kind's), then those of
        the kind it falls back to where the device has none of its own (``kinds.FALLBACK``)."""
        by_dtype = self.kinds_by_dtype.get(dtype_name(dtype), {})
        chain = kind_chain(kind)
        own = next((k for k in chain if k in by_dtype or k in self.kinds), kind)
        return own, (by_dtype, self.kinds)

    def rate(self, kind: str, dtype: str = "fp32") -> KindRate:
        """The kind's rate at ``dtype``: its own measurement for that dtype, else the kind's, else the roofline's
        (a kind the device has no rate for takes its fallback kind's, ``kinds.FALLBACK``)."""
        own, (by_dtype, kinds) = self._tables(kind, dtype)
        return by_dtype.get(own) or kinds.get(own) or KindRate()

    def _first(self, kind: str, dtype: str, what: str, default: float) -> float:
        own, tables = self._tables(kind, dtype)
        for table in tables:
            v = getattr(table[own], what) if own in table else None
            if v is not None:
                return v
        return default

    def host_s(self, kind: str, dtype: str = "fp32") -> float:
        """Host seconds per call of ``kind``: the dtype's figure, else the kind's, else ``overhead_s``."""
        return self._first(kind, dtype, "host_s", self.overhead_s)

    def kernel_floor_s(self, kind: str, dtype: str = "fp32") -> float:
        return self._first(kind, dtype, "kernel_s", self.kernel_s)

    def first_touch(self, written: int) -> float:
        """Page-fault seconds of a new output of ``written`` bytes (0 at or below ``first_touch_above``)."""
        return written * self.first_touch_s if written > self.first_touch_above else 0.0

    def memory_fraction(self, kind: str, dtype: str, nbytes: float) -> float:
        """The kind's memory fraction for a kernel moving ``nbytes``: at most 1 beyond the cache."""
        m = self.rate(kind, dtype).memory
        return min(m, 1.0) if self.cache_bytes and nbytes > self.cache_bytes else m

    def to_dict(self) -> dict:
        return {"name": self.name, "peak_flops": self.peak_flops, "bandwidth": self.bandwidth,
                "overhead_s": self.overhead_s, "source": self.source,
                "peak_flops_by_dtype": dict(self.peak_flops_by_dtype),
                "kinds": {k: r.to_dict() for k, r in self.kinds.items()},
                "kinds_by_dtype": {d: {k: r.to_dict() for k, r in t.items()} for d, t in self.kinds_by_dtype.items()},
                "launch_s": self.launch_s, "kernel_s": self.kernel_s, "asynchronous": self.asynchronous,
                "return_s": self.return_s,
                "fuses": list(self.fuses), "tf32_conv": self.tf32_conv, "tf32_matmul": self.tf32_matmul,
                "cache_bytes": self.cache_bytes, "first_touch_s": self.first_touch_s,
                "first_touch_above": self.first_touch_above, "memory_bytes": self.memory_bytes,
                "details": dict(self.details),
                "units": {"peak_flops": "FLOP/s", "bandwidth": "bytes/s", "overhead_s": "seconds per layer call",
                          "host_s": "seconds per layer call", "compute": "fraction of peak",
                          "memory": "fraction of bandwidth", "launch_s": "seconds per extra kernel",
                          "kernel_s": "seconds per kernel, at least", "latency_s": "seconds per kernel, added",
                          "return_s": "host seconds per call after its launches", "cache_bytes": "bytes",
                          "first_touch_s": "seconds per byte of a freshly mapped output",
                          "first_touch_above": "bytes", "memory_bytes": "bytes"}}

    @classmethod
    def from_dict(cls, d: Mapping) -> "Device":
        if not isinstance(d, Mapping):
            raise ValueError("a device description must be a JSON object")
        missing = [k for k in ("name", "peak_flops", "bandwidth") if k not in d]
        if missing:
            raise ValueError(f"device description lacks {', '.join(missing)}")
        known = {"name", "peak_flops", "bandwidth", "overhead_s", "source", "peak_flops_by_dtype", "details", "units",
                 "kinds", "kinds_by_dtype", "launch_s", "kernel_s", "asynchronous", "return_s", "fuses",
                 "tf32_conv", "tf32_matmul", "cache_bytes", "first_touch_s", "first_touch_above", "memory_bytes"}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"device description has unknown key(s) {', '.join(unknown)}; "
                             f"known: {', '.join(sorted(known))}")
        for k in ("peak_flops", "bandwidth", "overhead_s", "launch_s", "kernel_s", "return_s", "cache_bytes",
                  "first_touch_s", "first_touch_above", "memory_bytes"):
            if k in d and (isinstance(d[k], bool) or not isinstance(d[k], (int, float))):
                raise ValueError(f"device description: {k} must be a number, got {d[k]!r}")
        _check_types(d)
        by_dtype = d.get("peak_flops_by_dtype") or {}
        if not isinstance(by_dtype, Mapping) or any(isinstance(v, bool) or not isinstance(v, (int, float))
                                                    for v in by_dtype.values()):
            raise ValueError("device description: peak_flops_by_dtype must map dtype names to numbers")
        fuses = d.get("fuses", EPILOGUES)
        if not isinstance(fuses, (list, tuple)) or not all(isinstance(f, str) for f in fuses):
            raise ValueError(f"device description: fuses must be a list of epilogue names, got {fuses!r}")
        return cls(name=str(d["name"]), peak_flops=d["peak_flops"], bandwidth=d["bandwidth"],
                   overhead_s=d.get("overhead_s", 0.0), source=str(d.get("source", "")),
                   peak_flops_by_dtype=by_dtype, details=dict(d.get("details") or {}),
                   kinds=d.get("kinds") or {}, kinds_by_dtype=d.get("kinds_by_dtype") or {},
                   launch_s=d.get("launch_s", 0.0), kernel_s=d.get("kernel_s", 0.0),
                   asynchronous=bool(d.get("asynchronous", False)), return_s=d.get("return_s", 0.0),
                   fuses=tuple(fuses),
                   tf32_conv=bool(d.get("tf32_conv", False)), tf32_matmul=bool(d.get("tf32_matmul", False)),
                   cache_bytes=d.get("cache_bytes", 0), first_touch_s=d.get("first_touch_s", 0.0),
                   first_touch_above=d.get("first_touch_above", 32 << 20), memory_bytes=d.get("memory_bytes", 0))

    def save(self, path: str | os.PathLike) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Device":
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as e:
            raise ValueError(f"cannot read device file {str(p)!r}: {e.strerror or e}") from None
        from ..parse import json_once

        try:
            data = json_once(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"device file {str(p)!r} is not JSON: {e.msg} (line {e.lineno})") from None
        except ValueError as e:  # a key given twice: which one holds is not for symcost to guess
            raise ValueError(f"device file {str(p)!r}: {e}") from None
        return cls.from_dict(data)


def _check_types(d: Mapping) -> None:
    """Each key of a device description has the JSON type symcost writes: true/false for a switch (the string
    "false" is not false), objects where objects belong, text for names.  One ``ValueError`` naming the key."""
    kinds = {bool: "true or false", Mapping: "a JSON object", str: "a string"}
    expected = {"asynchronous": bool, "tf32_conv": bool, "tf32_matmul": bool, "name": str, "source": str,
                "details": Mapping, "units": Mapping, "kinds": Mapping, "kinds_by_dtype": Mapping,
                "peak_flops_by_dtype": Mapping}
    for key, kind in expected.items():
        if key in d and not isinstance(d[key], kind):
            raise ValueError(f"device description: {key} must be {kinds[kind]}, got {d[key]!r}")
    for dtype, table in dict(d.get("kinds_by_dtype", {})).items():
        if not isinstance(table, Mapping):
            raise ValueError(f"device description: kinds_by_dtype[{dtype!r}] must be a JSON object, got {table!r}")
    for key in ("cache_bytes", "first_touch_above", "memory_bytes"):
        v = d.get(key, 0)
        if _finite(v) and v != int(v):
            raise ValueError(f"device description: {key} must be a whole number of bytes, got {v!r}")
