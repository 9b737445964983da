"""Sizes a model reads off another tensor come out as formulas, exact at sizes of every residue.

Each pattern is a tiny module, derived once in H and W and checked against torch on the real module (meta tensors):
``FlopCounterMode`` for the totals, and the shapes torch gives the tensors involved (stored by the module's forward)
for the rows they land in.  Then the torchvision segmentation models, built as their published weights are.
"""
from __future__ import annotations

import pytest
import sympy
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from symcost.tracing import trace

#: odd and even, every residue mod 4, multiples of 32, non-square
SIZES = [(37, 50), (64, 96), (65, 63), (70, 45), (99, 98), (128, 160)]


class ResizeToSkip(nn.Module):
    """A decoder that resizes to its skip connections: ``F.interpolate(x, size=skip.shape[-2:])``, at skips of three
    different downsampling formulas."""

    def __init__(self):
        super().__init__()
        self.enc1 = nn.Conv2d(3, 8, 3, stride=2)               # floor((H - 3)/2) + 1
        self.enc2 = nn.Conv2d(8, 8, 3, stride=2, padding=1)
        self.mid = nn.Conv2d(8, 8, 5, stride=3, padding=2)
        self.dec2 = nn.Conv2d(16, 8, 3, padding=1)
        self.dec1 = nn.Conv2d(16, 4, 3, padding=1)

    def forward(self, x):
        s1 = self.enc1(x)
        s2 = self.enc2(s1)
        y = F.interpolate(self.mid(s2), size=s2.shape[-2:], mode="bilinear", align_corners=False)
        self.shapes = [tuple(y.shape)]
        y = F.interpolate(self.dec2(torch.cat([y, s2], 1)), size=s1.shape[-2:], mode="nearest")
        self.shapes.append(tuple(y.shape))
        y = F.interpolate(self.dec1(torch.cat([y, s1], 1)), size=x.shape[-2:], mode="bilinear")
        self.shapes.append(tuple(y.shape))
        return y


