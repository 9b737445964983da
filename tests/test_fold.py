"""BatchNorm folding (seed 003): the formula with sympy, the transform on real models, the skips and their reasons.

Tolerance: float32 has eps 1.2e-7; folding only re-rounds each weight once (it is computed in float64), so outputs
differ by a few ulp per layer, accumulated over at most ~50 layers: measured up to ~1.5e-6 relative to the largest
output (resnet50).  ``atol = 1e-4 * max(1, max|output|)`` leaves ~100x margin, while a wrong axis, a wrong channel
or a missing shift gives errors of the order of the output itself (checked below for the transposed axis).
"""
import json

import pytest
import sympy
import torch
import torchvision
from torch import nn

from symcost.cli import main
from symcost.fold import FoldResult, fold_batchnorm, fold_formula, randomize_batchnorm, verify_fold_formula

SHAPE = (1, 3, 64, 64)


def assert_close(result: FoldResult, shape=None) -> None:
    diff, scale = result.compare(shape)
    assert diff <= 1e-4 * max(1.0, scale), (diff, scale)


def prepared(model: nn.Module, seed: int = 0) -> nn.Module:
    randomize_batchnorm(model, seed)
    return model.eval()


def assert_untouched(model: nn.Module, before: dict) -> None:
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)


# ------------------------------------------------------------------------------------------------ the formula

def test_sympy_derivation_matches_seed_003():
    assert verify_fold_formula()
    w_fold, b_fold = fold_formula()
    w, b, mu, gamma, beta = sympy.symbols("W b mu gamma beta", real=True)
    var, eps = sympy.symbols("sigma2 epsilon", positive=True)
    # W' = W a and b' = (b - mu) a + beta with a = gamma / sqrt(var + eps)
    assert sympy.simplify(w_fold - w * gamma / sympy.sqrt(var + eps)) == 0
    assert sympy.simplify(b_fold - ((b - mu) * gamma / sympy.sqrt(var + eps) + beta)) == 0


def test_numeric_folding_agrees_with_the_sympy_formula():
    torch.manual_seed(0)
    model = prepared(nn.Sequential(nn.Conv2d(3, 5, 3, bias=True), nn.BatchNorm2d(5)))
    conv, bn = model[0], model[1]
    folded = fold_batchnorm(model).model[0]
    w_fold, b_fold = fold_formula()
    w, b, mu, gamma, beta = sympy.symbols("W b mu gamma beta", real=True)
    var, eps = sympy.symbols("sigma2 epsilon", positive=True)  # the same symbols fold_formula uses
    f_w = sympy.lambdify([w, mu, gamma, var, eps], w_fold, "numpy")
    f_b = sympy.lambdify([b, mu, gamma, beta, var, eps], b_fold, "numpy")
    mu, var, gamma, beta = (t.detach().double().numpy() for t in (bn.running_mean, bn.running_var, bn.weight, bn.bias))
    col = (slice(None), None, None, None)  # per output channel, broadcast over (C_in, K_h, K_w)
    expect_w = f_w(conv.weight.detach().double().numpy(), mu[col], gamma[col], var[col], bn.eps)
    expect_b = f_b(conv.bias.detach().double().numpy(), mu, gamma, beta, var, bn.eps)
    assert torch.allclose(folded.weight.double(), torch.from_numpy(expect_w), rtol=1e-6, atol=1e-7)
    assert torch.allclose(folded.bias.double(), torch.from_numpy(expect_b), rtol=1e-6, atol=1e-7)


# --------------------------------------------------------------------------------------------- torchvision

@pytest.mark.parametrize("name, pairs", [("resnet50", 53), ("mobilenet_v2", 52), ("vgg16_bn", 13),
                                         ("efficientnet_b0", 49)])
def test_torchvision_models_fold_exactly(name, pairs):
    torch.manual_seed(0)
    model = prepared(torchvision.models.get_model(name, weights=None))
    before = model.state_dict()
    before = {k: v.clone() for k, v in before.items()}
    result = fold_batchnorm(model, SHAPE)
    # resnet50: stem 1 + 16 bottlenecks x 3 + 4 downsample = 53 (every BN follows a conv)
    assert result.method == "fx" and result.n_folded == pairs and result.skipped == []
    assert not any(isinstance(m, nn.BatchNorm2d) for m in result.model.modules())
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == pairs  # original keeps its BNs
    assert_close(result)
    assert_untouched(model, before)


