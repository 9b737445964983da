"""Data movement without arithmetic: copies, concatenation, repeats, gathers and scatters, padding -- each op's cost
(every input read once, the output written) beside its shape rule, and the backward kernels (slice/select backward,
index_put, scatter_add, pad backward)."""
from __future__ import annotations

import sympy

from ...layers.gradients import IndexPutAccumulate, PadBackward
from ..handlers import handles, shapes
from ..op_args import arg, axis_list, catalog_layer, grads_like, layer_for_op
from ..record import TensorRef


_COPY_OPS = ("aten.cat", "aten.constant_pad_nd", "aten.clone", "aten.copy_", "aten.roll", "aten.index",
             "aten._to_copy", "aten.stack", "aten.gather", "aten.index_select", "aten.tril", "aten.triu")


@handles(*_COPY_OPS, output="inputs")
def _copy(ev, S, concrete, sym):
    first = ev.args[0]
    ins = [t for t in (first if isinstance(first, (list, tuple)) else [first])
           if isinstance(t, TensorRef) and 0 not in concrete[t.index]]  # empty tensors move nothing
    return catalog_layer("copy"), (*[S(t) for t in ins], sym[ev.outputs[0]])


@handles("aten.scatter", "aten.scatter_", "aten.repeat", "aten.flip", "aten.reflection_pad1d", "aten.reflection_pad2d",
         "aten.reflection_pad3d", "aten.replication_pad1d", "aten.replication_pad2d", "aten.replication_pad3d",
         output="inputs")
def _movement(ev, S, concrete, sym):
    """Data movement without arithmetic: every tensor argument read once, the output written."""
    ins = [t for t in ev.args if isinstance(t, TensorRef) and 0 not in concrete[t.index]]
    return catalog_layer("copy"), (*[S(t) for t in ins], sym[ev.outputs[0]])


@shapes("aten.repeat")
def _repeat(ev, p, concrete, sym):
    xs, reps = p.s(ev.args[0]), list(ev.args[1])
    xs = (sympy.Integer(1),) * (len(reps) - len(xs)) + tuple(xs)
    return [tuple(x * r for x, r in zip(xs, reps))]


@shapes("aten.cat")
def _cat(ev, p, concrete, sym):
    parts = [t for t in ev.args[0]]
    d = arg(ev, 1, "dim", 0)
    sizes = [p.s(t) for t in parts if len(p.s(t)) > 0]
    d %= len(sizes[0])
    total = sympy.Add(*[s[d] for s in sizes])
    return [tuple(total if i == d else s for i, s in enumerate(sizes[0]))]


def _same_padding(p, ev) -> dict:
    """TF-style "same" padding computed from the input size (timm's ``pad_same``, inside ``Conv2dSame`` and
    ``MaxPool2dSame``): the padded size before a window of span e = d(k-1)+1 and stride s is
    max(x, (ceil(x/s) - 1) s + e).  Found when the pad's consumer is a convolution or pool run by the same module;
    returns {dim: padded size} for the dims that formula explains at both trace sizes."""
    out, n = {}, ev.outputs[0]
    consumer = next((e for e in p.a.ops if n in e.inputs), None)
    if consumer is None or consumer.module != ev.module or consumer is ev:
        return out
    if consumer.op != "aten.convolution" and not consumer.op.startswith(("aten.max_pool", "aten.avg_pool")):
        return out
    try:
        found = layer_for_op(consumer, p.sym, p.a.shapes)  # the window, as the consumer's handler decodes it
    except (IndexError, TypeError, ValueError):
        return out
    window = found[0] if found else None
    if window is None or getattr(window, "output_padding", None) is not None:  # a transposed convolution: no
        return out
    kernel, stride = window.kernel_size, window.stride
    dilation = getattr(window, "dilation", (1,) * len(kernel))  # average pooling has none
    d = len(kernel)
    xs = p.s(ev.args[0])
    for i, (k, s, dl) in enumerate(zip(axis_list(kernel, d), axis_list(stride, d), axis_list(dilation, d))):
        dim = len(xs) - d + i
        span = dl * (k - 1) + 1
        padded = (sympy.ceiling(xs[dim] / s) - 1) * s + span
        if span < s:  # the formula can fall below x: no padding then
            padded = sympy.Max(xs[dim], padded)
        if p.value(padded) == (p.a.shapes[n][dim], p.b.shapes[n][dim]):
            out[dim] = padded
    return out


@shapes("aten.constant_pad_nd", "aten.reflection_pad1d", "aten.reflection_pad2d", "aten.reflection_pad3d",
        "aten.replication_pad1d", "aten.replication_pad2d", "aten.replication_pad3d")