class _Up(nn.Module):
    """milesial/Pytorch-UNet's ``Up``: a 2x2 up-convolution (or a bilinear 2x upsampling), then padded to the
    skip's size."""

    def __init__(self, cin, cout, bilinear=False):
        super().__init__()
        if bilinear:
            self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
            self.conv = nn.Conv2d(cin + cin // 2, cout, 3, padding=1)
        else:
            self.up = nn.ConvTranspose2d(cin, cin // 2, kernel_size=2, stride=2)
            self.conv = nn.Conv2d(cin, cout, 3, padding=1)

    def forward(self, x1, x2):
        x1 = self.up(x1)
        diffY = x2.size()[2] - x1.size()[2]
        diffX = x2.size()[3] - x1.size()[3]
        x1 = F.pad(x1, [diffX // 2, diffX - diffX // 2, diffY // 2, diffY - diffY // 2])
        self.padded = tuple(x1.shape)
        return self.conv(torch.cat([x2, x1], dim=1))


class PadToSkip(nn.Module):
    """Two levels of milesial's U-Net: max-pool down, up-convolve, pad to the skip (one pixel short at odd sizes)."""

    bilinear = False

    def __init__(self):
        super().__init__()
        self.inc = nn.Conv2d(3, 8, 3, padding=1)
        self.down1 = nn.Sequential(nn.MaxPool2d(2), nn.Conv2d(8, 16, 3, padding=1))
        self.down2 = nn.Sequential(nn.MaxPool2d(2), nn.Conv2d(16, 32, 3, padding=1))
        self.up1 = _Up(32, 16, self.bilinear)
        self.up2 = _Up(16, 8, self.bilinear)

    def forward(self, x):
        x1 = self.inc(x)
        x2 = self.down1(x1)
        y = self.up1(self.down2(x2), x2)
        y = self.up2(y, x1)
        self.shapes = [self.up1.padded, self.up2.padded]
        return y


class PadToSkipBilinear(PadToSkip):
    bilinear = True


class UpToSkip(nn.Module):
    """``nn.ConvTranspose2d(...)(x, output_size=skip.shape)``: torch picks output_padding (0 or 1) per size."""

    def __init__(self):
        super().__init__()
        self.skip = nn.Conv2d(3, 8, 1)
        self.down = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.up = nn.ConvTranspose2d(8, 8, 3, stride=2, padding=1)

    def forward(self, x):
        skip = self.skip(x)
        y = self.up(self.down(x), output_size=skip.shape)
        self.shapes = [tuple(y.shape)]
        return y + skip


class GlobalAvgPool(nn.Module):
    """Global average pooling written with a window equal to the input: ``F.avg_pool2d(x, x.shape[-2:])``."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)

    def forward(self, x):
        y = self.conv(x)
        y = F.avg_pool2d(y, y.shape[-2:])
        self.shapes = [tuple(y.shape)]
        return y


#: module -> the rows (in order) whose output shapes are the tensors its forward stores in ``shapes``
CASES = {
    ResizeToSkip: lambda r: r.layer == "upsample",
    PadToSkip: lambda r: r.name.endswith("constant_pad_nd"),
    PadToSkipBilinear: lambda r: r.name.endswith("constant_pad_nd"),
    UpToSkip: lambda r: r.layer == "conv_transpose2d",
    GlobalAvgPool: lambda r: r.layer == "avgpool2d",
}

_derived: dict = {}


def _model_and_formula(cls):
    if cls not in _derived:
        model = cls().to("meta").eval()
        _derived[cls] = model, trace(model, (1, 3, "H", "W"))
    return _derived[cls]


def _run(model, h, w) -> int:
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.empty(1, 3, h, w, device="meta"))
    return counter.get_total_flops()


@pytest.mark.parametrize("cls", list(CASES), ids=lambda c: c.__name__)
def test_size_from_another_tensor_is_a_formula(cls):
    model, mc = _model_and_formula(cls)
    rows = [r for r in mc.rows if CASES[cls](r)]
    assert rows and mc.uncovered == {}
    for h, w in SIZES:
        flops = _run(model, h, w)
        values = {"H": h, "W": w}
        assert mc.evaluate(values, "torch")["flops"] == flops, (h, w)
        subs = {s: values[str(s)] for s in mc.symbols}
        got = [tuple(int(sympy.Integer(d).xreplace(subs) if isinstance(d, int) else d.xreplace(subs))
                     for d in r.cost.output_shape) for r in rows]
        assert got == model.shapes, (h, w)


def test_transposed_convolution_to_a_size_is_costed_as_called():
    """``output_size=`` decides the output, not the module's ``output_padding`` (0): the call is costed with the
    padding torch chose, here 1 at an even size, and formulas in H and W hold at both parities."""
    model, mc = _model_and_formula(UpToSkip)
    (row,) = [r for r in mc.rows if r.layer == "conv_transpose2d"]
    assert row.name == "up:convolution"
    concrete = trace(model, (1, 3, 224, 224))
    assert concrete.evaluate({}, "torch")["flops"] == _run(model, 224, 224)
    (row,) = [r for r in concrete.rows if r.layer == "conv_transpose2d"]
    assert row.args["output_padding"] == [1, 1] and model.up.output_padding == (0, 0)


def test_plain_transposed_convolution_stays_a_module_row():
    _, mc = _model_and_formula(PadToSkip)
    assert [r.name for r in mc.rows if r.layer == "conv_transpose2d"] == ["up1.up", "up2.up"]


def test_global_average_pool_window_is_the_input():
    """A window of H x W over an H x W map: one output per channel, H*W - 1 additions and 1 division each."""
    _, mc = _model_and_formula(GlobalAvgPool)
    (row,) = [r for r in mc.rows if r.layer == "avgpool2d"]
    for h, w in SIZES:
        subs = {s: {"H": h, "W": w}[str(s)] for s in mc.symbols}
        assert row.cost.op("add").xreplace(subs) == 8 * (h * w - 1)
        assert row.cost.op("div").xreplace(subs) == 8


@pytest.mark.parametrize("name", ["fcn_resnet50", "deeplabv3_mobilenet_v3_large"])
def test_segmentation_models_are_built_as_published(name):
    """torchvision's published weights carry the auxiliary head and their ``_ops`` (GMACs at 520x520) count it
    (fcn_resnet50: 152.717 with it, 142.726 without)."""
    import torchvision

    from symcost.targets import load_target

    model = load_target(f"torchvision:{name}", device="meta").eval()
    assert model.aux_classifier is not None
    mc = trace(model, (1, 3, 520, 520), target=f"torchvision:{name}")
    published = torchvision.models.get_model_weights(name).DEFAULT.meta["_ops"]
    assert round(mc.evaluate({}, "flops")["macs"] / 1e9, 3) == published
    assert mc.evaluate({}, "torch")["flops"] == _run(model, 520, 520)
