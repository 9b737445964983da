"""Every derivation is verified inside the library against a recording at other residues: size-dependent Python
logic that the two odd trace sizes cannot see is refused (NoSingleFormula), never a wrong number."""
import json
import math
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from symcost.errors import NoSingleFormula
from symcost.tracing import trace


class SameConv(nn.Conv2d):
    """TF-style 'same' padding computed in Python from x.shape, as timm's Conv2dSame does."""

    def forward(self, x):
        ih, iw = x.shape[-2:]
        kh, kw = self.weight.shape[-2:]
        (sh, sw), (dh, dw) = self.stride, self.dilation
        ph = max((math.ceil(ih / sh) - 1) * sh + (kh - 1) * dh + 1 - ih, 0)
        pw = max((math.ceil(iw / sw) - 1) * sw + (kw - 1) * dw + 1 - iw, 0)
        x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class SkipAtMultiplesOf32(nn.Module):
    """Runs an extra layer only when the size is not a multiple of 32 (as timm's mobilenetv5 skips an upsample at
    multiples of 32)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.extra = nn.Conv2d(8, 8, 1)

    def forward(self, x):
        y = self.conv(x)
        if x.shape[-1] % 32:
            y = self.extra(y)
        return y


class PadToMultipleOf8(nn.Module):
    """Pads the input up to a multiple of 8 (a window-attention habit): the pad is 7 at both odd trace sizes."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        pad = (-x.shape[-1]) % 8
        return self.conv(F.pad(x, [0, pad, 0, pad]))


def torch_flops_ids(model, length):
    import copy

    with torch.no_grad(), FlopCounterMode(display=False) as c:
        copy.deepcopy(model).to("meta")(torch.zeros(1, length, dtype=torch.long, device="meta"))
    return c.get_total_flops()


def torch_flops(model, shape):
    with torch.no_grad(), FlopCounterMode(display=False) as c:
        model(torch.empty(*shape, device="meta"))
    return c.get_total_flops()


@pytest.mark.parametrize("build", [PadToMultipleOf8])
def test_size_dependent_python_logic_is_refused(build):
    model = build().to("meta").eval()
    # the premise: at both trace sizes (225 and 193, both = 1 mod 32) the model takes the same path, and a
    # formula fitted there would be wrong at 224; symcost must refuse rather than print it
    with pytest.raises(NoSingleFormula) as e:
        trace(model, (1, 3, "H", "W"))
    # refused at a check point: the far one (448x352), or, where the far recording made the derivation fit it
    # too (the pad read as ceil(H/8)*8), one whose halvings alternate in parity (170x213)
    assert "no single formula holds" in str(e.value)
    assert "H=448, W=352" in str(e.value) or "H=170, W=213" in str(e.value)


def test_a_branch_on_a_residue_becomes_the_domain():
    """``if W % 32:`` is a guard the symbolic run reads: the formula of the path traced (W not a multiple of 32)
    holds exactly where the guard does, and a multiple of 32 is outside it (traced on its own by --at)."""
    from symcost.errors import OutsideProvenDomain

    model = SkipAtMultiplesOf32().to("meta").eval()
    mc = trace(model, (1, 3, "H", "W"))
    for h, w in ((225, 225), (224, 225), (64, 97), (33, 250)):
        assert mc.evaluate({"H": h, "W": w}, "torch")["flops"] == torch_flops(model, (1, 3, h, w)), (h, w)
    for w in (32, 224, 448):  # the other path: the extra 1x1 conv is skipped, so the formula would be wrong
        with pytest.raises(OutsideProvenDomain, match="Mod\\(W, 32\\) != 0"):
            mc.evaluate({"H": 100, "W": w}, "torch")


def test_same_padding_is_a_formula_exact_at_every_residue():
    """TF-style 'same' padding: the pad is max((ceil(x/s) - 1)s + k - x, 0), 2 at odd and 1 at even sizes for k=3,
    s=2; symcost derives the padded size as that formula (or would refuse): exact at odd, even and multiples of 32."""
    model = nn.Sequential(SameConv(3, 8, 3, stride=2), nn.ReLU()).to("meta").eval()
    # at 224: pad 1 -> 225 -> output 112; at 225: pad 2 -> 227 -> output 113
    assert torch_flops(model, (1, 3, 224, 224)) == 2 * 3 * 9 * 8 * 112 * 112
    assert torch_flops(model, (1, 3, 225, 225)) == 2 * 3 * 9 * 8 * 113 * 113
    try:
        mc = trace(model, (1, 3, "H", "W"))
    except NoSingleFormula:
        return
    for h, w in ((224, 224), (225, 225), (256, 97), (31, 64), (320, 288)):
        assert mc.evaluate({"H": h, "W": w}, "torch")["flops"] == torch_flops(model, (1, 3, h, w)), (h, w)


