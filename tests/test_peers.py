"""Peer tools: every preset's total equals the real tool's own output, exactly; the quirks' evidence holds.

Each tool is really run (fvcore, thop, ptflops, torchprofile; a missing one is skipped).  The six torchvision models
are traced once each by symcost and run once by each tool on a real 1x3x224x224 input (weights=None, eval mode).
"""
import functools
import json
import subprocess
import sys

import pytest
import sympy
import torch
import torch.nn.functional as F
from torch import nn

from symcost import CONVENTIONS, layer
from symcost.conventions import CORE, Convention, weight_table
from symcost.cost import to_int
from symcost.peers import PEER_CONVENTIONS, PEERS
from symcost.targets import load_target
from symcost.tracing import trace

TOOLS = list(PEERS)
MODELS = ["resnet18", "resnet50", "mobilenet_v2", "vgg16_bn", "densenet121", "efficientnet_b0"]
SHAPE = (1, 3, 224, 224)


def peer(name: str):
    """The peer, skipping the test when its tool is not installed (or does not import)."""
    pytest.importorskip(PEERS[name].module)
    return PEERS[name]


def preset(model_cost, tool: str) -> int:
    return to_int(model_cost.total(tool)["flops"])


# ---- whole models: preset == the tool's own number ------------------------------------------------------------

# one model alive at a time: the parametrisation below keeps each model's tools together
@functools.lru_cache(maxsize=1)
def _model(name: str):
    torch.manual_seed(0)
    model = load_target(f"torchvision:{name}").eval()
    return model, trace(model, SHAPE, target=name), torch.randn(*SHAPE)


@pytest.mark.sampled(every=2)  # a slow corpus: the default run takes a fixed sample (conftest.py)
@pytest.mark.slow
@pytest.mark.parametrize("name, tool", [(m, t) for m in MODELS for t in TOOLS])
def test_preset_equals_the_tool_on_torchvision_models(name, tool):
    p = peer(tool)
    model, mc, x = _model(name)
    ours = preset(mc, tool)
    theirs = p.run(model, x)
    assert ours == theirs, (name, tool, ours, theirs, {f: int(v) for f, v in mc.by_family(tool).items()})
    # nothing the reproduction relies on is missing from the trace
    assert not mc.uncovered, mc.uncovered


# ---- single layers: the rules and the quirks' evidence ------------------------------------------------------------

