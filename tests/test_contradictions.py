"""Contradictions, empty and non-finite values, unbounded sweeps: one line naming the problem, exit 2 — never a
silent choice (the last of two values winning), a number for a nonsense input, or a sweep that fills the memory."""
from __future__ import annotations

import json
import time

import pytest

from symcost.cli import main


def _refused(capsys, argv, *words) -> str:
    assert main(argv) == 2, argv
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for w in words:
        assert w in err, (w, err)
    return err


# ---- the same thing given twice with different values ----------------------------------------------------------

@pytest.mark.parametrize("argv, words", [
    (["formula", "conv2d", "in_channels=3", "in_channels=4"], ["in_channels", "twice"]),
    (["formula", "conv2d", "--bias", "--no-bias"], ["bias", "twice"]),
    (["formula", "conv2d", "--bias", "bias=false"], ["bias", "twice"]),
    (["formula", "conv2d", "--kernel-size", "3", "kernel_size=5"], ["kernel_size", "twice"]),
    (["eval", "linear", "in_features=4", "out_features=2", "--input", "1x4", "--input", "1x5"],
     ["--input 1x4", "--input 1x5"]),
    (["formula", "conv2d", "--convention", "torch", "--convention", "flops"], ["--convention"]),
    (["formula", "conv2d", "--latex", "--json"], ["--json", "--latex"]),
    (["formula", "conv2d", "--latex", "--backward"], ["--backward", "--latex"]),
    (["table", "torchvision:resnet18", "--input", "1x3xRxR", "--at", "R=224", "--csv", "--json"], ["--csv", "--json"]),
    (["model", "hf:gpt2", "--input", "1xL", "--config", "n_embd=d,n_embd=e"], ["n_embd", "twice"]),
    # (a repeated --at of one symbol is no contradiction: it adds points, tests/test_at_points.py)
    (["model", "torchvision:resnet18", "--input", "1x3xHxW", "--trace-sizes", "H=241:209,H=225:193,W=225:193"],
     ["H", "twice"]),
    (["report", "torchvision:resnet18", "--input", "1x3xRxR", "--at", "R=5000", "--range", "R=1:10", "--out",
      "r.html"], ["R=5000", "outside", "--range"]),
    (["report", "torchvision:resnet18", "--input", "1x3xRxR", "--range", "R=1:10", "--range", "R=1:20", "--out",
      "r.html"], ["R", "twice"]),
])
def test_a_contradiction_is_refused(capsys, tmp_path, monkeypatch, argv, words):
    monkeypatch.chdir(tmp_path)
    _refused(capsys, argv, *words)
    assert not (tmp_path / "r.html").exists()


def test_the_same_value_twice_is_no_contradiction(capsys):
    argv = ["eval", "linear", "in_features=4", "out_features=2", "--input", "1x4", "--json"]
    assert main(argv + ["--convention", "torch", "--convention", "torch"]) == 0
    # 4 x 2 weights + 2 biases
    assert json.loads(capsys.readouterr().out)["params"] == 10


# ---- an empty value ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("argv", [
    ["formula", "conv2d", "--input", ""],
    ["eval", "linear", "in_features=4", "out_features=2", "--input", " "],
    ["model", "torchvision:resnet18", "--input", ""],
    ["latency", "torchvision:resnet18", "--input", "1x3x8x8", "--device", ""],
    ["model", "torchvision:resnet18", "--input", "1x3xRxR", "--at", ""],
])
def test_an_empty_value_is_refused_not_ignored(capsys, monkeypatch, argv):
    import symcost.timing.calibrate

    monkeypatch.setattr(symcost.timing.calibrate, "calibrate", lambda *a, **k: pytest.fail("calibrated"))
    _refused(capsys, argv, "empty")


# ---- non-finite numbers ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["inf", "nan", "-inf", "Infinity"])
def test_a_non_finite_layer_argument_is_refused(capsys, value):
    _refused(capsys, ["eval", "layernorm", "normalized_shape=8", f"eps={value}", "--input", "2x8"], "eps", "finite")


