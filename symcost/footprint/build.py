"""Build the target, record its step at symcost's trace sizes, derive the formulas and check them elsewhere."""
from __future__ import annotations

import sympy
import torch

from ..errors import NeedsTensorValues, NoSingleFormula, TraceError, UsageError
from ..progress import status
from ..parse import InputSpec, size_value
from ..targets import Target
from ..tracing import as_symbolic, concrete_shape, default_values, flat_sizes, model_input_size, on_meta, shape_at, \
    shown_shape, trace_sizes
from ..tracing.bounds import Bounds
from ..tracing.meta_ops import meta_op
from ..tracing.propagate import Propagation
from ..tracing.verify import check_points, describe, mixed_points
from .derive import Positions, StepFormulas, numbers, sum_expr, term_value
from .record import StepMemory, positions_unpacked, record_step


def derive_memory(target, input_shape, *, backward: bool, train: bool, dtype: str, optimizer: str | None,
                  momentum: bool, master: bool, input_dtype: str | None = None, past=None,
                  checkpoint: str | None = None, progress: bool = False, load=None, warm_once: bool = False):
    """``load``: a function of the attention implementation (None or "eager") giving the model on meta, in place
    of loading the target string (``footprint.config``: the model at one configuration).  ``warm_once``: the
    discarded first step (see ``_run``) only for the first model of its class in the process (``footprint.config``
    derives one class at many configurations, and checks every formula against fresh recordings)."""
    from .result import DTYPES, Memory

    compute = getattr(torch, DTYPES[dtype])
    name = target if isinstance(target, str) else type(target).__name__
    if isinstance(input_shape, (str, InputSpec)):
        input_shape = InputSpec.of(input_shape).shape
    notes: list[str] = []
    with status(f"recording {name}'s memory on {shown_shape(input_shape)}", progress):
        for attn in (None, "eager"):
            if past is not None:
                model, shape, dtypes, chosen, decode = _decode_step(target, input_shape, compute, attn, past, load)
            else:
                model, shape, dtypes, chosen = _build(target, input_shape, compute, attn, input_dtype, load)
                decode = None
            if checkpoint:
                from .checkpoint import checkpointed

                blocks = checkpointed(model, checkpoint)
            model.train(train)
            try:
                step = _derive(decode or model, shape, dtypes, backward, name, decode is not None, warm_once)
                break
            except NeedsTensorValues as e:  # sdpa masks read tensor values: eager attention runs the same matmuls
                if attn or not (isinstance(target, str) and Target.of(target).is_hf):
                    raise
                notes.append(f"recorded with attn_implementation='eager': the default attention reads mask values, "
                             f"which meta tensors do not have ({e})")
    formulas, peaks, domain, checked, step_notes, layers, positions = step
    parts = dict(formulas)
    if decode is not None:
        carrier = parts["inputs"]
        parts, peaks, domain, step_notes = _as_decode(parts, peaks, domain, step_notes, shape, model)
        positions.shift = parts["inputs"] - carrier
    # torch.optim keeps state per parameter object (a tied weight once), like the parameter itself (fp32 where the
    # optimizer steps fp32 master weights); Adam's step is a float32 tensor per parameter
    trainable = [p for p in model.parameters() if p.requires_grad]
    elems = sum(p.numel() for p in trainable)
    like = sum(p.numel() * (4 if master else p.element_size()) for p in trainable)
    opt = 0
    if optimizer == "sgd" and momentum:
        opt = like
    elif optimizer in ("adam", "adamw"):
        opt = 2 * like + 4 * len(trainable)   # exp_avg, exp_avg_sq, and the step counters
    if backward:
        parts["optimizer_states"] = sympy.Integer(opt)
        parts["master_weights"] = sympy.Integer(4 * elems if master else 0)
        parts["saved_activations"] = parts.pop("saved_activations")
    flops = {}
    if checkpoint:
        try:
            flops = _recompute_flops(target, input_shape, compute, attn, input_dtype, model, shape, dtypes, train,
                                     load)
        except TraceError as e:  # the bytes stand; the FLOPs of the trade are refused, with the reason
            step_notes = [*step_notes, f"the recomputation's FLOPs are not given: {e}"]
    notes = chosen + notes + step_notes
    if checkpoint:
        shown = ", ".join(blocks[:3]) + (f", … ({len(blocks)} in all)" if len(blocks) > 3 else "")
        notes.append(f"--checkpoint {checkpoint}: recomputed in the backward (torch.utils.checkpoint, non-reentrant): "
                     f"{shown}")
    if getattr(getattr(model, "config", None), "_attn_implementation", None) == "sdpa":
        notes.append("attention recorded as torch runs scaled_dot_product_attention on meta tensors: its math path, "
                     "which keeps the attention scores and probabilities (L x L per head); a GPU's flash or "
                     "memory-efficient kernels keep less")
    return Memory(name, tuple(flat_sizes(shape)), dtype, backward, parts, peaks,
                  parts.get("optimizer_states", 0) + parts.get("master_weights", 0), domain, notes, checked, flops,
                  layers, positions)


