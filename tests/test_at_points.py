"""A repeated --at accumulates points, and every mode's evaluations share one JSON shape: the totals under "total"
(parts of a training step, a decode or a generation beside it).

Expected numbers: FlopCounterMode around the real module at each point.
"""
from __future__ import annotations

import json

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from symcost.cli import main
from symcost.errors import UsageError
from symcost.sweep import parse_assignments

NET = """
import torch


def net(width=6):
    return torch.nn.Sequential(torch.nn.Linear(5, width), torch.nn.ReLU(), torch.nn.Linear(width, 3))
"""


@pytest.fixture
def net(tmp_path, monkeypatch):
    monkeypatch.setenv("SYMCOST_CACHE_DIR", str(tmp_path / "cache"))
    path = tmp_path / "net.py"
    path.write_text(NET)
    return f"{path}:net"


def test_parse_assignments_accumulates_and_takes_products():
    assert parse_assignments(["P=5,N=8", "P=17,N=20"], ["N", "P"]) == [{"N": 8, "P": 5}, {"N": 20, "P": 17}]
    assert parse_assignments(["R=224", "R=225"], ["R"]) == [{"R": 224}, {"R": 225}]
    assert parse_assignments(["H=224", "W=193,200"], ["H", "W"]) == [{"H": 224, "W": 193}, {"H": 224, "W": 200}]
    assert parse_assignments(["R=3", "R=3:4"], ["R"]) == [{"R": 3}, {"R": 4}]   # a point given twice: once
    with pytest.raises(UsageError, match="no values for H"):
        parse_assignments(["H=1", "W=2", "W=3"], ["H", "W"])


def torch_flops(width: int, batch: int) -> int:
    with torch.device("meta"):
        model = torch.nn.Sequential(torch.nn.Linear(5, width), torch.nn.ReLU(), torch.nn.Linear(width, 3))
    with torch.no_grad(), FlopCounterMode(display=False) as c:
        model(torch.zeros(batch, 5, device="meta"))
    return c.get_total_flops()


def run(capsys, *argv) -> dict:
    assert main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


def test_repeated_at_evaluates_every_point_in_one_shape(capsys, net):
    d = run(capsys, "model", net, "--input", "Bx5", "--at", "B=2", "--at", "B=7", "--json", "--convention", "torch")
    assert [e["values"] for e in d["evaluations"]] == [{"B": 2}, {"B": 7}]
    for e in d["evaluations"]:
        assert set(e) == {"values", "total"}
        assert e["total"]["flops"] == torch_flops(6, e["values"]["B"])
    d = run(capsys, "model", net, "--input", "Bx5", "--backward", "--at", "B=2", "--at", "B=7", "--json",
            "--convention", "torch")
    assert [e["values"] for e in d["evaluations"]] == [{"B": 2}, {"B": 7}]
    assert all({"total", "forward", "backward"} <= set(e) for e in d["evaluations"])
    assert [e["forward"]["flops"] for e in d["evaluations"]] == [torch_flops(6, 2), torch_flops(6, 7)]


def test_config_at_nests_under_total_and_accumulates(capsys, net):
    d = run(capsys, "model", net, "--input", "Bx5", "--config", "width=w", "--at", "w=4,B=3", "--at", "w=9,B=2",
            "--json", "--convention", "torch")
    assert [e["values"] for e in d["evaluations"]] == [{"w": 4, "B": 3}, {"w": 9, "B": 2}]
    for e in d["evaluations"]:
        assert set(e) == {"values", "total"}
        assert e["total"]["flops"] == torch_flops(e["values"]["w"], e["values"]["B"])
        assert e["total"]["params"] == 5 * e["values"]["w"] + e["values"]["w"] + e["values"]["w"] * 3 + 3


def test_a_cached_config_call_imports_neither_torch_nor_transformers(net, tmp_path):
    from helpers import cached_call_outputs

    first, again = cached_call_outputs(["model", net, "--input", "Bx5", "--config", "width=w", "--at", "w=4,B=3",
                                        "--json"])
    drop = lambda d: {k: v for k, v in d.items() if k != "seconds"}  # noqa: E731
    assert drop(json.loads(again)) == drop(json.loads(first))
