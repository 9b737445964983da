"""Whole-model derivations as a library: the cache, one derivation per target and input, and its inputs.

``derive`` answers from symcost's on-disk cache when it can (reading an entry needs neither torch nor the model) and
otherwise builds the target on the meta device and traces it (``symcost.tracing.trace``).  ``cached_summary`` is
the plain-data path of a sweep: no torch, no sympy.  The CLI (``symcost.commands``) only parses, calls these and
renders.
"""
from __future__ import annotations

from .errors import UsageError
from .parse import InputSpec
from .progress import status as _status


def _dtype(target: str, input_dtype: str | None) -> str:
    from .targets import default_input_dtype

    return input_dtype or default_input_dtype(target)


def _key(target: str, input_spec: InputSpec | str, train: bool, input_dtype: str | None, trace_sizes=None,
         backward: bool = False, what: str = "") -> str:
    from . import cache
    from .targets import source_hash

    spec = (f"{InputSpec.of(input_spec).key}{what}:{_dtype(target, input_dtype)}"
            + (f":{trace_sizes}" if trace_sizes else "") + (":backward" if backward else ""))
    return cache.cache_key(target, spec, train, source_hash(target))


def cached_summary(target: str, input_spec: InputSpec | str, train: bool = False, input_dtype: str | None = None,
                   trace_sizes: tuple[dict, dict] | None = None):
    """The cached ``Summary`` of a derivation, or None: no torch, no sympy."""
    from . import cache
    from .summary import Summary

    key = _key(target, input_spec, train, input_dtype, trace_sizes)
    hit = cache.load(key, "summary")
    if hit is not None and not isinstance(hit, Summary):
        cache.discard(key)  # damaged: the derivation that follows writes it afresh
    return hit if isinstance(hit, Summary) else None


def derive(target: str, input_spec: InputSpec | str, *, train: bool = False, use_cache: bool = True,
           progress: bool = True, input_dtype: str | None = None, trace_sizes: tuple[dict, dict] | None = None,
           backward: bool = False, custom_mapping: dict | None = None):
    """The ``ModelCost`` of ``target`` on ``input_spec`` (``"1x3xHxW"``, parsed here once, or the ``InputSpec`` the
    command line parsed), from the cache when it can (no torch import then).
    ``input_dtype``: "float32", or "int64" for token ids (the default for hf: targets); ``trace_sizes``: the two
    assignments of the input symbols to record at (``({"H": 241}, {"H": 209})``), chosen by symcost if None;
    ``custom_mapping``: op -> handler for this derivation (see ``symcost.register_op``; the cache is not used)."""
    if custom_mapping:
        from .tracing.handlers import custom_ops

        with custom_ops(custom_mapping):
            return derive(target, input_spec, train=train, use_cache=use_cache, progress=progress,
                          input_dtype=input_dtype, trace_sizes=trace_sizes, backward=backward)
    input_spec = InputSpec.of(input_spec)
    key = _key(target, input_spec, train, input_dtype, trace_sizes, backward)

    def compute():
        with _status(f"tracing {target} on {input_spec}", progress):
            return trace_target(target, input_spec.shape, train=train, input_dtype=input_dtype,
                                trace_sizes=trace_sizes, backward=backward)

    # a sweep reads only the plain summary beside the full derivation
    return _cached(key, "full", compute, use_cache, lambda mc: {"summary": mc.summary()}, target)


def _cached(key: str, field: str, compute, use_cache: bool, plain=lambda value: {}, target: str = ""):
    """``compute()``, or what an earlier call stored under ``key`` as ``field`` of the cache entry, beside the
    fields ``plain(value)`` (read alone, as ``cached_summary`` reads a summary).  A file target's entry lists the
    user's source files imported by then (``cache.user_sources``): an entry whose files changed is rebuilt."""
    from . import cache
    from .targets import is_file_target

    if use_cache:
        hit = cache.load(key, field)
        if hit is not None and _expected(field, hit):
            return hit
        if hit is not None:
            cache.discard(key)  # damaged
    value = compute()
    if use_cache:
        cache.store(key, {**plain(value), field: value}, cache.user_sources() if is_file_target(target) else None)
    return value


def _expected(field: str, value) -> bool:
    """A cached value of the type its field holds (anything else is a damaged entry: rebuilt)."""
    from .model import ModelCost

    if field == "full":
        return isinstance(value, ModelCost)
    return isinstance(value, dict) and (isinstance(value.get("step"), ModelCost) or "total" in value)


def derive_decode(target: str, input_spec: InputSpec | str, *, past=None, generate=None, convention: str = "flops",
                  use_cache: bool = True, progress: bool = True) -> dict:
    """One decode step (``past``: cached tokens, an int or a symbol name) or a generation (``generate``: steps) of
    an ``hf:`` decoder on ids of ``input_spec`` (B x L), from the cache when it can (no torch import then).
    Returns ``{"step": ModelCost}`` or ``symcost.decode.generation``'s dict, plus ``"notes"`` (the experts
    implementation chosen, for a mixture of experts)."""
    input_spec = InputSpec.of(input_spec)
    what = f"past={past}" if past is not None else f"generate={generate}:{convention}"
    key = _key(target, input_spec, False, "int64", what=f":{what}")

    def compute():
        from .target_names import check_target

        check_target(target)  # a typo answered before torch is imported
        from .decode import decode_step, generation
        from .moe import select_experts_implementation
        from .targets import Target

        shape = input_spec.shape
        if isinstance(shape, dict):
            raise UsageError(f"--past and --generate take one input shape (B x L token ids), got {input_spec}")
        spec = Target.of(target)

        def attempt(attn):
            model = spec.build(device="meta", attn_implementation=attn).eval()
            notes = select_experts_implementation(model)  # the ids are the input: no other preparation
            if past is not None:
                out = {"step": decode_step(model, shape[0], shape[1], past, target=target)}
            else:
                out = generation(model, shape[0], shape[1], generate, convention, target=target)
            return out, notes

        with _status(f"tracing {target} decoding on {input_spec}", progress):
            (out, notes), eager = spec.with_eager_retry(attempt)
        if eager is not None:
            notes.append(spec.eager_note(eager))
        out["notes"] = notes
        return out

    return _cached(key, "decode", compute, use_cache, target=target)


def trace_target(target: str, shape: tuple | dict, train: bool = False, input_dtype: str | None = None,
                 trace_sizes: tuple[dict, dict] | None = None, backward: bool = False,
                 attn_implementation: str | None = None):
    """Build ``target`` on meta and trace it on ``shape`` (a tuple, or named shapes: a dict keyword -> shape)."""
    from .target_names import check_target

    check_target(target)  # a typo answered before torch is imported
    from .targets import Target
    from .tracing import model_input_size, trace

    spec = Target.of(target)

    def attempt(attn):
        model = spec.build(device="meta", attn_implementation=attn)
        # a mixture of experts: an implementation that traces, named; hf: the inputs the architecture needs
        named, dtype, notes = spec.prepare(model, shape, input_dtype)
        mc = trace(model, named, target=target, train=train, input_dtype=dtype,
                   sizes=trace_sizes, default_shape=model_input_size(model, target), backward=backward)
        mc.notes[:0] = notes
        return mc

    if attn_implementation:
        return attempt(attn_implementation)
    mc, eager = spec.with_eager_retry(attempt)
    if eager is not None:
        mc.notes.append(spec.eager_note(eager))
    return mc