def _recompute_flops(target, input_shape, compute, attn, input_dtype, model, shape, dtypes, train, load) -> dict:
    """The trade of checkpointing in FLOPs under the ``torch`` convention (as ``FlopCounterMode`` counts them): the
    training step's FLOPs derived with the blocks checkpointed (their forward recorded again in the backward) and
    without, and the difference."""
    from ..tracing import trace

    plain = _build(target, input_shape, compute, attn, input_dtype, load)[0]
    for m in plain.modules():  # the same forward as the checkpointed model's, which runs without a cache
        config = getattr(m, "config", None)
        if getattr(config, "use_cache", False):
            config.use_cache = False
    name = target if isinstance(target, str) else ""
    default = model_input_size(plain, name)
    with positions_unpacked():  # without a cache Hugging Face asks about packed sequences (see there)
        with_ = trace(model, shape, train=train, input_dtype=dtypes, backward=True, default_shape=default)
        without = trace(plain, shape, train=train, input_dtype=dtypes, backward=True, default_shape=default)
    a, b = with_.total("torch")["flops"], without.total("torch")["flops"]
    return {"step_flops": a, "step_flops_without_checkpointing": b, "recompute_flops": sympy.expand(a - b)}


def _decode_step(target, input_shape, compute: torch.dtype, attn, past, load=None):
    """The decoder on meta in the compute dtype and ``decode.decode_step_module`` around it: one call on B x L new
    ids with a ``DynamicCache`` of T tokens that the step's own forward fills first (so the cache's storages are the
    step's first allocations), its input of shape (B, L, T) carrying T as a size."""
    from ..decode import decode_step_module
    from ..moe import select_experts_implementation
    from ..targets import load_target

    if isinstance(target, str) and Target.of(target).is_hf:
        model = load(attn) if load else load_target(target, device="meta", attn_implementation=attn)
    elif isinstance(target, torch.nn.Module) and hasattr(target, "config"):
        import copy

        model = on_meta(target)
        model = copy.deepcopy(model) if model is target else model
    else:
        raise UsageError("--past needs a Hugging Face decoder (hf:MODEL_TYPE, or its nn.Module)")
    shape = tuple(input_shape) if not isinstance(input_shape, dict) else ()
    if len(shape) != 2:
        raise UsageError("--past takes --input B x L: the batch and the new tokens of one decode step")
    model = model.to(compute)
    chosen = select_experts_implementation(model)
    past = size_value(past, "--past")
    step = decode_step_module(model, past_limit=isinstance(past, sympy.Basic))
    return model, as_symbolic((*shape, past)), "int64", chosen, step