def _pad(ev, p, concrete, sym):
    """The padded size: TF "same" padding; the size of the tensor it is then concatenated with (U-Net's
    pad-to-skip, ``diff // 2`` and ``diff - diff // 2`` of ``diff = skip - x``, which may be 0 at every recording);
    x + lo + hi for pads the same in every recording; padding up to a multiple of k; else pads computed from
    another tensor's size, where the padded size is a tensor dim seen earlier with the same sizes."""
    xs = list(p.s(ev.args[0]))
    n = ev.outputs[0]
    evc = p.third_op()
    pads, pads_b = list(ev.args[1]), list(p.evb.args[1])
    pads_c = list(evc.args[1]) if evc is not None else pads
    same = _same_padding(p, ev) if ev.op == "aten.constant_pad_nd" else {}
    joined = _concatenated_with(p, n) if ev.op == "aten.constant_pad_nd" else {}
    for i in range(len(pads) // 2):
        d = len(xs) - 1 - i
        lo, hi = pads[2 * i], pads[2 * i + 1]
        target = (p.a.shapes[n][d], p.b.shapes[n][d])
        if d in same:
            xs[d] = same[d]
        elif d in joined:
            xs[d] = joined[d]
        elif (lo, hi) == (pads_b[2 * i], pads_b[2 * i + 1]) == (pads_c[2 * i], pads_c[2 * i + 1]):
            xs[d] = xs[d] + lo + hi
        else:  # padding up to a multiple of k (window attention): ceil(x/k)*k
            xa, xb = p.value(xs[d])
            for k in range(2, 65):
                if (-(-xa // k) * k, -(-xb // k) * k) == target and lo == 0 and pads_b[2 * i] == 0:
                    xs[d] = sympy.ceiling(xs[d] / k) * k
                    break
            else:  # pads computed from another tensor's size: the padded size is that tensor's
                xs[d] = p.explained((*target, p.third_size(n, d)), (n, d), (xs[d],))
    return [tuple(xs)] if all(x is not None for x in xs) else None


def _concatenated_with(p, n: int) -> dict:
    """{dim: size} of a tensor that tensor ``n`` is next concatenated with (``torch.cat([x2, x1], dim=1)`` after
    padding x1 to x2), for the dims other than the concatenated one where both have the same sizes in every
    recording: torch.cat refuses any other size, so wherever the model runs the padded size is that tensor's."""
    consumer = next((e for e in p.a.ops[p.current + 1:] if n in e.inputs), None)
    if consumer is None or consumer.op != "aten.cat" or not isinstance(consumer.args[0], (list, tuple)):
        return {}
    rank = len(p.a.shapes[n])
    along = arg(consumer, 1, "dim", 0) % rank
    out: dict = {}
    for t in consumer.args[0]:
        if not isinstance(t, TensorRef) or t.index == n or p.sym[t.index] is None or len(p.sym[t.index]) != rank:
            continue
        for d in range(rank):
            same = p.a.shapes[t.index][d] == p.a.shapes[n][d] and p.b.shapes[t.index][d] == p.b.shapes[n][d] and \
                p.third_size(t.index, d) == p.third_size(n, d)
            if d != along and same and d not in out:
                out[d] = p.sym[t.index][d]
    return out


@handles("aten.slice_backward", "aten.select_backward", output="inputs")
def _scatter_copy(ev, S, concrete, sym):
    # the gradient written into a zeroed tensor of the input's size: data movement only (an empty gradient, of
    # the unrotated part of a head that rotary embeddings cover whole, is read from nowhere)
    go = ev.args[0].index
    return catalog_layer("copy"), (*([sym[go]] if 0 not in concrete[go] else []), sym[ev.outputs[0]])


@handles("aten.index_put", output="inputs")
def _index_put(ev, S, concrete, sym):
    x, _indices, values = ev.args[:3]
    accumulate = ev.args[3] if len(ev.args) > 3 else ev.kwargs.get("accumulate", False)
    if not accumulate:
        return catalog_layer("copy"), (sym[values.index], sym[ev.outputs[0]])
    return IndexPutAccumulate(), (sym[x.index], sym[values.index])


@handles("aten.scatter_add", output="inputs")
def _scatter_add(ev, S, concrete, sym):
    x, _dim, _index, src = ev.args[:4]
    return IndexPutAccumulate(), (sym[x.index], sym[src.index])   # the gradient of a gather: add every row


#: the backward of each reflection and replication pad (the forward is a copy: ``_movement``)
PAD_BACKWARDS = tuple(f"aten.{kind}_pad{d}d_backward" for kind in ("reflection", "replication") for d in (1, 2, 3))


@handles(*PAD_BACKWARDS, output="inputs")
def _pad_backward(ev, S, concrete, sym):
    go, x = ev.args[:2]
    return PadBackward(), (sym[x.index], sym[go.index])


@shapes(*PAD_BACKWARDS)
def _pad_backward_shape(ev, p, concrete, sym):
    return grads_like(p, ev.args[1])
