"""One request for a whole-model derivation: what ``symcost model`` (or the Python API) asks for, parsed and checked
once at the edge, its mode named instead of read off a combination of flags.

``ModelRequest.of(...)`` turns the arguments into typed values (an ``InputSpec``, a ``Convention``, sizes as ints or
symbol names) and refuses a contradiction with one ``UsageError``; ``report(request)`` answers every mode through
one path.  Nothing here imports torch or sympy: a cached answer stays fast.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass

from .convention_base import Convention
from .conventions import report_convention
from .errors import UsageError
from .parse import InputSpec, size_arg

__all__ = ["Mode", "ModelRequest", "report"]


class Mode(enum.Enum):
    """What is derived: one per report of ``symcost model``."""

    FORWARD = "forward"                  # one forward: per-layer rows and totals
    STEP = "step"                        # a training step (--backward) and/or per token (--per-token)
    DECODE = "decode"                    # one decode step over a KV cache (--past) or a generation (--generate)
    CONFIG = "config"                    # totals in the model's config fields (--config, --config-values)
    CONFIG_GENERATE = "config-generate"  # a generation in the config fields (--generate with --config)


@dataclass(frozen=True)
class ModelRequest:
    """A whole-model derivation, typed.  ``at``: the ``--at`` assignments as given (each mode evaluates them in its
    own symbols: the input's, the config's, the cached tokens').  ``past``/``generate``: ints or symbol names."""

    target: str
    input: InputSpec
    convention: Convention
    mode: Mode
    at: tuple[str, ...] = ()
    train: bool = False
    backward: bool = False
    per_token: bool = False
    input_dtype: str | None = None
    trace_sizes: str | None = None
    assume_divisible: int | None = None
    past: int | str | None = None
    generate: int | str | None = None
    config: str | dict | None = None
    config_values: str | None = None
    layers: bool = False
    use_cache: bool = True

    @classmethod
    def of(cls, target: str, input_spec, *, convention="flops", at=(), train: bool = False, backward: bool = False,
           per_token: bool = False, input_dtype: str | None = None, trace_sizes: str | None = None,
           assume_divisible: int | None = None, past=None, generate=None, config: str | dict | None = None,
           config_values: str | None = None, layers: bool = False, use_cache: bool = True) -> "ModelRequest":
        """The request, its mode chosen and its combination checked (``UsageError`` for one that contradicts)."""
        spec = InputSpec.of(input_spec)
        past = None if past in (None, "") else size_arg(past, "--past")
        generate = None if generate in (None, "") else size_arg(generate, "--generate")
        mode = _mode(spec, past, generate, config, config_values, backward, per_token)
        _check(mode, spec, trace_sizes=trace_sizes, past=past, generate=generate, train=train, backward=backward,
               per_token=per_token, assume_divisible=assume_divisible, config_values=config_values, layers=layers)
        conv, _ = report_convention(convention, generation=generate is not None)
        return cls(target, spec, conv, mode, tuple(at), train, backward, per_token, input_dtype,
                   trace_sizes, assume_divisible, past, generate, config, config_values, layers, use_cache)


def _mode(spec: InputSpec, past, generate, config, config_values, backward: bool, per_token: bool) -> Mode:
    if past is not None and generate is not None:
        raise UsageError("give --past T (one decode step) or --generate n (prefill + n steps), not both")
    if isinstance(spec.dims, dict) and (past is not None or generate is not None or config or config_values):
        raise UsageError("named inputs (NAME=SHAPE,...) are for the forward pass and --backward/--per-token; "
                         "--past, --generate and --config take one shape")
    if generate is not None and config:
        return Mode.CONFIG_GENERATE
    if config or config_values:
        return Mode.CONFIG
    if past is not None or generate is not None:
        return Mode.DECODE
    return Mode.STEP if backward or per_token else Mode.FORWARD


def _check(mode: Mode, spec: InputSpec, *, trace_sizes, past, generate, train: bool, backward: bool,
           per_token: bool, assume_divisible, config_values, layers: bool) -> None:
    """The options each mode refuses, named."""
    if mode in (Mode.CONFIG, Mode.CONFIG_GENERATE) and trace_sizes:
        raise UsageError("--config derives at symcost's own trace sizes: it does not combine with --trace-sizes")
    if config_values and (past is not None or generate is not None):
        raise UsageError("--config-values names configurations of the forward pass; with --past or --generate give "
                         "--config and --at")
    if mode in (Mode.DECODE, Mode.CONFIG_GENERATE) and (backward or per_token or train or assume_divisible):
        raise UsageError("--past and --generate cost inference: not with --backward, --per-token, --train or "
                         "--assume-divisible")
    if mode is Mode.CONFIG and (layers or assume_divisible):
        raise UsageError(f"--{'assume-divisible' if assume_divisible else 'layers'} is not available with --config "
                         "(totals only)")
    if mode is Mode.CONFIG and past is not None and (per_token or train or backward):
        raise UsageError("--past costs one decode step of inference: not with --backward, --per-token or --train")
    if mode in (Mode.DECODE, Mode.CONFIG_GENERATE) and len(spec.dims) != 2:
        raise UsageError(f"--past and --generate need token ids of shape B x L, got {spec.text!r}")
    if mode is Mode.FORWARD and assume_divisible is not None and not spec.symbols:
        raise UsageError("--assume-divisible needs symbols in --input (e.g. --input 1x3xHxW)")


def report(request: ModelRequest, *, rows: bool = False, progress: bool = True):
    """The report of any mode: ``model_report.ModelReport``, ``StepReport``, ``DecodeReport`` or
    ``hyper.report.ConfigReport``.  Per-layer rows (forward and step) for a concrete input, or when
    ``request.layers`` or ``rows`` (``--json`` without ``--at`` keeps them)."""
    layers = bool(request.layers or rows or not request.input.symbols)
    return _REPORTS[request.mode](request, layers, progress)


def _points(request: ModelRequest):
    from .sweep import parse_assignments

    names = request.input.symbols
    if request.at and not names:
        raise UsageError(f"--at needs symbols in --input (e.g. --input "
                         f"{'1xL --at L=128,512' if request.mode is Mode.STEP else '1x3xRxR --at R=224,225'})")
    return parse_assignments(list(request.at), names) if request.at else None


def _forward(request: ModelRequest, layers: bool, progress: bool):
    from .model_report import model_report
    from .sweep import check_divisible, parse_trace_sizes

    points = _points(request)
    if request.assume_divisible is not None:
        check_divisible(request.assume_divisible, points)
    names = request.input.symbols
    return model_report(request.target, request.input, request.convention, points=points,
                        assume_divisible=request.assume_divisible,
                        trace_sizes=parse_trace_sizes(request.trace_sizes, names) if request.trace_sizes else None,
                        layers=layers, train=request.train, input_dtype=request.input_dtype,
                        use_cache=request.use_cache, progress=progress)


def _step(request: ModelRequest, layers: bool, progress: bool):
    from .model_report import step_report

    return step_report(request.target, request.input, request.convention, points=_points(request),
                       backward=request.backward, per_token=request.per_token,
                       assume_divisible=request.assume_divisible, layers=layers, train=request.train,
                       input_dtype=request.input_dtype, use_cache=request.use_cache, progress=progress)


def _decode(request: ModelRequest, layers: bool, progress: bool):
    from .model_report import decode_report

    return decode_report(request.target, request.input, request.convention, past=request.past,
                         generate=request.generate, at=list(request.at), use_cache=request.use_cache,
                         progress=progress, config=request.config)


def config_cost(request: ModelRequest, progress: bool = True):
    """The ``ConfigCost`` of ``request.config`` or the fields of ``request.config_values``."""
    from .hyper import derive_config
    from .hyper.report import fields_of, read_config_values
    from .progress import status

    config = request.config or fields_of(read_config_values(request.config_values))
    with status(f"deriving {request.target} in {config}", progress):
        return derive_config(request.target, request.input, config, train=request.train,
                             input_dtype=request.input_dtype, use_cache=request.use_cache,
                             backward=request.backward, past=request.past, conventions=(request.convention,))


def _config(request: ModelRequest, layers: bool, progress: bool):
    import time

    from .hyper.report import config_report, read_config_values
    from .training import tokens

    if request.per_token:  # refused before the derivation, not after it
        tokens(request.input.shape)
    started = time.perf_counter()
    cc = config_cost(request, progress=progress)
    rows = read_config_values(request.config_values) if request.config_values else None
    return config_report(cc, request.convention.name, list(request.at), rows, started, per_token=request.per_token)


_REPORTS = {Mode.FORWARD: _forward, Mode.STEP: _step, Mode.DECODE: _decode, Mode.CONFIG: _config,
            Mode.CONFIG_GENERATE: _decode}