def test_original_model_and_its_flags_are_untouched():
    model = prepared(torchvision.models.resnet18(weights=None))
    model.layer1.train()  # mixed flags must come back exactly as they were, after compare() too
    flags = [m.training for m in model.modules()]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = fold_batchnorm(model, (1, 3, 32, 32))
    result.compare()
    assert_untouched(model, before)
    assert [m.training for m in model.modules()] == flags
    assert result.model is not model and isinstance(model.bn1, nn.BatchNorm2d)
    assert isinstance(result.model.bn1, nn.Identity) and result.model.conv1.bias is not None
    assert model.conv1.bias is None


def test_fx_and_forward_hooks_find_the_same_pairs():
    model = prepared(torchvision.models.mobilenet_v3_small(weights=None))
    fx, hooks = fold_batchnorm(model, SHAPE), fold_batchnorm(model, SHAPE, method="hooks")
    assert fx.method == "fx" and hooks.method == "hooks"
    assert fx.folded == hooks.folded and len(fx.folded) == 34 and fx.skipped == hooks.skipped == []
    assert_close(hooks)


# --------------------------------------------------------------------------------------------- layer kinds

class Decoder(nn.Module):
    """ConvTranspose + BN, plain and grouped, with and without bias; C_in != C_out so the axis matters."""

    def __init__(self, dims: int = 2):
        super().__init__()
        ct, bn = getattr(nn, f"ConvTranspose{dims}d"), getattr(nn, f"BatchNorm{dims}d")
        self.up1 = ct(8, 6, 4, stride=2, padding=1)
        self.bn1 = bn(6)
        self.up2 = ct(6, 10, 3, stride=2, groups=2, bias=False)  # weight (6, 5, 3...): 2 groups of 3 -> 5
        self.bn2 = bn(10)

    def forward(self, x):
        return self.bn2(self.up2(torch.relu(self.bn1(self.up1(x)))))


@pytest.mark.parametrize("dims, shape", [(1, (2, 8, 5)), (2, (2, 8, 5, 4)), (3, (1, 8, 3, 4, 2))])
def test_transposed_conv_grouped_folds_on_axis_1_within_groups(dims, shape):
    torch.manual_seed(dims)
    model = prepared(Decoder(dims))
    result = fold_batchnorm(model, shape)
    assert result.folded == [("up1", "bn1"), ("up2", "bn2")]
    assert_close(result)
    # explicit index form: input channel i of group G = i // (C_in/g), local output j -> output G*(C_out/g) + j
    bn, w, w_new = model.bn2, model.up2.weight, result.model.up2.weight
    a = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    for i in range(6):
        for j in range(5):
            assert torch.allclose(w_new[i, j], w[i, j] * a[(i // 3) * 5 + j], rtol=1e-6, atol=1e-7)


def test_transposed_conv_wrong_axis_is_detected():
    torch.manual_seed(0)
    model = prepared(Decoder(2))
    result = fold_batchnorm(model, (2, 8, 5, 4))
    bad = result.model
    a = model.bn1.weight / torch.sqrt(model.bn1.running_var + model.bn1.eps)
    with torch.no_grad():  # undo axis 1, redo on the first 6 input channels (a plausible mistake)
        bad.up1.weight.copy_(model.up1.weight)
        bad.up1.weight[:6] *= a.view(6, 1, 1, 1)
    diff, scale = result.compare()
    assert diff > 1e-2 * scale


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("groups, bias", [(1, True), (1, False), (2, False), (4, True)])
def test_conv_bn_any_dims_grouped_and_depthwise(dims, groups, bias):
    torch.manual_seed(dims * 10 + groups)
    conv, bn = getattr(nn, f"Conv{dims}d"), getattr(nn, f"BatchNorm{dims}d")
    model = prepared(nn.Sequential(conv(4, 8, 3, padding=1, groups=groups, bias=bias), bn(8), nn.ReLU(),
                                   conv(8, 8, 3, padding=1, groups=8, bias=False), bn(8)))  # depthwise
    shape = (2, 4, *(5,) * dims)
    result = fold_batchnorm(model, shape)
    assert result.folded == [("0", "1"), ("3", "4")] and result.skipped == []
    assert_close(result)


def test_depthwise_mobilenet_style_block():
    torch.manual_seed(1)
    model = prepared(nn.Sequential(nn.Conv2d(16, 16, 3, padding=1, groups=16, bias=False), nn.BatchNorm2d(16),
                                   nn.ReLU6(), nn.Conv2d(16, 24, 1, bias=False), nn.BatchNorm2d(24)))
    result = fold_batchnorm(model, (1, 16, 12, 12))
    assert result.n_folded == 2 and isinstance(result.model[1], nn.Identity)
    assert_close(result)


def mlp() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.BatchNorm1d(8), nn.ReLU(),
                         nn.Linear(8, 4, bias=False), nn.BatchNorm1d(4))


def test_linear_batchnorm1d():
    torch.manual_seed(2)
    model = prepared(mlp())
    result = fold_batchnorm(model, (3, 4, 4))
    assert result.folded == [("1", "2"), ("4", "5")]
    assert_close(result)


def test_linear_without_example_input_is_skipped_rank_unknown():
    result = fold_batchnorm(prepared(mlp()))
    assert result.folded == [] and all("pass example_input_shape" in r for _, r in result.skipped)


def test_linear_on_sequences_is_not_folded():
    # Linear acts on the last axis of (N, L, F); BatchNorm1d(L) normalises axis 1 = L: different channels
    model = prepared(nn.Sequential(nn.Linear(5, 5), nn.BatchNorm1d(5)))
    result = fold_batchnorm(model, (2, 5, 5))
    assert result.folded == [] and "axis 1 is not its channel axis" in result.skipped[0][1]
    assert result.max_abs_diff() == 0


# ---------------------------------------------------------------------------------------- skipped, with reason

def test_batchnorm_in_training_mode_is_skipped():
    model = prepared(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 4, 3), nn.BatchNorm2d(4)))
    model[3].train()
    result = fold_batchnorm(model, (2, 3, 9, 9))
    assert result.folded == [("0", "1")]
    assert result.skipped == [("3", "in training mode: it normalises with batch statistics, which folding cannot "
                                     "reproduce")]
    assert isinstance(result.model[3], nn.BatchNorm2d) and result.model[3].training
    assert_close(result)


