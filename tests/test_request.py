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
