"""A resize by ``scale_factor`` has torch's output size: ``int(I * s)`` computed in double precision.  For some
factors that product rounds below the exact one at some sizes (``90 * 0.7`` is ``62.99999999999999``): there no
formula in a symbolic size is right, so the layer and the tracer refuse one (the tracer: ``NoSingleFormula``, exact
per size), and every factor they do take gives torch's size at every size tried."""
from __future__ import annotations

import pytest
import sympy
import torch
import torch.nn.functional as F
from torch import nn

import symcost
from symcost.errors import LayerError, NoSingleFormula
from symcost.layers.resize import formula_scale
from symcost.tracing import trace

SCALES = [2.0, 1.5, 0.5, 0.25, 0.1, 1.1, 0.9, 2.5, 3.0, 0.3, 0.29, 0.7, 2.3, 1 / 3, 0.6, 1.7]


def torch_size(size: int, scale: float) -> int:
    """torch's output size, 0 where torch refuses the resize (its output would be empty)."""
    try:
        return F.interpolate(torch.empty(1, 1, size, device="meta"), scale_factor=scale).shape[-1]
    except RuntimeError:
        assert int(size * scale) == 0
        return 0


@pytest.mark.parametrize("scale", SCALES)
def test_a_formula_is_given_only_where_it_is_torchs_size(scale):
    h = sympy.Symbol("H", integer=True, positive=True)
    layer = symcost.layer("upsample", symbolic=False, scale_factor=scale)
    if not formula_scale(scale):
        with pytest.raises(LayerError, match="double precision"):
            layer.cost((1, 1, h))
        return
    (size,) = layer.cost((1, 1, h)).output_shape[2:]
    for n in range(1, 1201):
        assert int(size.subs(h, n)) == torch_size(n, scale), (scale, n)


def test_the_factors_refused_do_miss_torchs_size_somewhere():
    # the rule is not needlessly strict where it matters: these factors' exact-decimal formula is wrong at some size
    for scale, size in ((0.29, 100), (0.7, 90), (2.3, 50), (1 / 3, 3)):
        assert not formula_scale(scale)
        assert int(sympy.floor(size * sympy.Rational(str(scale)))) != torch_size(size, scale)


@pytest.mark.parametrize("scale", SCALES)
def test_concrete_sizes_are_always_torchs(scale):
    layer = symcost.layer("upsample", symbolic=False, scale_factor=scale)
    for n in (3, 50, 90, 100, 224, 1000):
        want = torch_size(n, scale)
        if want == 0:
            with pytest.raises(LayerError, match="output size would be"):
                layer.cost((1, 1, n))
        else:
            assert int(layer.cost((1, 1, n)).output_shape[2]) == want, (scale, n)


class Resize(nn.Module):
    def __init__(self, scale: float):
        super().__init__()
        self.scale = scale

    def forward(self, x):
        return F.interpolate(x, scale_factor=self.scale) + 1


def test_the_tracer_refuses_a_formula_torchs_rounding_breaks_and_is_exact_per_size():
    with pytest.raises(NoSingleFormula):
        trace(Resize(0.7), (1, 3, "H", "W"))
    mc = trace(Resize(0.7), (1, 3, 90, 90))
    assert tuple(int(d) for d in mc.rows[0].cost.output_shape) == (1, 3, 62, 62)   # torch: int(90 * 0.7) = 62
    mc = trace(nn.Upsample(scale_factor=0.7), (1, 3, 90, 90))
    assert tuple(int(d) for d in mc.rows[0].cost.output_shape) == (1, 3, 62, 62)


@pytest.mark.parametrize("model", [Resize(0.1), nn.Upsample(scale_factor=1.5), nn.Upsample(scale_factor=0.1)])
def test_the_tracer_keeps_a_formula_that_is_torchs_size(model):
    mc = trace(model, (1, 3, "H", "W"))
    h, w = sorted(mc.symbols, key=str)
    for n in (17, 90, 100, 224, 255):
        want = tuple(model(torch.empty(1, 3, n, n + 1, device="meta")).shape)
        assert tuple(int(sympy.sympify(d).subs({h: n, w: n + 1})) for d in mc.rows[0].cost.output_shape) == want