def _as_decode(parts: dict, peaks: list, domain: tuple, notes: list, shape, model):
    """A decode step's headings: the ids are B x L int64 (the recorded input, B x L x T, only carries T), the cache
    its own heading; the peak with the ids in place of that input (held throughout: the same op is largest)."""
    from ..decode import sliding_window

    carrier = parts["inputs"]
    ids = 8 * shape[0] * shape[1]
    parts = {"params": parts["params"], "buffers": parts["buffers"], "inputs": ids, "kv_cache": parts["kv_cache"]}
    peaks = [(label, sympy.expand(e - carrier + ids)) for label, e in peaks]
    window = sliding_window(model)
    t = shape[2]
    if window is not None and isinstance(t, sympy.Basic):
        domain = tuple(domain) + (window - t,)
        notes = [*notes, f"sliding-window cache layers (window {window}) keep the last {window - 1} tokens: the "
                         f"formulas hold for {t} <= {window - 1} (give --past a number above)"]
    return parts, peaks, domain, notes


def _build(target, input_shape, compute: torch.dtype, attn, input_dtype: str | None, load=None):
    """The model on meta in the compute dtype, the input shapes (symbolic) and their dtypes."""
    chosen: list[str] = []
    if isinstance(target, str):
        from ..targets import load_target

        model = load(attn) if load else load_target(target, device="meta", attn_implementation=attn)
        shape, dtypes, chosen = Target.of(target).prepare(model, input_shape, input_dtype)
    elif isinstance(target, torch.nn.Module):
        model, shape, dtypes = on_meta(target), input_shape, input_dtype or "float32"
        if model is target:  # on meta already: a copy, so that the dtype and mode set here stay here
            import copy

            model = copy.deepcopy(target)
    else:
        raise UsageError(f"memory() takes a target string or an nn.Module, not a {type(target).__name__}")
    model = model.to(compute)

    def cast(d: str) -> str:
        return str(compute).removeprefix("torch.") if d.startswith("float") else d

    dtypes = {n: cast(d) for n, d in dtypes.items()} if isinstance(dtypes, dict) else cast(dtypes)
    return model, as_symbolic(shape), dtypes, chosen


def _input(shape, dtypes):
    def one(s, d):
        return torch.zeros(*[int(v) for v in s], dtype=getattr(torch, d), device="meta")

    if isinstance(shape, dict):
        return {n: one(s, dtypes[n] if isinstance(dtypes, dict) else dtypes) for n, s in shape.items()}
    return one(shape, dtypes)


def _run(model, shape, dtypes, backward: bool, symbolic: bool) -> StepMemory:
    """One recording at concrete ``shape``; the model's own failure as one line (``NoSingleFormula`` at a size
    symcost chose, so that a caller can try others).

    The first step of a model in a process is not recorded for its memory: what torch and the model import lazily
    on their first call (torch._dynamo during the first backward) leaves frames in reference cycles that hold that
    step's tensors until a garbage collection, whenever one runs."""
    try:
        return record_step(model, _input(shape, dtypes), backward)
    except TraceError:
        raise
    except Exception as e:  # noqa: BLE001  (the model's own complaint, in one line)
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if op := meta_op(e):
            raise NeedsTensorValues(f"the model calls {op}, which cannot run on meta tensors (its result depends on "
                                    f"tensor values)") from None
        raise (NoSingleFormula if symbolic else TraceError)(
            f"the model cannot run on input {shown_shape(shape)}: {msg}") from None


def _label(step: StepMemory, k: int) -> str:
    ev = step.recording.ops[k]
    start = step.recording.backward_start
    phase = "backward" if start is not None and k >= start else "forward"
    return f"{ev.op} in {ev.module or '(model)'} ({phase}, op {k})"


#: (model class, backward) whose first step in this process has been run and discarded (see ``_run``)
_WARMED: set = set()


def _warm_up(model, shape, dtypes, backward: bool, symbolic: bool, once: bool) -> None:
    key = (type(model), backward)
    if once and key in _WARMED:
        return
    _run(model, shape, dtypes, backward, symbolic)
    _WARMED.add(key)


