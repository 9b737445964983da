"""One typed request per `symcost model`: its mode named once, contradictions refused before anything is derived, and
every mode answered through ``request.report``."""
from __future__ import annotations

import pytest

from symcost.errors import UsageError
from symcost.parse import InputSpec
from symcost.request import Mode, ModelRequest, report

LINEAR = "from torch import nn\ndef build():\n    return nn.Sequential(nn.Linear(8, 16), nn.ReLU())\n"


@pytest.mark.parametrize("options, mode", [
    ({}, Mode.FORWARD),
    ({"backward": True}, Mode.STEP),
    ({"per_token": True}, Mode.STEP),
    ({"past": "T"}, Mode.DECODE),
    ({"generate": 16}, Mode.DECODE),
    ({"config": "hidden_size=d"}, Mode.CONFIG),
    ({"config": "hidden_size=d", "past": "T"}, Mode.CONFIG),          # a decode step in config fields
    ({"config": "hidden_size=d", "backward": True}, Mode.CONFIG),
    ({"config_values": "sizes.json"}, Mode.CONFIG),
    ({"config": "hidden_size=d", "generate": "N"}, Mode.CONFIG_GENERATE),
])
def test_the_mode_is_named_once(options, mode):
    r = ModelRequest.of("hf:llama", "1xL", **options)
    assert r.mode is mode
    assert r.input == InputSpec.of("1xL") and r.convention.name == "flops"


def test_sizes_arrive_typed():
    r = ModelRequest.of("hf:llama", "1x1", past="2048")
    assert r.past == 2048 and isinstance(r.input, InputSpec) and r.input.dims == (1, 1)
    assert ModelRequest.of("hf:llama", (1, "L"), generate="N").generate == "N"   # the Python API's tuple form


@pytest.mark.parametrize("options, says", [
    ({"past": "T", "generate": 4}, "not both"),
    ({"past": "T", "backward": True}, "cost inference"),
    ({"generate": 4, "train": True}, "cost inference"),
    ({"config": "hidden_size=d", "trace_sizes": "L=9:7"}, "own trace sizes"),
    ({"config_values": "x.json", "past": "T"}, "--config-values names configurations"),
    ({"config": "hidden_size=d", "layers": True}, "--layers is not available with --config"),
    ({"config": "hidden_size=d", "past": "T", "train": True}, "one decode step of inference"),
    ({"past": "0"}, "positive integer"),
    ({"past": "2T"}, "not a positive integer or a valid symbol name"),
    ({"convention": "flopz"}, "unknown convention"),
])
def test_contradictions_are_refused_before_anything_is_derived(options, says):
    with pytest.raises(UsageError, match=says):
        ModelRequest.of("hf:llama", "1xL", **options)


def test_named_inputs_and_a_decode_need_one_shape():
    with pytest.raises(UsageError, match="named inputs"):
        ModelRequest.of("hf:t5", "input_ids=1xL,decoder_input_ids=1xM", past="T")
    with pytest.raises(UsageError, match="B x L"):
        ModelRequest.of("hf:llama", "1x3xL", past="T")


def test_every_mode_reports_through_one_path(tmp_path, monkeypatch):
    # a file model, forward and training step: numbers from torch's own FlopCounterMode at B = 3
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    monkeypatch.setenv("SYMCOST_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "lin.py").write_text(LINEAR)
    target = f"{tmp_path / 'lin.py'}:build"
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU())
    with FlopCounterMode(display=False) as forward:
        model(torch.ones(3, 8))
    with FlopCounterMode(display=False) as step:
        model(torch.ones(3, 8)).sum().backward()
    assert forward.get_total_flops() == 2 * 3 * 8 * 16     # one (3 x 8) @ (8 x 16) product, 2 FLOPs a MAC

    fwd = report(ModelRequest.of(target, "Bx8", convention="torch", at=["B=3"]), progress=False)
    assert fwd.evaluations[0]["total"]["flops"] == forward.get_total_flops()
    train = report(ModelRequest.of(target, "Bx8", convention="torch", backward=True, at=["B=3"]), progress=False)
    assert train.evaluations[0]["total"]["flops"] == step.get_total_flops()