def test_per_size_tracing_stays_exact_for_refused_models(tmp_path):
    """The refusal offers --at, which traces each size on its own: exact at every residue."""
    src = tmp_path / "nets.py"
    src.write_text("import math\nimport torch.nn.functional as F\nfrom torch import nn\n"
                   + "\n".join(__import__("inspect").getsource(PadToMultipleOf8).splitlines()) + "\n\n"
                   "def build():\n    return nn.Sequential(PadToMultipleOf8(), nn.ReLU())\n")
    env = {**os.environ, "SYMCOST_CACHE_DIR": str(tmp_path / "cache")}
    r = subprocess.run([sys.executable, "-m", "symcost.cli", "model", f"{src}:build", "--input", "1x3xHxW",
                        "--at", "H=224,225,256", "--at", "W=200", "--convention", "torch", "--json"],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert "no single formula" in " ".join(data["notes"])
    model = nn.Sequential(PadToMultipleOf8(), nn.ReLU()).to("meta")
    for e in data["evaluations"]:
        assert e["total"]["flops"] == torch_flops(model, (1, 3, e["values"]["H"], e["values"]["W"]))
    r = subprocess.run([sys.executable, "-m", "symcost.cli", "model", f"{src}:build", "--input", "1x3xHxW"],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 2 and "no single formula" in r.stderr and "Traceback" not in r.stderr


def test_a_plain_cnn_passes_verification_and_is_exact_at_every_residue():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2, ceil_mode=True),
                          nn.Conv2d(8, 16, 5, stride=3), nn.AdaptiveAvgPool2d(1)).to("meta").eval()
    mc = trace(model, ("B", 3, "H", "W"))
    for b, h, w in ((1, 224, 224), (2, 256, 192), (3, 97, 130), (4, 64, 65)):
        assert mc.evaluate({"B": b, "H": h, "W": w}, "torch")["flops"] == torch_flops(model, (b, 3, h, w))