def test_untrained_model_in_train_mode_says_call_eval():
    result = fold_batchnorm(torchvision.models.resnet18(weights=None))
    assert result.n_folded == 0 and len(result.skipped) == 20 and "call model.eval() first" in result.message


def test_batchnorm_without_running_stats_is_skipped():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4, track_running_stats=False)).eval()
    result = fold_batchnorm(model, (2, 3, 8, 8))
    assert result.folded == [] and "no running statistics" in result.skipped[0][1]


class PreActBlock(nn.Module):
    """Pre-activation residual block: BN -> ReLU -> conv, twice, plus identity."""

    def __init__(self, c: int = 8):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(c), nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(c), nn.Conv2d(c, c, 3, padding=1, bias=False)

    def forward(self, x):
        out = self.conv1(torch.relu(self.bn1(x)))
        return x + self.conv2(torch.relu(self.bn2(out)))


def test_pre_activation_block_bn_before_conv_is_skipped_with_reason():
    model = prepared(nn.Sequential(PreActBlock(), PreActBlock()))
    result = fold_batchnorm(model, (1, 8, 10, 10))
    # 0.bn1 reads the model input, 1.bn1 the residual sum: neither comes from a conv; *.bn2 follow a conv
    assert result.folded == [("0.conv1", "0.bn2"), ("1.conv1", "1.bn2")]
    reasons = dict(result.skipped)
    assert set(reasons) == {"0.bn1", "1.bn1"}
    assert "the model's input" in reasons["0.bn1"] and "add" in reasons["1.bn1"]
    assert all("zero padding" in r for r in reasons.values())
    assert_close(result)


def test_bn_before_conv_without_activation_is_not_folded_forward():
    model = prepared(nn.Sequential(nn.BatchNorm2d(3), nn.Conv2d(3, 4, 3, padding=1)))
    result = fold_batchnorm(model, (1, 3, 8, 8))
    assert result.folded == [] and "zero padding" in result.skipped[0][1]


class TwoConsumers(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.conv2, self.bn2 = nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4)

    def forward(self, x):
        y = self.conv(x)
        z = self.conv2(y)
        return self.bn(y) + z.sigmoid(), self.bn2(z)  # conv's output feeds bn and conv2; conv2's bn2 and sigmoid


