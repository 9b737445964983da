"""Whole models: one symbolic derivation per model, exact against torch at several sizes."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sympy
import torch
import torchvision
from torch.utils.flop_counter import FlopCounterMode

from symcost.errors import NoSingleFormula
from symcost.tracing import trace

FIXTURES = Path(__file__).parent / "fixtures"
#: graphs that change with the input size or accept one size only: checked at their own size
FIXED_SIZE = {"vit_b_16", "vit_b_32", "vit_l_16", "vit_l_32", "vit_h_14", "maxvit_t"}
SIZE_DEPENDENT_GRAPH = {"swin_t", "swin_s", "swin_b", "swin_v2_t", "swin_v2_s", "swin_v2_b"}


def build(name: str, size: int):
    kwargs = {"image_size": size} if name.startswith("vit") else {}
    try:
        with torch.device("meta"):
            model = torchvision.models.get_model(name, weights=None, **kwargs)
    except Exception:  # regnet builders compute widths with real tensors
        model = torchvision.models.get_model(name, weights=None, **kwargs).to("meta")
    return model.eval()


def flop_counter(model, size: int) -> int:
    x = torch.empty(1, 3, size, size, device="meta")
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops()


def default_size(weights) -> int:
    return weights.transforms().crop_size[0]


@pytest.mark.sampled(every=4)  # a slow corpus: the default run takes a fixed sample (conftest.py)
@pytest.mark.slow
@pytest.mark.parametrize("name", torchvision.models.list_models(module=torchvision.models))
def test_every_torchvision_classifier(name):
    weights = torchvision.models.get_model_weights(name).DEFAULT
    size = default_size(weights)
    model = build(name, size)
    if name in FIXED_SIZE or name in SIZE_DEPENDENT_GRAPH:
        sizes = (size,) if name in FIXED_SIZE else (size, 225, 193)
        derivations = {s: trace(model, (1, 3, s, s)) for s in sizes}
        if name in SIZE_DEPENDENT_GRAPH:
            # no single formula exists: the graph itself changes with the size (shifted-window masks, and for v2
            # a slice of the relative-position table sized from the window), so the derivation is refused
            with pytest.raises(NoSingleFormula):
                trace(model, (1, 3, "R", "R"))
    else:
        mc = trace(model, (1, 3, "R", "R"))  # one derivation answers every size
        derivations = {s: mc for s in (size, 225, 193)}
    for s, mc in derivations.items():
        values = mc.evaluate({"R": s}, "torch")
        assert mc.uncovered == {}, mc.uncovered
        assert values["params"] == sum(p.numel() for p in model.parameters())
        assert values["flops"] == flop_counter(model, s), (name, s)
    macs = derivations[size].evaluate({"R": size}, "macs")["macs"]
    # torchvision's metadata: GMACs to 3 decimals
    assert round(macs / 1e9, 3) == pytest.approx(weights.meta["_ops"], abs=1e-9), (name, macs)


def test_resnet50_formula_collapses_to_a_polynomial_when_divisible():
    mc = trace(build("resnet50", 224), (1, 3, "H", "W"))
    from symcost.sweep import assume_divisible

    H, W = sympy.symbols("H W", integer=True, positive=True)
    macs = assume_divisible(mc.total("macs")["macs"], mc.symbols, 32)
    # at 224: 81456 * 224 * 224 + 2048000 = 4089184256, torchvision's 4.089 GMACs
    assert sympy.expand(macs - (81456 * H * W + 2048000)) == 0
    assert macs.subs({H: 224, W: 224}) == 4089184256


def test_floors_matter_at_sizes_not_multiple_of_32():
    model = build("resnet18", 224)
    mc = trace(model, (1, 3, "H", "W"))
    for h, w in ((225, 193), (97, 301), (33, 65)):
        got = mc.evaluate({"H": h, "W": w}, "torch")["flops"]
        x = torch.empty(1, 3, h, w, device="meta")
        with torch.no_grad(), FlopCounterMode(display=False) as c:
            model(x)
        assert got == c.get_total_flops()


def test_vectorised_sweep_equals_exact_evaluation():
    import numpy as np

    mc = trace(build("mobilenet_v2", 224), (1, 3, "R", "R"))
    rs = np.arange(64, 1025, 8)
    fast = mc.lambdified("flops")(rs)
    for i in (0, 7, 60, len(rs) - 1):
        assert fast["flops"][i] == mc.evaluate({"R": int(rs[i])}, "flops")["flops"]


def test_users_own_module_file():
    import importlib.util

    spec = importlib.util.spec_from_file_location("my_models", FIXTURES / "my_models.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    net = mod.build_net().eval()
    mc = trace(net, (2, 3, "H", "W"))
    for h, w in ((32, 32), (31, 45)):
        x = torch.randn(2, 3, h, w)
        with torch.no_grad(), FlopCounterMode(display=False) as c:
            net(x)
        assert mc.evaluate({"H": h, "W": w}, "torch")["flops"] == c.get_total_flops()
    # the functional ops (relu, *2.0, +1.0, mean) are rows of their own, never silently dropped
    layers = [r.layer for r in mc.rows]
    assert layers.count("mul") == 1 and layers.count("add") == 1 and "mean" in layers and "relu" in layers
    # the user's model is untouched (still on CPU)
    assert next(net.parameters()).device.type == "cpu"


def cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "symcost.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})})


def test_cli_model_json_sweep_and_cache(tmp_path):
    env = {"SYMCOST_CACHE_DIR": str(tmp_path)}
    r = cli("model", "torchvision:resnet18", "--input", "1x3xRxR", "--at", "R=224,225,193", "--json", env=env)
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["uncovered"] == {} and "formula" in data
    assert [e["values"]["R"] for e in data["evaluations"]] == [224, 225, 193]
    # torchvision: resnet18 1.814 GMACs at 224
    assert round(data["evaluations"][0]["total"]["macs"] / 1e9, 3) == 1.814
    # a cached call answers without importing torch
    code = ("import sys; from symcost.cli import main; "
            "main(['model','torchvision:resnet18','--input','1x3xRxR','--at','R=64:1024:8','--json']); "
            "assert 'torch' not in sys.modules")
    r2 = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, **env})
    assert r2.returncode == 0, r2.stderr
    assert len(json.loads(r2.stdout)["evaluations"]) == (1024 - 64) // 8 + 1


def test_cli_user_file_and_strict(tmp_path):
    env = {"SYMCOST_CACHE_DIR": str(tmp_path)}
    r = cli("model", f"{FIXTURES / 'my_models.py'}:build_net", "--input", "1x3xHxW", "--strict", "--json", env=env)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["uncovered"] == {}


@pytest.mark.parametrize("args, message", [
    (["model", "torchvision:resnet5", "--input", "1x3x224x224"], "did you mean resnet50"),
    (["model", f"{FIXTURES / 'my_models.py'}:broken", "--input", "1x3x32x32"], "raised RuntimeError"),
    (["model", f"{FIXTURES / 'my_models.py'}:not_a_module", "--input", "1x3x32x32"], "not an nn.Module"),
    (["model", "torchvision:resnet18", "--input", "1x3x224"], "cannot run on input 1x3x224"),
    (["model", "torchvision:alexnet", "--input", "1x3x32x32"], "cannot run on input 1x3x32x32"),
    (["model", "torchvision:alexnet", "--input", "1x3xRxR", "--at", "R=32,224"], "cannot take R=32"),
    (["model", "torchvision:vit_b_16", "--input", "1x3xRxR", "--at", "R=256"], "Expected 224"),
    (["model", "torchvision:resnet18", "--input", "1x3xRxR", "--at", "Q=3"], "no symbol 'Q'"),
])
def test_cli_model_bad_input(args, message, tmp_path):
    r = cli(*args, "--no-cache")
    assert r.returncode == 2, r.stdout + r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("model_type", ["bert", "gpt2"])
def test_hugging_face_models_from_default_configs(model_type):
    pytest.importorskip("transformers")
    from symcost.targets import load_target

    model = load_target(f"hf:{model_type}", device="meta").eval()
    mc = trace(model, (2, "L"), input_dtype="int64")  # token ids; one derivation in the sequence length
    assert mc.uncovered == {}, mc.uncovered
    for length in (7, 128, 300):
        ids = torch.zeros(2, length, dtype=torch.long, device="meta")
        with torch.no_grad(), FlopCounterMode(display=False) as c:
            model(ids)
        values = mc.evaluate({"L": length}, "torch")
        assert values["flops"] == c.get_total_flops(), (model_type, length)
        assert values["params"] == sum(p.numel() for p in model.parameters())
    if model_type == "bert":
        # BERT-base: 109,482,240 parameters (BertModel with its pooler)
        assert mc.evaluate({"L": 128}, "macs")["params"] == 109482240


def test_segmentation_model_with_upsampling_is_fully_covered():
    model = torchvision.models.segmentation.fcn_resnet50(weights=None, weights_backbone=None).to("meta").eval()
    mc = trace(model, (1, 3, "H", "W"))
    assert mc.uncovered == {}
    # the final F.interpolate back to H x W is bilinear: 3 mul + 6 add per output, 21 classes -> 189*H*W
    upsample = [r for r in mc.rows if r.layer == "upsample"]
    H, W = sympy.symbols("H W", integer=True, positive=True)
    assert len(upsample) == 1 and sympy.expand(upsample[0].cost.op("mul") + upsample[0].cost.op("add")
                                                 - 21 * 9 * H * W) == 0
    for h, w in ((224, 193), (97, 130)):
        x = torch.empty(1, 3, h, w, device="meta")
        with torch.no_grad(), FlopCounterMode(display=False) as c:
            model(x)
        assert mc.evaluate({"H": h, "W": w}, "torch")["flops"] == c.get_total_flops()