def _derive(model, shape, dtypes, backward: bool, name: str, decode: bool = False, warm_once: bool = False):
    symbols = {s for d in flat_sizes(shape) for s in getattr(d, "free_symbols", ())}
    if not symbols:
        _warm_up(model, concrete_shape(shape, {}), dtypes, backward, False, warm_once)
        step = _run(model, concrete_shape(shape, {}), dtypes, backward, False)
        sym = [tuple(sympy.Integer(v) for v in s) for s in step.recording.shapes]
        f = StepFormulas(step, step, sym, {}, {})
        return _result(f, step, (), [], [], decode=decode)
    default = default_values(shape, model_input_size(model, name))
    failed = None
    for values_a, values_b in trace_sizes(flat_sizes(shape), default):
        try:
            _warm_up(model, shape_at(shape, values_a), dtypes, backward, True, warm_once)
            a = _run(model, shape_at(shape, values_a), dtypes, backward, True)
            b = _run(model, shape_at(shape, values_b), dtypes, backward, True)
            break
        except NoSingleFormula as e:
            failed = failed or e
    else:
        raise failed
    points = check_points(values_a, values_b)
    far = None
    for point in points:
        try:
            far = (_run(model, shape_at(shape, point), dtypes, backward, True), point)
            break
        except (NoSingleFormula, TraceError):
            continue
    if far is None:
        raise NoSingleFormula(f"the model runs at the trace sizes but not at {describe(points[0])} (which a formula "
                              "would cover)")
    prop = Propagation(a.recording, b.recording, shape, values_a, values_b, (far[0].recording, far[1]))
    sym = prop.run()
    bounds = Bounds(lambda x, y: sympy.Integer(x) if x == y else prop.lookup.get((x, y)))
    for ev, evb in zip(a.recording.ops, b.recording.ops):
        bounds.step(ev, evb, sym)
    domain = tuple(sorted(prop.sizes | bounds.conditions, key=sympy.default_sort_key))
    f = StepFormulas(a, b, sym, values_a, values_b)
    peaks = f.peak(values_a, domain)
    checked = [far]
    for point in mixed_points(values_a, values_b):
        try:
            checked.append((_run(model, shape_at(shape, point), dtypes, backward, True), point))
        except (NoSingleFormula, TraceError):
            continue
    for step, point in checked:
        _check(f, peaks, a, step, point)
    # a size of 1: torch takes views where it copies otherwise (a reshape of a batch of one), so the formulas may
    # not hold there; checked too, and where they do not (or no recording there runs), the domain starts at 2
    notes = []
    for s in values_a:
        result = _check_at_one(model, shape, dtypes, backward, f, peaks, a, domain,
                               [{**others, s: sympy.Integer(1)} for others in (values_a, values_b, far[1])])
        if isinstance(result, dict):
            checked.append((None, result))
            continue
        domain = domain + (s - 1,)
        notes.append(f"the formulas hold for {s} >= 2: " + (
            f"at {s} = 1 torch makes other tensors (views where it copies otherwise)" if result else
            f"symcost found no recording at {s} = 1 to check them against")
            + f"; give {s} = 1 as a number for that case")
    if len(values_a) > 1:
        result = _check_at_one(model, shape, dtypes, backward, f, peaks, a, domain,
                               [{s: sympy.Integer(1) for s in values_a}])
        if result is True:
            domain = domain + (sympy.Add(*values_a) - len(values_a),)
            notes.append(f"the formulas do not hold where {', '.join(map(str, values_a))} are all 1")
        elif isinstance(result, dict):
            checked.append((None, result))
    return _result(f, a, domain, [p for _, p in checked], peaks, notes, decode)


