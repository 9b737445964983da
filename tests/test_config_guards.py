"""A config formula past the configurations it was fitted at.  The model's Python decides on configuration fields
the symbolic trace never sees (transformers gives SDPA ``enable_gqa`` only while head_dim <= 256 and repeats the
keys and values above it), so a number beyond the sampled configurations is given only after a trace at its own
configuration agrees; where it does not, symcost refuses naming both numbers."""
from __future__ import annotations

import pytest

pytest.importorskip("transformers")

import symcost.hyper as hyper  # noqa: E402
from symcost.hyper import config_cost  # noqa: E402
from symcost.cli import main  # noqa: E402
from tests.test_decode import measured_step  # noqa: E402  (FlopCounterMode around a real cached step of 2 x 1 ids)
from tests.test_hyper import hf_model  # noqa: E402

FIXED = dict(intermediate_size=176, num_attention_heads=4, num_key_value_heads=2, vocab_size=1000)
CONFIG = "hidden_size=d,num_hidden_layers=n," + ",".join(f"{k}={v}" for k, v in FIXED.items())


@pytest.fixture(scope="module")
def decode():
    return hyper.derive_config("hf:llama", "2x1", CONFIG, past="T")


def test_the_sampled_configurations_stay_below_the_head_dim_guard(decode):
    # the fit's traces are small models: this is the blindness the check closes, not a property to keep
    assert decode.sampled()["head_dim"] < 256 and decode.sampled()["d"] < 1024
    assert any("given only after a trace at its own configuration agrees" in n for n in decode.notes)


def test_past_the_head_dim_guard_the_number_is_refused_naming_both(decode):
    # d = 2048 over 4 heads: head_dim 512 > 256, where transformers copies K and V for each query head
    with pytest.raises(ValueError, match=r"d = 2048 > \d+.*head_dim = 512 > \d+\).*another path: a trace at this "
                                         r"configuration gives [\d,]+ reads, the formula [\d,]+"):
        decode.evaluate({"d": 2048, "n": 2, "T": 100}, "torch")
    assert {"T": 100, "d": 2048, "n": 2} not in decode.fit.get("confirmed", [])


@pytest.mark.parametrize(("d", "n", "cached"), [(192, 3, 37), (1000, 2, 64), (1024, 11, 1)])
def test_past_the_sampled_configurations_below_the_guard_numbers_equal_torch(decode, d, n, cached):
    # head_dim 48, 250, 256: the path the fit traced, at widths and depths it never traced (odd, even, 2**k)
    values = {"d": d, "n": n, "T": cached}
    assert decode.beyond(values)
    model = hf_model("llama", hidden_size=d, num_hidden_layers=n, **FIXED)
    assert decode.evaluate(values, "torch")["flops"] == measured_step(model, cached)
    assert decode.evaluate(values)["params"] == sum(p.numel() for p in model.parameters())
    assert values in decode.fit["confirmed"]


def test_a_confirmed_configuration_is_not_traced_again(decode, monkeypatch):
    values = {"d": 96, "n": 2, "T": 5}   # d past the sampled widths
    first = decode.evaluate(values, "torch")

    def refuse(*args, **kwargs):
        raise AssertionError("traced again")

    monkeypatch.setattr(config_cost, "Tracer", refuse)
    assert decode.evaluate(values, "torch") == first
    with pytest.raises(AssertionError, match="traced again"):
        decode.evaluate({"d": 104, "n": 2, "T": 5}, "torch")


def test_inside_the_sampled_configurations_nothing_is_traced(decode, monkeypatch):
    inside = {"d": min(decode.sampled()["d"], 64), "n": 2, "T": 9}
    assert not decode.beyond(inside)
    monkeypatch.setattr(config_cost, "Tracer", None)   # a trace would fail: none is made
    assert decode.evaluate(inside, "torch")["flops"] > 0


def test_the_numpy_sweep_marks_what_lies_beyond_the_sampled_configurations(decode):
    import numpy as np

    top = decode.sampled()["d"]
    names = [str(s) for s in decode.symbols]
    columns = {"T": [9, 9], "d": [16, 8 * (top // 8 + 1)], "n": [2, 2]}
    out = decode.lambdified()(*[np.array(columns[x]) for x in names])
    assert out["valid"].tolist() == [True, True] and out["sampled"].tolist() == [True, False]


def test_cli_refuses_in_one_line_with_exit_2(capsys):
    argv = ["model", "hf:llama", "--input", "1x1", "--past", "T", "--config", CONFIG, "--at", "d=2048,n=2,T=100"]
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and "head_dim = 512" in err and "another path" in err, err


def test_memory_past_the_sampled_configurations_is_refused_where_the_peak_moves(capsys):
    # at d = 160 the attention's tensors outgrow the fixed 176-wide MLP's: the step's peak moves to an op the fitted
    # configurations never peaked at, so the fitted Max of live bytes would be too small there
    argv = ["memory", "hf:llama", "--input", "1xL", "--config", CONFIG, "--at", "d=160,n=3,L=16"]
    main(argv)
    out, _ = capsys.readouterr()
    assert "refused: L=16, d=160, n=3: beyond the configurations" in out and "bytes of peak" in out, out


FACTORY = '''
import torch


class Net(torch.nn.Module):
    def __init__(self, width):
        super().__init__()
        self.a = torch.nn.Linear(8, width)
        self.b = torch.nn.Linear(width, width) if width > 300 else None   # a path only wide models take

    def forward(self, x):
        x = self.a(x)
        return self.b(x) if self.b is not None else x


def build(width=16):
    return Net(width)
'''


def _torch_flops(path, width: int, rows: int) -> int:
    import importlib.util

    import torch
    from torch.utils.flop_counter import FlopCounterMode

    spec = importlib.util.spec_from_file_location("wide_factory", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with torch.no_grad(), FlopCounterMode(display=False) as c:
        module.build(width)(torch.zeros(rows, 8))
    return c.get_total_flops()


def test_a_plot_past_the_sampled_widths_checks_each_value_and_refuses_the_other_path(tmp_path, capsys):
    (tmp_path / "wide.py").write_text(FACTORY)
    target = f"{tmp_path / 'wide.py'}:build"
    argv = ["plot", target, "--input", "4x8", "--config", "width=w", "--range", "w=100:400:100", "--convention",
            "torch", "--metric", "flops", "--out", str(tmp_path / "p.png"), "--no-cache"]
    assert main(argv) == 0
    out, _ = capsys.readouterr()
    assert "1 of 4 values refused (w=400)" in out and "another path" in out, out
    cc = hyper.derive_config(target, "4x8", "width=w")
    assert cc.sampled()["w"] < 100
    # inside the same path: 4 rows x 8 x w MACs, 2 FLOPs each (torch)
    assert cc.evaluate({"w": 200}, "torch")["flops"] == _torch_flops(tmp_path / "wide.py", 200, 4) == 2 * 4 * 8 * 200
    with pytest.raises(ValueError, match=r"w = 400 > \d+\) the model takes another path"):
        cc.evaluate({"w": 400}, "torch")
    # the other path: a second linear, 4 rows x w x w more MACs
    assert _torch_flops(tmp_path / "wide.py", 400, 4) == 2 * 4 * 8 * 400 + 2 * 4 * 400 * 400
