"""Every costed forward op's backward is costed too, in the same module: an op's record (cost handler, shape rule)
sits beside its backward kernel's in one family module of ``tracing/ops``, so the two cannot drift apart.

The pairs come from torch itself: each aten op with a cost handler whose ``<op>_backward`` exists in
``torch.ops.aten`` and is dispatched as its own op (not decomposed before the recorder sees it).
"""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import symcost
from symcost.tracing.handlers import HANDLERS, handler_for

#: backward ops still without a cost handler, each with its reason: the test fails when one gets a handler (drop it)
#: or a new one appears; a training step that meets one reports it as uncovered (never counted as zero)
KNOWN = {
    # antialiased resizing: its forward is exact at a concrete size only (refused in symbols); its backward waits
    "aten._upsample_bicubic2d_aa_backward": "antialiased resize backward: reported as uncovered",
    "aten._upsample_bilinear2d_aa_backward": "antialiased resize backward: reported as uncovered",
    # a training step records max_pool2d as max_pool2d_with_indices, whose backward is costed
    "aten.max_pool2d_backward": "never recorded in a training step (with_indices is)",
}


def backward_pairs() -> dict[str, str]:
    out = {}
    for op, record in HANDLERS.items():
        if record.fn is None or not op.startswith("aten.") or "backward" in op:
            continue
        base = op[len("aten."):].rstrip("_")
        name = f"{base}_backward"
        if hasattr(torch.ops.aten, name) and not torch._C._dispatch_has_kernel_for_dispatch_key(
                f"aten::{name}", "CompositeImplicitAutograd"):   # decomposed ops never reach the recorder
            out[op] = f"aten.{name}"
    return out


def test_every_costed_forward_op_has_its_backward_costed():
    pairs = backward_pairs()
    assert "aten.convolution" in pairs and "aten.reflection_pad2d" in pairs   # the finder finds real pairs
    missing = {b for b in pairs.values() if handler_for(b) is None}
    assert missing <= set(KNOWN), f"forward ops costed, their backward not: {sorted(missing - set(KNOWN))}"
    assert set(KNOWN) <= missing, f"now costed, drop from KNOWN: {sorted(set(KNOWN) - missing)}"


def test_a_forward_op_and_its_backward_live_in_one_family_module():
    pairs = {f: b for f, b in backward_pairs().items() if handler_for(b) is not None}
    apart = {f: (HANDLERS[f].fn.__module__, HANDLERS[b].fn.__module__) for f, b in pairs.items()
             if HANDLERS[f].fn.__module__ != HANDLERS[b].fn.__module__}
    assert len(pairs) > 20 and apart == {}
    # the records of the families: forward handlers, their shape rules and the backward kernels' in tracing/ops
    modules = {h.where.rsplit(".", 1)[0] for h in HANDLERS.values() if not h.user}
    assert modules == {f"symcost.tracing.ops.{m}" for m in ("movement", "norms", "pointwise", "products",
                                                            "reductions", "resize", "views", "windows")}


@pytest.mark.parametrize("pad, grown", [
    (nn.ReflectionPad2d(2), (4, 4)),              # 2 on every side: H + 4, W + 4
    (nn.ReplicationPad2d((1, 2, 3, 0)), (3, 3)),  # (left, right, top, bottom): W + 1 + 2, H + 3 + 0
])
@pytest.mark.parametrize("h, w", [(17, 23), (32, 64), (30, 45)])
def test_a_pad_backward_adds_each_output_gradient_once(pad, grown, h, w):
    model = nn.Sequential(nn.Conv2d(3, 4, 1), pad, nn.Conv2d(4, 4, 3))
    mc = symcost.trace(model, (1, 3, "H", "W"), backward=True)
    assert mc.uncovered == {}
    row = next(r for r in mc.rows if r.cost.layer == "pad_backward")
    at = {s: v for s, v in zip(sorted(mc.symbols, key=str), (h, w))}
    # the padded output's gradient, 1 x 4 x (H + grown) x (W + grown), each element added once into the input's
    assert int(row.cost.ops["add"].subs(at)) == 4 * (h + grown[0]) * (w + grown[1])
    assert [int(d.subs(at)) for d in row.cost.output_shape] == [1, 4, h, w]
    # the whole step under the torch convention still equals FlopCounterMode (which counts a pad's backward as 0)
    x = torch.ones(1, 3, h, w)
    with FlopCounterMode(display=False) as counter:
        model(x).backward(torch.ones(1, 4, h + grown[0] - 2, w + grown[1] - 2))
    assert int(mc.total("torch")["flops"].subs(at)) == counter.get_total_flops()