class FixedSize(nn.Module):
    """Accepts 32x32 only, as a ViT without dynamic_img_size accepts its own size only."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.pretrained_cfg = {"input_size": (3, 32, 32)}   # how timm states a model's size

    def forward(self, x):
        torch._assert(x.shape[-1] == 32 and x.shape[-2] == 32, "Input size must be 32x32")
        return self.conv(x)


def test_a_model_that_runs_at_its_own_size_only_is_derived_there_with_a_note():
    model = FixedSize().to("meta")
    from symcost.tracing import model_input_size

    mc = trace(model, (1, 3, "H", "W"), default_shape=model_input_size(model))
    assert mc.fixed_at == {"H": 32, "W": 32}
    assert any("no formula in H, W" in n for n in mc.notes)
    # 4 x 30 x 30 outputs x 27 MACs = 97200
    assert mc.evaluate({"H": 32, "W": 32}, "macs")["macs"] == 4 * 30 * 30 * 27
    with pytest.raises(NoSingleFormula):
        mc.evaluate({"H": 64, "W": 32})
    with pytest.raises(NoSingleFormula):
        mc.summary().evaluate([{"H": 64, "W": 32}], "macs")


def test_trace_sizes_can_be_chosen():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2)).to("meta")
    mc = trace(model, (1, 3, "H", "W"), sizes=({"H": 101, "W": 99}, {"H": 75, "W": 67}))
    assert mc.evaluate({"H": 64, "W": 64}, "torch")["flops"] == torch_flops(model, (1, 3, 64, 64))


@pytest.mark.parametrize("sizes, message", [("R=241", "expected NAME=A:B"), ("R=5:5", "must differ"),
                                            ("Q=9:7", "no symbol 'Q'"), ("R=0:7", "expected NAME=A:B")])
def test_cli_trace_sizes_bad_input(sizes, message):
    r = subprocess.run([sys.executable, "-m", "symcost.cli", "model", "torchvision:resnet18", "--input", "1x3xRxR",
                        "--trace-sizes", sizes, "--no-cache"], capture_output=True, text=True)
    assert r.returncode == 2 and message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_cli_trace_sizes_chosen_by_the_user(tmp_path):
    env = {**os.environ, "SYMCOST_CACHE_DIR": str(tmp_path)}
    r = subprocess.run([sys.executable, "-m", "symcost.cli", "model", "torchvision:resnet18", "--input", "1x3xRxR",
                        "--trace-sizes", "R=161:129", "--at", "R=224", "--json"], capture_output=True, text=True,
                       env=env)
    assert r.returncode == 0, r.stderr
    # torchvision: resnet18 1.814 GMACs at 224
    assert round(json.loads(r.stdout)["evaluations"][0]["total"]["macs"] / 1e9, 3) == 1.814


@pytest.mark.parametrize("model_type, limit_field", [("bert", "max_position_embeddings"), ("gpt2", "n_positions")])
def test_sequence_length_limit_is_part_of_the_domain(model_type, limit_field):
    """Torch refuses a sequence longer than the position table (on real tensors); so does the formula."""
    transformers = pytest.importorskip("transformers")
    config = transformers.AutoConfig.for_model(model_type, **{limit_field: 40}, vocab_size=50, hidden_size=16,
                                               num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                                               n_embd=16, n_layer=1, n_head=2)
    model = transformers.AutoModel.from_config(config).eval()
    mc = trace(model, (1, "L"), input_dtype="int64", sizes=({"L": 33}, {"L": 17}))
    # on meta, as elsewhere: on CPU, FlopCounterMode does not count the fused attention kernel
    assert mc.evaluate({"L": 40}, "torch")["flops"] == torch_flops_ids(model, 40)
    with pytest.raises(Exception):        # the premise: torch refuses 41 positions on a CPU model
        with torch.no_grad():
            model(torch.zeros(1, 41, dtype=torch.long))
    with pytest.raises(ValueError, match="cannot take L=41"):
        mc.evaluate({"L": 41})


def test_sizes_that_deep_downsampling_makes_equal_stay_symbolic():
    """Six stride-2 convolutions: 225 and 193 both end at 4 (225->113->57->29->15->8->4, 193->97->49->25->13->7->4),
    and so does 256; a size that agrees at every recording would pass as the constant 4.  The trace sizes are 64
    apart and the check lies above both, so the formula stays exact where the size is 5 (288: ...->9->5)."""
    layers = []
    for c_in, c_out in ((3, 8), (8, 8), (8, 8), (8, 8), (8, 8), (8, 8)):
        layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.ReLU()]
    model = nn.Sequential(*layers, nn.Conv2d(8, 4, 1)).to("meta").eval()
    mc = trace(model, (1, 3, "H", "W"))
    for h, w in ((288, 320), (224, 225), (97, 130), (512, 64)):
        assert mc.evaluate({"H": h, "W": w}, "torch")["flops"] == torch_flops(model, (1, 3, h, w)), (h, w)


class ResizeByOffsets(nn.Module):
    """Resizes to (H - 1, W + 1), sizes computed in Python: at the odd trace sizes H - 1 equals 2*floor(H/2) and
    W + 1 equals 2*ceil(W/2), so two recordings cannot tell these formulas apart; the far check point can."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        return self.conv(F.interpolate(x, size=(x.shape[2] - 1, x.shape[3] + 1)))


def test_a_size_two_formulas_fit_at_both_trace_sizes_is_told_apart_by_the_third_recording():
    model = ResizeByOffsets().to("meta")
    mc = trace(model, (1, 3, "H", "W"))
    for h, w in ((448, 352), (30, 31), (33, 64), (17, 16)):   # even, odd, multiples of 32
        with FlopCounterMode(display=False) as c:
            model(torch.zeros(1, 3, h, w, device="meta"))
        # the conv: 4 x (h - 3) x (w - 1) outputs x 27 MACs x 2
        assert mc.evaluate({"H": h, "W": w}, "torch")["flops"] == c.get_total_flops() == 2 * 27 * 4 * (h - 3) * (w - 1)
