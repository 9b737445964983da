"""Time of each layer call and of a whole forward pass: devices, kinds of call, the model, fits, measurement.

* ``dtypes``: bytes per element.  ``kinds``: what kind a call is, which kernels it launches.
* ``devices``: :class:`Device` (roofs, per-kind rates, launch costs), JSON files.  ``presets``: named devices.
* ``model``: per-call estimates and the whole-forward overlap.  ``stats``: rank correlation.
* ``fit``: kind rates from measured times (the ``h100-sxm`` preset's fit).  ``calibrate``: this machine's rates.
* ``measure``: timing a real forward per traced row.

Nothing here imports torch at module level.
"""
from .devices import Device, KindRate
from .dtypes import DTYPE_BYTES, dtype_name, itemsize, torch_dtype
from .kinds import EPILOGUES, KINDS, kind_of
from .model import (
    ForwardTime,
    LayerEstimate,
    estimate,
    forward_time,
    intensity,
    layer_bytes,
    predict,
    roofline_time,
    total_time,
)
from .presets import DATASHEET_PRESETS, PRESET_ALIASES, PRESETS, get_device
from .stats import pearson, rankdata, shares, spearman

__all__ = ["DATASHEET_PRESETS", "DTYPE_BYTES", "EPILOGUES", "KINDS", "PRESETS", "PRESET_ALIASES", "Device",
           "ForwardTime", "KindRate", "LayerEstimate", "dtype_name", "estimate", "forward_time", "get_device",
           "intensity", "itemsize", "kind_of", "layer_bytes", "pearson", "predict", "rankdata", "roofline_time",
           "shares", "spearman", "torch_dtype", "total_time"]