CNN = ("from torch import nn\ndef build():\n    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), "
       "nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))\n")


def _three_per_mac():
    from symcost.convention_base import Convention, weight_table

    # a convention of the user's own: 3 per multiply-accumulate, nothing else (FlopCounterMode counts 2 per MAC of
    # the convolution and the linear layer and nothing else, so this is 3/2 of its count)
    return Convention("three-per-mac", "3 per multiply-accumulate", "a test", weight_table(0, mac=3))


@pytest.mark.parametrize("backward", [False, True])
def test_a_convention_of_ones_own_is_weighed_in_the_reports(tmp_path, monkeypatch, backward):
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    monkeypatch.setenv("SYMCOST_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "cnn.py").write_text(CNN)
    target = f"{tmp_path / 'cnn.py'}:build"
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                                torch.nn.Flatten(), torch.nn.Linear(8, 4))
    sizes = [(17, 23), (32, 64), (30, 45)]   # odd, multiples of 32, even and odd
    expected = []
    for h, w in sizes:
        x = torch.ones(2, 3, h, w, requires_grad=False)
        with FlopCounterMode(display=False) as c:
            out = model(x)
            if backward:
                out.sum().backward()
        expected.append(3 * c.get_total_flops() // 2)
    at = [f"H={h},W={w}" for h, w in sizes]
    for _ in range(2):  # the second time with symcost's own conventions stored for this model: still weighed
        got = report(ModelRequest.of(target, "2x3xHxW", convention=_three_per_mac(), backward=backward, at=at),
                     progress=False)
        assert [e["total"]["flops"] for e in got.evaluations] == expected
        assert got.convention == "three-per-mac"
        report(ModelRequest.of(target, "2x3xHxW", convention="flops", backward=backward, at=at), progress=False)


WIDE = ("from torch import nn\ndef build(width=16):\n    return nn.Sequential(nn.Linear(8, width), nn.ReLU(), "
        "nn.Linear(width, 4))\n")


def test_a_convention_of_ones_own_is_fitted_in_a_config_formula(tmp_path, monkeypatch):
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    monkeypatch.setenv("SYMCOST_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "wide.py").write_text(WIDE)
    target = f"{tmp_path / 'wide.py'}:build"
    points = [(5, 3), (16, 1), (33, 7)]   # (width, batch): odd, even, past the traced widths
    expected = []
    for width, batch in points:
        model = torch.nn.Sequential(torch.nn.Linear(8, width), torch.nn.ReLU(), torch.nn.Linear(width, 4))
        with FlopCounterMode(display=False) as c:
            model(torch.ones(batch, 8))
        expected.append(3 * c.get_total_flops() // 2)   # 2 per MAC of both products there, 3 here
    got = report(ModelRequest.of(target, "Bx8", convention=_three_per_mac(), config="width=w",
                                 at=[f"w={w},B={b}" for w, b in points]), progress=False)
    assert [e["total"]["flops"] for e in got.evaluations] == expected


def test_a_convention_of_ones_own_must_not_borrow_a_name_or_reach_stored_formulas():
    from dataclasses import replace

    with pytest.raises(UsageError, match="a name of its own"):
        ModelRequest.of("hf:llama", "1xL", convention=replace(_three_per_mac(), name="flops"))
    for options in ({"generate": 4}, {"config": "hidden_size=d", "generate": "N"}):
        with pytest.raises(UsageError, match="is your own"):
            ModelRequest.of("hf:llama", "1xL", convention=_three_per_mac(), **options)
    from symcost.conventions import CONVENTIONS

    assert ModelRequest.of("hf:llama", "1xL", convention=CONVENTIONS["torch"]).convention is CONVENTIONS["torch"]