@pytest.mark.parametrize("method", ["fx", "hooks"])
def test_producer_output_with_other_consumers_is_skipped(method):
    model = prepared(TwoConsumers())
    result = fold_batchnorm(model, (1, 3, 8, 8), method=method)
    assert result.folded == []
    reasons = dict(result.skipped)
    assert "the output of conv also feeds" in reasons["bn"] and "conv2" in reasons["bn"]
    assert "conv2" in reasons["bn2"]
    assert result.max_abs_diff() == 0


def test_conv_output_also_returned_is_skipped():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.bn = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)

        def forward(self, x):
            y = self.conv(x)
            return self.bn(y), y

    for method in ("fx", "hooks"):
        result = fold_batchnorm(prepared(Net()), (1, 3, 8, 8), method=method)
        assert result.folded == [] and result.skipped[0][0] == "bn", method


def test_shared_conv_and_tied_weights_are_skipped():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.bn_a, self.bn_b = nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4), nn.BatchNorm2d(4)
            self.c2, self.c3, self.bn3 = nn.Conv2d(4, 4, 1), nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4)
            self.c3.weight = self.c2.weight  # tied
            self.c4, self.c5, self.bn_s = nn.Conv2d(4, 4, 1), nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4)

        def forward(self, x):
            shared_bn = self.bn_s(self.c4(x)) + self.bn_s(self.c5(x))
            return self.bn_a(self.conv(x)) + self.bn_b(self.conv(x)) + self.bn3(self.c3(self.c2(x))) + shared_bn

    for method in ("fx", "hooks"):
        result = fold_batchnorm(prepared(Net()), (1, 4, 5, 5), method=method)
        reasons = dict(result.skipped)
        assert result.folded == [] and len(reasons) == len(result.skipped) == 4, method  # one line per BN
        assert "called 2 times" in reasons["bn_a"] and "called 2 times" in reasons["bn_s"]
        assert "shares its weight" in reasons["bn3"], method


def test_untraceable_model_falls_back_to_forward_hooks():
    class Gated(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.bn = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)

        def forward(self, x):
            if x.sum() > -1e9:  # data-dependent control flow: torch.fx cannot trace it
                x = x * 2
            return self.bn(self.conv(x))

    model = prepared(Gated())
    result = fold_batchnorm(model, (1, 3, 8, 8))
    assert result.method == "hooks" and result.folded == [("conv", "bn")] and "torch.fx" in result.notes[0]
    assert_close(result)
    blind = fold_batchnorm(model)  # no example input: no graph at all, nothing folded, and it says why
    assert blind.folded == [] and "no example_input_shape" in blind.skipped[0][1]


def test_model_without_batchnorm_returns_an_unchanged_copy():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
    result = fold_batchnorm(model, (1, 3, 8, 8))
    assert result.folded == [] and result.skipped == [] and result.model is not model
    assert result.message == "no BatchNorm layers found: the copy is unchanged"
    assert result.max_abs_diff() == 0


# ------------------------------------------------------------------------------------------------------- CLI

def test_cli_fold_torchvision_json(capsys):
    assert main(["fold", "torchvision:resnet18", "--input", "1x3x32x32", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    # resnet18: stem 1 + 8 basic blocks x 2 + 3 downsample = 20
    assert data["n_folded"] == 20 and len(data["folded"]) == 20 and data["skipped"] == []
    assert data["folded"][0] == ["conv1", "bn1"]
    assert 0 < data["max_abs_diff"] <= 1e-4 * max(1.0, data["max_abs_output"])  # > 0: the stats were randomised


def test_cli_fold_file_target_text(tmp_path, capsys):
    (tmp_path / "net.py").write_text(
        "import torch.nn as nn\n"
        "def build():\n"
        "    return nn.Sequential(nn.BatchNorm2d(3), nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))\n")
    assert main(["fold", f"{tmp_path}/net.py:build", "--input", "1x3x8x8"]) == 0
    out = capsys.readouterr().out
    assert "folded 1 of 2 BatchNorm layers" in out and "skipped 0:" in out and "max |folded - original|" in out


@pytest.mark.parametrize("argv, message", [
    (["torchvision:resnet_18", "--input", "1x3x8x8"], "unknown torchvision model 'resnet_18'; did you mean"),
    (["missing.py:build", "--input", "1x3x8x8"], "target file 'missing.py' not found"),
    (["torchvision:resnet18", "--input", "1x3"], "does not run on an input of shape (1, 3)"),
    (["resnet18", "--input", "1x3x8x8"], "expected torchvision:NAME"),
])
def test_cli_fold_errors_are_one_line_exit_2(argv, message, capsys):
    assert main(["fold", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