class Fn(nn.Module):
    """A bare function in a forward: a functional call for symcost's trace."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


SMALL = (1, 4, 8, 8)   # 256 elements, the "1x4x8x8" of the quirks' evidence

CASES = {
    "relu": lambda: nn.ReLU(),
    "F.relu": lambda: Fn(lambda x: F.relu(x)),  # looked up at call time, as models do: ptflops' patch sees it
    "relu6": lambda: nn.ReLU6(),
    "leaky_relu": lambda: nn.LeakyReLU(),
    "prelu": lambda: nn.PReLU(),
    "gelu": lambda: nn.GELU(),
    "silu": lambda: nn.SiLU(),
    "sigmoid": lambda: nn.Sigmoid(),
    "softmax": lambda: nn.Softmax(dim=1),
    "maxpool": lambda: nn.MaxPool2d(3, 2, 1),
    "F.max_pool2d": lambda: Fn(lambda x: F.max_pool2d(x, 3, 2, 1)),
    "avgpool": lambda: nn.AvgPool2d(2),
    "adaptive_avgpool 1": lambda: nn.AdaptiveAvgPool2d(1),
    "adaptive_avgpool 3 (overlapping)": lambda: nn.AdaptiveAvgPool2d(3),
    "F.adaptive_avg_pool2d 1": lambda: Fn(lambda x: F.adaptive_avg_pool2d(x, 1)),
    "batchnorm": lambda: nn.BatchNorm2d(4),
    "layernorm": lambda: nn.LayerNorm(8),
    "groupnorm": lambda: nn.GroupNorm(2, 4),
    "conv": lambda: nn.Conv2d(4, 6, 3),
    "conv no bias": lambda: nn.Conv2d(4, 6, 3, bias=False),
    "depthwise conv": lambda: nn.Conv2d(4, 8, 3, groups=4),
    "linear": lambda: nn.Linear(8, 5),
    "x + x": lambda: Fn(lambda x: x + x),
    "x * x": lambda: Fn(lambda x: x * x),
    # where the preset knowingly differs (quirks with reproduced=False, or an assumption the trace cannot check)
    "conv transpose": lambda: nn.ConvTranspose2d(4, 6, 3, stride=2),
    "batchnorm no affine": lambda: nn.BatchNorm2d(4, affine=False),
    "x.mean": lambda: Fn(lambda x: x.mean((2, 3))),
    "torch.add": lambda: Fn(lambda x: torch.add(x, x)),
}

#: (case, tool) -> the tool's own number, where the preset differs from it (each documented in a quirk)
DIFFERS = {
    ("conv transpose", "thop"): 62424, ("conv transpose", "torchprofile"): 62424,   # MACs: 13824
    ("batchnorm no affine", "fvcore"): 256, ("batchnorm no affine", "thop"): 512,
    ("batchnorm no affine", "ptflops"): 256, ("batchnorm no affine", "torchprofile"): 0,
    ("x.mean", "fvcore"): 0, ("x.mean", "ptflops"): 0,      # presets assume F.adaptive_avg_pool2d(x, 1)
    ("torch.add", "ptflops"): 256,                           # preset assumes the + operator
}

#: the numbers the quirks quote, checked against the real tools
EVIDENCE = {
    ("relu", "ptflops"): 512, ("maxpool", "ptflops"): 512, ("adaptive_avgpool 1", "ptflops"): 512,
    ("F.max_pool2d", "ptflops"): 256, ("silu", "ptflops"): 256, ("sigmoid", "ptflops"): 0,
    ("relu6", "ptflops"): 256, ("leaky_relu", "ptflops"): 256, ("layernorm", "ptflops"): 256,
    ("groupnorm", "ptflops"): 512, ("conv", "ptflops"): 7992, ("x + x", "ptflops"): 0,
    ("batchnorm", "thop"): 1024, ("layernorm", "thop"): 1024, ("groupnorm", "thop"): 0, ("prelu", "thop"): 256,
    ("avgpool", "thop"): 64, ("adaptive_avgpool 1", "thop"): 260, ("adaptive_avgpool 3 (overlapping)", "thop"): 292,
    ("F.adaptive_avg_pool2d 1", "thop"): 0, ("relu", "thop"): 0, ("maxpool", "thop"): 0, ("conv", "thop"): 7776,
    ("batchnorm", "fvcore"): 512, ("layernorm", "fvcore"): 1280, ("adaptive_avgpool 1", "fvcore"): 256,
    ("avgpool", "fvcore"): 0, ("conv", "fvcore"): 7776, ("conv no bias", "fvcore"): 7776,
    ("F.adaptive_avg_pool2d 1", "fvcore"): 256,
    ("batchnorm", "torchprofile"): 256, ("adaptive_avgpool 1", "torchprofile"): 4, ("avgpool", "torchprofile"): 64,
    ("x * x", "torchprofile"): 256, ("x + x", "torchprofile"): 0, ("leaky_relu", "torchprofile"): 256,
    ("relu", "torchprofile"): 0,
}


@pytest.mark.parametrize("tool", TOOLS)
@pytest.mark.parametrize("case", list(CASES))
def test_single_layers(case, tool):
    p = peer(tool)
    torch.manual_seed(0)
    model = CASES[case]().eval()
    theirs = p.run(model, torch.randn(*SMALL))
    ours = preset(trace(model, SMALL), tool)
    if (case, tool) in DIFFERS:
        assert theirs == DIFFERS[(case, tool)] and ours != theirs, (ours, theirs)
    else:
        assert ours == theirs, (case, tool, ours, theirs)
    if (case, tool) in EVIDENCE:
        assert theirs == EVIDENCE[(case, tool)]


def test_the_transposed_conv_macs_the_quirks_quote():
    cost = layer("conv_transpose2d", symbolic=False, in_channels=4, out_channels=6, kernel_size=3, stride=2).cost(SMALL)
    assert to_int(cost.macs) == 13824    # 64 input positions x 4 x 6 x 9; thop and torchprofile say 62424


def test_ptflops_divides_module_counts_by_the_batch_but_not_functional_ones():
    p = peer("ptflops")
    model = nn.Sequential(nn.Conv2d(4, 6, 3, bias=False), Fn(lambda x: F.relu(x)))
    x = torch.randn(2, 4, 8, 8)
    # 2*6*6*6 outputs x 36 MACs = 15552, halved; F.relu on 432 elements, not halved
    assert p.run(model, x) == 15552 // 2 + 432
    mc = trace(model, x.shape)
    assert preset(mc, "ptflops") == 15552 + 432
    assert any("divided by the batch size" in q.text for q in PEERS["ptflops"].applicable_quirks(mc))


def test_thop_leaves_buffers_on_containers_but_not_on_the_model_symcost_passes():
    peer("thop")
    import thop

    class Block(nn.Module):   # a container thop has no hook for, as torchvision's BasicBlock
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)

        def forward(self, x):
            return self.conv(x)

    model = nn.Sequential(Block(), nn.ReLU())
    keys = set(model.state_dict())
    PEERS["thop"].run(model, torch.randn(1, 3, 8, 8))
    assert set(model.state_dict()) == keys       # symcost ran it on a copy
    thop.profile(model, inputs=(torch.randn(1, 3, 8, 8),), verbose=False)
    assert set(model.state_dict()) - keys == {"0.total_ops", "0.total_params"}


# ---- the conventions ---------------------------------------------------------------------------------------------

def test_peers_are_registered_next_to_the_core():
    assert set(PEER_CONVENTIONS) == {"fvcore", "thop", "ptflops", "torchprofile"}
    for name, conv in PEER_CONVENTIONS.items():
        assert CONVENTIONS[name] is conv
    assert set(CORE) | {"fritz", "torch-causal", "megatron"} | set(PEER_CONVENTIONS) == set(CONVENTIONS)
    assert not PEER_CONVENTIONS["thop"].sees_functional
    assert all(PEER_CONVENTIONS[n].sees_functional for n in ("fvcore", "ptflops", "torchprofile"))
    for p in PEERS.values():
        assert p.quirks and all(q.text and q.evidence for q in p.quirks)
        assert "MACs" in p.unit


def test_element_and_functional_weights():
    relu = layer("relu").cost()                    # symbolic (N, C, H, W): cmp = writes = reads = N*C*H*W
    n = relu.writes
    conv = Convention("t", "", "", weight_table(0, mac=1), {"relu": {"writes": 2}},
                      functional_weights={"activation": {"reads": 1}})
    assert sympy.simplify(conv.count(relu) - 2 * n) == 0
    assert sympy.simplify(conv.count(relu, functional=True) - n) == 0
    half = Convention("h", "", "", weight_table(0), {"relu6": {"cmp": sympy.Rational(1, 2)}})
    assert sympy.simplify(half.count(layer("relu6").cost()) - n) == 0       # relu6 has 2 cmp per element
    with pytest.raises(ValueError, match="unknown kinds"):
        Convention("bad", "", "", weight_table(0), {"relu": {"elements": 1}})
    with pytest.raises(ValueError, match="unknown kinds"):
        Convention("bad", "", "", weight_table(0), functional_weights={"relu": {"flops": 1}})
    with pytest.raises(ValueError, match="count each layer"):
        PEER_CONVENTIONS["ptflops"].count(relu + layer("conv2d").cost())


def test_a_formula_under_a_peer_convention():
    bn = layer("batchnorm2d", mode="eval").cost()
    n = bn.writes
    assert sympy.simplify(CONVENTIONS["thop"].count(bn) - 4 * n) == 0
    assert sympy.simplify(CONVENTIONS["fvcore"].count(bn) - 2 * n) == 0
    assert sympy.simplify(CONVENTIONS["torchprofile"].count(bn) - n) == 0


# ---- the compare command -------------------------------------------------------------------------------------------

def cli(*args):
    return subprocess.run([sys.executable, "-m", "symcost.cli", *args], capture_output=True, text=True)


@pytest.fixture(scope="module")
def resnet18_json():
    r = cli("compare", "torchvision:resnet18", "--input", "1x3x224x224", "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_compare_json_resnet18(resnet18_json):
    d = resnet18_json
    assert d["target"] == "torchvision:resnet18" and d["input_shape"] == [1, 3, 224, 224] and d["mode"] == "eval"
    assert d["conventions"] == ["macs", "flops", "torch", "fvcore", "thop", "ptflops", "torchprofile"]
    # the tools' own numbers for resnet18 (fvcore 0.1.5, thop 0.1.1, ptflops 0.7.5, torchprofile 0.1.0)
    assert {n: p["number"] for n, p in d["peers"].items()} == {
        "fvcore": 1_819_065_856, "thop": 1_824_033_792, "ptflops": 1_825_313_768, "torchprofile": 1_816_557_568}
    macs = d["totals"]["macs"]
    assert macs == 1_814_073_344 and d["totals"]["torch"] == 2 * macs
    fam = d["families"]
    # the gaps, explained: conv is the MACs everywhere, BN 2.48M elements (fvcore 2, thop 4, torchprofile 1 each),
    # 17 ReLUs 2.31M elements (ptflops twice), maxpool input 802816 + avgpool input 25088 (ptflops twice)
    assert {n: fam["conv"][n] for n in PEERS} == dict.fromkeys(PEERS, 1_813_561_344)
    assert fam["norm"]["fvcore"] == 2 * 2_483_712 and fam["norm"]["thop"] == 4 * 2_483_712
    assert fam["norm"]["torchprofile"] == 2_483_712
    assert fam["activation"]["ptflops"] == 2 * 2_308_096 and fam["activation"]["thop"] == 0
    assert fam["pool"]["ptflops"] == 2 * (802_816 + 25_088) and fam["pool"]["fvcore"] == 25_088
    assert fam["pool"]["thop"] == 25_088 + 512 and fam["pool"]["torchprofile"] == 512
    assert fam["linear"]["ptflops"] == 512_000 + 1000                    # the fc bias
    # 8 residual adds, two per stage: 64x56x56, 128x28x28, 256x14x14, 512x7x7 elements
    assert fam["elementwise"]["functional_calls"] == 8
    assert fam["elementwise"]["flops"] == 2 * (200_704 + 100_352 + 50_176 + 25_088)
    assert all(fam["elementwise"][n] == 0 for n in PEERS)                 # no tool counts the residual adds
    for name in d["conventions"]:
        assert sum(f[name] for f in fam.values()) == d["totals"][name]
    for name, p in d["peers"].items():
        assert p["gap_to_macs"] == {f: v[name] - v["macs"] for f, v in fam.items() if v[name] != v["macs"]}
        assert p["tool"] is None and p["status"].startswith("not run") and p["quirks"]
        assert p["unit"].startswith("MACs")
    texts = {n: " ".join(q["text"] for q in p["quirks"]) for n, p in d["peers"].items()}
    assert "Counted twice" in texts["ptflops"] and "4 per element" in texts["thop"]
    assert "Transposed" not in texts["thop"]                              # no transposed conv in resnet18


def test_compare_text_and_errors():
    r = cli("compare", "torchvision:resnet18", "--input", "1x3x64x64")
    assert r.returncode == 0, r.stderr
    assert "per family" in r.stdout and "quirks that apply" in r.stdout and "torchprofile" in r.stdout
    for args, message in [(("torchvision:resnet81", "--input", "1x3x64x64"), "unknown torchvision model"),
                          (("torchvision:resnet18", "--input", "1x3xHxW"), "not an integer"),
                          (("torchvision:resnet18", "--input", "1x5x64x64"), "cannot run on input")]:
        r = cli("compare", *args)
        assert r.returncode == 2 and message in r.stderr and r.stderr.count("\n") == 1, r.stderr


def test_compare_run_peers():
    from symcost.commands.compare import render
    from symcost.compare import compare_target

    d = compare_target("torchvision:resnet18", (1, 3, 64, 64), run_peers=True)
    for name, p in d.peers.items():
        if p.installed:
            assert p.status == "ran" and p.match and p.tool == p.number, (name, p)
        else:
            assert p.status.startswith("not installed") and p.tool is None
    text = render(d)
    assert "tool's own" in text and "DIFFERS" not in text