def test_an_unbounded_clamp_is_still_accepted(capsys):
    import torch

    torch.nn.Hardtanh(min_val=float("-inf"), max_val=1.0)(torch.zeros(2))   # torch takes it
    assert main(["eval", "hardtanh", "min_val=-inf", "--input", "2x8", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["output_shape"] == [2, 8]


@pytest.mark.parametrize("value", ["inf", "nan", "0", "-1"])
def test_mfu_refuses_a_step_time_that_is_not_a_positive_finite_number(capsys, monkeypatch, value):
    import symcost.derive

    monkeypatch.setattr(symcost.derive, "derive", lambda *a, **k: pytest.fail("derived before checking"))
    _refused(capsys, ["mfu", "hf:gpt2", "--input", "1x8", "--step-time", value, "--device", "h100-sxm"],
             "--step-time")


# ---- device files of the wrong types ---------------------------------------------------------------------------

GOOD_DEVICE = {"name": "test", "peak_flops": 1e12, "bandwidth": 1e11}


@pytest.mark.parametrize("key, value", [
    ("asynchronous", "false"), ("asynchronous", 1), ("tf32_matmul", "no"), ("tf32_conv", None),
    ("details", 5), ("details", [1]), ("fuses", [1, 2]), ("fuses", "conv_bias"), ("kinds", [1]),
    ("kinds_by_dtype", {"bf16": 3}), ("name", 7), ("units", "x"), ("cache_bytes", 1.5),
])
def test_a_device_file_of_the_wrong_types_is_one_line_naming_the_key(capsys, tmp_path, key, value):
    from symcost.timing import get_device

    path = tmp_path / "device.json"
    path.write_text(json.dumps({**GOOD_DEVICE, key: value}))
    with pytest.raises(ValueError, match=key):
        get_device(str(path))
    _refused(capsys, ["latency", "torchvision:resnet18", "--input", "1x3x8x8", "--device", str(path)], key)


def test_a_device_file_of_the_right_types_loads(tmp_path):
    from symcost.timing import get_device

    path = tmp_path / "device.json"
    path.write_text(json.dumps({**GOOD_DEVICE, "asynchronous": True, "tf32_matmul": False, "fuses": [],
                                "details": {"a": 1}}))
    d = get_device(str(path))
    assert d.asynchronous is True and d.tf32_matmul is False and d.fuses == ()


# ---- calibrate --json prints, and writes nothing ----------------------------------------------------------------

def test_calibrate_json_alone_writes_no_file(capsys, tmp_path, monkeypatch):
    import symcost.timing.calibrate
    from symcost.timing import get_device

    monkeypatch.chdir(tmp_path)
    (tmp_path / "symcost-device.json").write_text("mine")
    monkeypatch.setattr(symcost.timing.calibrate, "calibrate", lambda *a, **k: get_device("laptop-cpu"))
    assert main(["calibrate", "--json", "--quick"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["name"] == get_device("laptop-cpu").name and "written_to" not in printed
    assert (tmp_path / "symcost-device.json").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["symcost-device.json"]


# ---- bounded sweeps ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("argv", [
    ["model", "torchvision:resnet18", "--input", "1x3xRxR", "--at", "R=1:1000000000:1"],
    ["model", "torchvision:resnet18", "--input", "1x3xHxW", "--at", "H=1:1000", "--at", "W=1:1000"],
    ["model", "hf:gpt2", "--input", "1xL", "--config", "n_embd=d", "--at", "d=1:1000000000", "--at", "L=8"],
    ["plot", "torchvision:resnet18", "--input", "1x3xRxR", "--range", "R=1:1000000000:1", "--out", "p.png"],
])
def test_a_sweep_above_the_limit_is_refused_before_it_is_built(capsys, monkeypatch, tmp_path, argv):
    import symcost.derive

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(symcost.derive, "derive", lambda *a, **k: pytest.fail("derived an unbounded sweep"))
    started = time.perf_counter()
    _refused(capsys, argv, "100,000")
    assert time.perf_counter() - started < 5   # counted, not built (a list of 10^9 sizes takes a minute and 40 GB)


def test_a_sweep_at_the_limit_is_counted_exactly():
    from symcost.sweep import MAX_POINTS, parse_values

    assert len(parse_values(f"1:{MAX_POINTS}")) == MAX_POINTS                # 1..100000: exactly the limit
    assert len(parse_values(f"2:{2 * MAX_POINTS}:2")) == MAX_POINTS          # 2, 4, ..., 200000
    with pytest.raises(ValueError, match="100,001 points"):
        parse_values(f"1:{MAX_POINTS + 1}")


# ---- a layer argument the input fixes ---------------------------------------------------------------------------

def test_formula_takes_the_input_channels_from_the_input(capsys):
    import torch

    assert main(["formula", "conv2d", "--input", "1x3xHxW", "out_channels=8", "kernel_size=3", "--json"]) == 0
    params = json.loads(capsys.readouterr().out)["params"]
    assert params == "8*b + 216/g"      # 8 filters x 3 channels x 3 x 3 = 216 weights (over g groups), 8 biases
    # torch: Conv2d(3, 8, 3) holds 216 weights and 8 biases (g = 1, b = 1)
    assert sum(p.numel() for p in torch.nn.Conv2d(3, 8, 3).parameters()) == 216 + 8


def test_formula_refuses_in_channels_the_input_contradicts(capsys):
    _refused(capsys, ["formula", "conv2d", "in_channels=4", "--input", "1x3xHxW"], "3 channels", "in_channels=4")


# ---- a forward with no tensor in its output ---------------------------------------------------------------------

NO_TENSOR = '''
from torch import nn


class Base(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)


class ReturnsInt(Base):
    def forward(self, x):
        self.conv(x)
        return 5


class ReturnsNone(Base):
    def forward(self, x):
        self.conv(x)


class ReturnsSizes(Base):
    def forward(self, x):
        return (self.conv(x).shape[0], None)
'''


@pytest.mark.parametrize("name", ["ReturnsInt", "ReturnsNone", "ReturnsSizes"])
@pytest.mark.parametrize("shape", ["1x3x8x8", "1x3xHxW"])
def test_a_forward_whose_output_holds_no_tensor_is_refused(capsys, tmp_path, name, shape):
    path = tmp_path / "notensor.py"
    path.write_text(NO_TENSOR)
    _refused(capsys, ["model", f"{path}:{name}", "--input", shape, "--no-cache"], "no tensor")


# ---- symcost.trace leaves a model's flags as they were ---------------------------------------------------------

@pytest.mark.parametrize("train", [False, True])
def test_trace_of_a_model_on_meta_keeps_its_training_flags(train):
    import torch
    from torch import nn

    import symcost

    with torch.device("meta"):
        model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Dropout())
    model.train()
    model[2].eval()   # a mix: the flags are restored one by one, not set by one train()/eval()
    before = [m.training for m in model.modules()]
    symcost.trace(model, (2, 3, 8, 8), train=train)
    assert [m.training for m in model.modules()] == before == [True, True, True, False]


# ---- a JSON file that gives one key twice (JSON keeps the last silently) ---------------------------------------

def test_a_device_file_giving_a_key_twice_is_refused(capsys, tmp_path):
    path = tmp_path / "device.json"
    path.write_text('{"name": "a", "peak_flops": 1e12, "bandwidth": 1e11, "asynchronous": true, "asynchronous": false}')
    _refused(capsys, ["latency", "torchvision:resnet18", "--input", "1x3x8x8", "--device", str(path)],
             "asynchronous", "twice")


@pytest.mark.parametrize("text, twice", [
    ('{"small": {"n_embd": 64}, "small": {"n_embd": 128}}', "small"),
    ('{"small": {"n_embd": 64, "n_embd": 128}}', "n_embd"),
    ('[{"name": "small", "n_embd": 64}, {"name": "small", "n_embd": 128}]', "small"),
])
def test_config_values_giving_a_row_or_field_twice_are_refused(tmp_path, text, twice):
    from symcost.errors import UsageError
    from symcost.hyper.report import read_config_values

    path = tmp_path / "rows.json"
    path.write_text(text)
    with pytest.raises(UsageError, match=f"{twice}.*twice"):
        read_config_values(str(path))


def test_an_infinite_argument_torch_accepts_stays_valid_json(capsys):
    """hardtanh(min_val=-inf) is a clamp from above only, which torch accepts; `eval --json` must print JSON a
    strict parser reads (no bare -Infinity), the value as the string "-inf"."""
    import torch

    torch.nn.Hardtanh(min_val=float("-inf"))(torch.zeros(1, 4))  # torch's side: accepted
    assert main(["eval", "hardtanh", "--input", "1x4", "min_val=-inf", "--json"]) == 0
    out = json.loads(capsys.readouterr().out, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    assert out["args"]["min_val"] == "-inf" and out["output_shape"] == [1, 4]
