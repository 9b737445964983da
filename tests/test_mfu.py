"""symcost mfu: model FLOPs per step and token from the exact derivation, over a measured time and a peak."""
import json

import pytest

from tests.test_models import cli


def test_mfu_of_a_gpt2_training_step():
    r = cli("mfu", "hf:gpt2:base", "--input", "2x128", "--step-time", "0.01", "--device", "h100-sxm", "--backward",
            "--json", "--no-cache")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    # GPT-2 small without its LM head (hf:gpt2:base) forward under 'torch': (36864*L**2 + 169869312*L) per sequence (tests/test_models.py), the backward
    # twice that (tests/test_backward.py): 3 x 2 x (36864*128**2 + 169869312*128) = 134083510272
    assert d["flops_per_step"] == 134083510272
    assert d["tokens_per_step"] == 256 and d["flops_per_token"] == 134083510272 // 256
    # H100 SXM dense bf16 peak 989.4 TFLOP/s (roofline preset)
    assert d["device"]["peak_flops"] == pytest.approx(989.4e12)
    assert d["mfu"] == pytest.approx(134083510272 / 0.01 / 989.4e12)
    assert "MFU = " in d["formula"]


def test_mfu_refuses_a_bad_device_and_says_when_mfu_exceeds_one():
    r = cli("mfu", "hf:gpt2", "--input", "1x8", "--step-time", "0.1", "--device", "no-such-gpu")
    assert r.returncode == 2 and "unknown device" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = cli("mfu", "hf:gpt2", "--input", "1xL", "--step-time", "0.1", "--device", "h100-sxm")
    assert r.returncode == 2 and "concrete" in r.stderr
    r = cli("mfu", "hf:gpt2", "--input", "1x8", "--step-time", "1e-9", "--device", "h100-sxm", "--json")
    assert r.returncode == 0 and "MFU above 1" in json.loads(r.stdout)["notes"][0]


def test_a_symbolic_input_is_refused_at_the_edge_before_torch_is_imported():
    import subprocess
    import sys

    code = ("import sys; from symcost.cli import main; "
            "rc = main(['mfu', 'hf:gpt2', '--input', '8xL', '--step-time', '1', '--device', 'h100-sxm']); "
            "assert rc == 2 and 'torch' not in sys.modules, (rc, 'torch' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    assert r.stderr.strip() == "symcost mfu: error: symcost mfu needs a concrete input (e.g. 8x2048), got '8xL'"


def test_the_python_api_refuses_a_symbolic_input_before_deriving(monkeypatch):
    import symcost.derive
    from symcost.errors import UsageError
    from symcost.mfu import mfu_report

    monkeypatch.setattr(symcost.derive, "derive", lambda *a, **k: pytest.fail("derived a symbolic input"))
    with pytest.raises(UsageError, match="needs a concrete input .* got '8xL'"):
        mfu_report("hf:gpt2", "8xL", 1.0, "h100-sxm")
