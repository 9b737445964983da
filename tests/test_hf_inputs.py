"""hf: targets get the inputs their architecture needs; named inputs, each with its own symbols, traced together.

Each family at its default config on meta: params equal the distinct tensors' numel(), and the ``torch`` totals of
one derivation equal FlopCounterMode around the model's own forward, on inputs built here by hand, at several sizes.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from symcost.derive import trace_target
from symcost.errors import UsageError
from symcost.parse import InputSpec, parse_shape_names, shape_key
from symcost.targets import load_target
from helpers import at_point

pytest.importorskip("transformers")


def _ids(*shape):
    return torch.zeros(*shape, dtype=torch.long, device="meta")


def _floats(*shape):
    return torch.zeros(*shape, device="meta")


def _flops(model, **inputs) -> int:
    with torch.no_grad(), FlopCounterMode(display=False) as c:
        model(**inputs)
    return c.get_total_flops()


def _params(model) -> int:
    return sum(p.numel() for p in model.parameters())  # parameters() yields each tied tensor once



def test_a_config_formula_gets_the_same_preparation_as_one_model(tmp_path, monkeypatch):
    """--config on BART: decoder ids beside the input and eager attention (its default attention reads mask
    values), as `symcost model hf:bart` prepares it; the formula in both depths equals FlopCounterMode around eager
    BART models built here at depths never traced together."""
    import transformers

    from symcost.hyper import derive_config

    monkeypatch.setenv("SYMCOST_CACHE_DIR", str(tmp_path))
    cc = derive_config("hf:bart", "1xL", {"encoder_layers": "n", "decoder_layers": "m"}, progress=False)
    assert any("decoder_input_ids = 1xL" in n for n in cc.notes)
    assert any("attn_implementation='eager'" in n for n in cc.notes)
    for n, m, length in ((3, 5, 7), (4, 2, 64), (2, 3, 33)):
        cfg = transformers.AutoConfig.for_model("bart", encoder_layers=n, decoder_layers=m)
        with torch.device("meta"):
            model = transformers.AutoModel.from_config(cfg, attn_implementation="eager").eval()
        got = cc.evaluate({"n": n, "m": m, "L": length}, "torch")
        assert got["flops"] == _flops(model, input_ids=_ids(1, length), decoder_input_ids=_ids(1, length))
        assert got["params"] == _params(model)

def test_t5_named_inputs_each_with_its_own_symbols():
    mc = trace_target("hf:t5", InputSpec.of("input_ids=1xL,decoder_input_ids=1xM").shape)
    model = load_target("hf:t5", device="meta").eval()
    assert [str(s) for s in mc.symbols] == ["L", "M"]
    for length, dec in ((7, 5), (64, 33), (130, 1)):   # odd, even, a multiple of 32, one decoder token
        # (one decoder token takes a path of its own, a guard M != 1: traced there on its own, as --at does)
        values = at_point(mc, {"L": length, "M": dec}, "torch", lambda: trace_target(
            "hf:t5", {"input_ids": (1, length), "decoder_input_ids": (1, dec)}))
        assert values["flops"] == _flops(model, input_ids=_ids(1, length), decoder_input_ids=_ids(1, dec))
        assert values["params"] == _params(model)


def test_bart_one_shape_gets_decoder_ids_and_eager_attention():
    mc = trace_target("hf:bart", InputSpec.of("1xL").shape)
    model = load_target("hf:bart", device="meta", attn_implementation="eager").eval()
    assert any("decoder_input_ids = 1xL" in n for n in mc.notes)
    assert any("attn_implementation='eager'" in n for n in mc.notes)
    for length in (7, 64, 96):
        values = mc.evaluate({"L": length}, "torch")
        assert values["flops"] == _flops(model, input_ids=_ids(1, length), decoder_input_ids=_ids(1, length))
        assert values["params"] == _params(model)


def test_clip_both_towers():
    mc = trace_target("hf:clip", InputSpec.of("input_ids=BxL,pixel_values=Bx3x224x224").shape)
    model = load_target("hf:clip", device="meta").eval()
    for batch, length in ((1, 7), (2, 32), (3, 77)):
        values = mc.evaluate({"B": batch, "L": length}, "torch")
        assert values["flops"] == _flops(model, input_ids=_ids(batch, length),
                                         pixel_values=_floats(batch, 3, 224, 224))
        assert values["params"] == _params(model)
    # one shape: the text ids, and the vision tower's pixels at its config's 224 x 224, stated
    one = trace_target("hf:clip", InputSpec.of("1xL").shape)
    assert any("pixel_values = 1x3x224x224" in n for n in one.notes)
    ours, named = one.evaluate({"L": 9}, "torch"), mc.evaluate({"B": 1, "L": 9}, "torch")
    assert all(ours[k] == named[k] for k in ("params", "macs", "flops"))


def test_vision_and_audio_inputs_are_floats():
    vit = load_target("hf:vit", device="meta").eval()
    mc = trace_target("hf:vit", InputSpec.of("2x3x224x224").shape)
    assert mc.evaluate({}, "torch")["flops"] == _flops(vit, pixel_values=_floats(2, 3, 224, 224))
    assert mc.evaluate({}, "torch")["params"] == _params(vit)
    # ViT refuses any other resolution: the symbolic request is derived at its own 224, and says so
    fixed = trace_target("hf:vit", InputSpec.of("2x3xRxR").shape)
    assert fixed.fixed_at == {"R": 224} and fixed.evaluate({"R": 224}, "torch") == mc.evaluate({}, "torch")
    whisper = load_target("hf:whisper", device="meta").eval()
    mc = trace_target("hf:whisper", InputSpec.of("input_features=1x80x3000,decoder_input_ids=1xM").shape)
    for dec in (1, 6, 32):
        values = mc.evaluate({"M": dec}, "torch")
        assert values["flops"] == _flops(whisper, input_features=_floats(1, 80, 3000), decoder_input_ids=_ids(1, dec))
        assert values["params"] == _params(whisper)


def test_input_spec_parsing():
    spec = InputSpec.of("input_ids=1xL, decoder_input_ids=1xM").shape
    assert list(spec) == ["input_ids", "decoder_input_ids"] and [str(d) for d in spec["decoder_input_ids"]] == ["1", "M"]
    assert parse_shape_names("input_ids=1xL,decoder_input_ids=Bx7") == (1, "L", "B", 7)
    assert shape_key("input_ids = 1 x L,decoder_input_ids=1xM") == "input_ids=1xL,decoder_input_ids=1xM"
    for bad in ("input_ids=1xL,1xM", "input_ids=1xL,input_ids=1xM", "1x=2"):
        with pytest.raises(UsageError):
            InputSpec.of(bad).shape


def test_cli_named_inputs_and_unknown_name():
    env = dict(os.environ)
    r = subprocess.run([sys.executable, "-m", "symcost.cli", "model", "hf:t5", "--input",
                        "input_ids=1xL,decoder_input_ids=1xM", "--no-cache", "--json"], capture_output=True,
                       text=True, env=env, check=False)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["formula"]["flops"].count("M") >= 2   # a formula in both L and M
    r = subprocess.run([sys.executable, "-m", "symcost.cli", "model", "hf:t5", "--input",
                        "input_ids=1xL,pixel_values=1x3x8x8", "--no-cache"], capture_output=True, text=True,
                       env=env, check=False)
    assert r.returncode == 2 and "no input 'pixel_values'" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, "-m", "symcost.cli", "model", "hf:t5", "--input",
                        "input_ids=1xL,decoder_input_ids=1x1", "--past", "T"], capture_output=True, text=True,
                       env=env, check=False)
    assert r.returncode == 2 and "take one shape" in r.stderr and len(r.stderr.strip().splitlines()) == 1