def _check_at_one(model, shape, dtypes, backward, f, peaks, a, domain, points):
    """The first of ``points`` in the domain where the model runs: checked (its assignment returned), or True where
    the formulas differ there; False where no point could be recorded."""
    for point in points:
        if any(int(d.xreplace(point)) < 1 for d in domain):
            continue
        try:
            step = _run(model, shape_at(shape, point), dtypes, backward, True)
        except (NoSingleFormula, TraceError):
            continue
        try:
            _check(f, peaks, a, step, point)
        except NoSingleFormula:
            return True
        return point
    return False


def _result(f: StepFormulas, step: StepMemory, domain, checked, peaks, notes=(), decode: bool = False):
    if not peaks:
        peaks = f.peak({})
    notes = list(notes)
    parts = {"params": sympy.Integer(sum(step.params.values())),
             "buffers": sympy.Integer(sum(step.buffers.values()) + step.other),
             "inputs": f.inputs()}
    if step.other:
        notes.append(f"buffers include {step.other:,} bytes of tensors the model holds outside its parameters and "
                     "buffers")
    if step.recording.backward_start is not None:
        parts["gradients"] = sympy.Integer(step.gradients)
        parts["saved_activations"] = f.saved()
    layers = f.saved_by_module() if step.recording.backward_start is not None else {}
    if decode:  # the cache: what the step's wrapper allocates before the decoder runs (see _decode_step)
        first = next(ev.first_op for ev in step.recording.modules if ev.name == "model")
        cache: dict = {}
        for t, x in zip(f.terms, step.allocs):
            if x.op < first:
                cache[t[1]] = cache.get(t[1], 0) + t[0]
        parts["kv_cache"] = sum_expr(cache)
    labelled = [(_label(step, k), e) for k, e in peaks]
    rec = step.recording
    positions = Positions([ev.op for ev in rec.ops], [ev.module for ev in rec.ops], rec.backward_start,
                          [k for k, _ in peaks], f)
    unique = []
    for p in checked:
        if p not in unique:
            unique.append(p)
    return parts, labelled, domain, unique, notes, layers, positions


def _check(f: StepFormulas, peaks, a: StepMemory, step: StepMemory, values: dict) -> None:
    """The formulas against a recording at ``values`` (sizes no formula was derived from)."""
    at = describe(values)
    if [ev.op for ev in step.recording.ops] != [ev.op for ev in a.recording.ops]:
        raise NoSingleFormula(f"the model runs other ops at {at} than at the trace sizes: no single formula")
    if [x.shape_key() for x in step.allocs] != [x.shape_key() for x in a.allocs]:
        raise NoSingleFormula(f"the step's tensors live and die at other ops at {at} than at the trace sizes")
    memo: dict = {}
    for x, t in zip(step.allocs, f.terms):
        if term_value(t, values, memo) != x.nbytes:
            ev = step.recording.ops[x.op]
            raise NoSingleFormula(f"{ev.op} in {ev.module or 'the model'}: its output's formula gives "
                                  f"{term_value(t, values, memo)} bytes at {at}, torch {x.nbytes}")
    for n, t in f.input_terms.items():
        if term_value(t, values, memo) != step.inputs[n][0]:
            raise NoSingleFormula(f"an input's bytes differ from the formula at {at}")
    if (step.params, step.buffers, step.other, step.gradients, step.input_saved_in, step.other_saved_in) != \
            (a.params, a.buffers, a.other, a.gradients, a.input_saved_in, a.other_saved_in):
        raise NoSingleFormula(f"the parameters, buffers or gradients differ at {at}")
    got = numbers(step)
    subs = {s: sympy.Integer(v) for s, v in values.items()}
    predicted = max(int(e.xreplace(subs)) for _, e in peaks)
    if predicted != got["peak"] or int(f.saved().xreplace(subs)) != got["saved"]:
        raise NoSingleFormula(f"the peak or the saved activations differ from the formula at {at}: "
                              f"{predicted} vs {got['peak']} bytes")
