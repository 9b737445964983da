"""``F.interpolate(mode="nearest-exact")`` on 1-D, 2-D and 3-D inputs: costed forward and backward, its symbolic
output shape equal to the one torch computes at sizes of every residue."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from symcost.tracing import trace


class Probe(nn.Module):
    """A 1x1 convolution (so the resize has a gradient to pass back), the resize, then ``y @ y.T``: FlopCounterMode
    counts that product as 2 * numel(y), so the 'torch' total equals it only if the resize's output size is right."""

    def __init__(self, dims: int, scale: float):
        super().__init__()
        self.conv = (nn.Conv1d, nn.Conv2d, nn.Conv3d)[dims - 1](3, 3, 1)
        self.scale = scale

    def forward(self, x):
        y = F.interpolate(self.conv(x), scale_factor=self.scale, mode="nearest-exact").reshape(1, -1)
        return y @ y.transpose(0, 1)


def at(expr, values: dict) -> int:
    """``expr`` at the named sizes (the trace's symbols carry assumptions: matched by name)."""
    return int(expr.subs({s: values[str(s)] for s in getattr(expr, "free_symbols", ())}))


def step_flops(model, shape) -> int:
    with FlopCounterMode(display=False) as counter:
        model(torch.zeros(*shape, device="meta")).sum().backward()
    return counter.get_total_flops()


#: per dims: the symbolic spatial axes and concrete sizes of every residue (odd, even, multiples of 32)
SPATIAL = {1: (("L",), [(17,), (32,), (45,), (64,)]),
           2: (("H", "W"), [(17, 23), (32, 64), (30, 45)]),
           3: (("D", "H", "W"), [(5, 7, 9), (8, 6, 4), (3, 32, 11)])}


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("scale", [2.0, 1.5])
def test_nearest_exact_costed_forward_and_backward(dims, scale):
    names, sizes = SPATIAL[dims]
    model = Probe(dims, scale).to("meta")
    mc = trace(model, (1, 3, *names), backward=True)
    assert mc.uncovered == {}, mc.uncovered
    forward = [r for r in mc.rows if r.layer == "upsample" and not r.backward]
    backward = [r for r in mc.rows if r.layer == "upsample_nearest_backward"]
    assert len(forward) == 1 and len(backward) == 1, [(r.layer, r.backward) for r in mc.rows]
    for spatial in sizes:
        values = dict(zip(names, spatial))
        x = torch.zeros(1, 3, *spatial, device="meta")
        out = tuple(F.interpolate(x, scale_factor=scale, mode="nearest-exact").shape)
        assert tuple(at(d, values) for d in forward[0].cost.output_shape) == out, spatial
        # the gradient is the input's shape; one add per output gradient element (a scatter-add)
        assert tuple(at(d, values) for d in backward[0].cost.output_shape) == tuple(x.shape)
        n_out = 3 * int(torch.Size(out[2:]).numel())
        assert at(backward[0].cost.ops["add"], values) == n_out
        assert mc.evaluate(values, "torch")["flops"] == step_flops(model, x.shape), spatial
