"""Trace a whole ``nn.Module`` into per-layer symbolic costs (see ``model_trace.trace``).

``record`` (aten ops and module calls on meta) → ``module_layers`` and ``handlers`` with ``ops`` (the catalog layer
of each call: one record per op) with ``propagate`` (symbolic shapes) → ``stored`` (parameters by distinct tensor) →
``verify`` (a third recording) → ``guards`` (the domain) → ``pieces``/``loops``; ``inputs``: the input's shapes and
sizes.
"""
from ..errors import NoSingleFormula, TraceError
from .inputs import (as_symbolic, concrete_shape, default_values, flat_sizes, model_input_size, on_meta, shape_at,
                     shown_shape, trace_sizes)
from .model_trace import trace

__all__ = ["NoSingleFormula", "TraceError", "as_symbolic", "concrete_shape", "default_values", "flat_sizes",
           "model_input_size", "on_meta", "shape_at", "shown_shape", "trace", "trace_sizes"]
