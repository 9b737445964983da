"""Layer inputs torch refuses, refused on the command line too: one line on stderr, exit 2, never a number and never
an internal error (exit 3).  Run as a user runs it, ``python -m symcost.cli`` in a subprocess."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def cli(*argv):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "symcost.cli", *argv], capture_output=True, text=True, env=env,
                          check=False, cwd=ROOT)


def refused(*argv) -> str:
    r = cli(*argv)
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert r.stdout == "" and r.stderr.count("\n") == 1 and "internal error" not in r.stderr, r.stderr
    return r.stderr


@pytest.mark.parametrize("command", ["eval", "check"])
@pytest.mark.parametrize("dim", ["5", "-3"])
def test_an_out_of_range_reduction_dim_is_refused_not_wrapped(command, dim):
    import torch

    with pytest.raises(IndexError):  # torch refuses it; 5 % 2 would silently have reduced dim 1
        torch.ones(2, 3).mean(int(dim))
    err = refused(command, "mean", f"dim={dim}", "--input", "2x3")
    assert f"mean: dim {dim} is out of range for an input of rank 2" in err


def test_a_reduction_dim_named_twice_is_refused():
    import torch

    with pytest.raises(RuntimeError, match="appears multiple times"):
        torch.ones(2, 3).mean((1, -1))
    assert "names one dimension twice" in refused("eval", "sum", "dim=1,-1", "--input", "2x3")


def test_an_in_range_negative_dim_still_counts():
    r = cli("eval", "mean", "dim=-2", "--input", "2x3", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["output_shape"] == [3]               # torch.ones(2, 3).mean(-2).shape
    assert out["ops"] == {"add": 3, "div": 3}       # 3 outputs x (2-1) adds, 1 div per output


def test_addmm_with_two_inputs_says_it_takes_three():
    err = refused("eval", "addmm", "--input", "4x5,5x6")
    assert "addmm: takes 3 inputs" in err and "got 2" in err and "two inputs" not in err


def test_addmm_with_three_inputs_counts():
    out = json.loads(cli("eval", "addmm", "--input", "6,4x5,5x6", "--json").stdout)
    assert out["output_shape"] == [4, 6] and out["macs"] == 120   # 4*6 outputs x 5 MACs


def test_upsample_refuses_a_second_input():
    # the tracer passes the output shape as a second input; on the command line it was read as the output (1x3x8x8)
    err = refused("eval", "upsample", "scale_factor=2", "--input", "1x3x8x8,1x3x8x8")
    assert "upsample: takes 1 input" in err and "got 2" in err


def test_upsample_with_one_input_scales():
    out = json.loads(cli("eval", "upsample", "scale_factor=2", "--input", "1x3x8x8", "--json").stdout)
    assert out["output_shape"] == [1, 3, 16, 16]   # F.interpolate(torch.ones(1, 3, 8, 8), scale_factor=2).shape


def test_the_library_refuses_the_tracer_only_input_too():
    import symcost
    from symcost.errors import LayerError

    with pytest.raises(LayerError, match="upsample: takes 1 input, got 2"):
        symcost.evaluate("upsample", [(1, 3, 8, 8), (1, 3, 8, 8)], scale_factor=2)


def test_copy_refuses_a_second_input():
    # the tracer passes (inputs..., output); on the command line 2x3,2x3 was read as a 2x3 input and a 2x3 output,
    # so a user meaning "cat of two 2x3" got reads 6 (not 12) and writes 6 (not 12)
    err = refused("eval", "copy", "--input", "2x3,2x3")
    assert "copy: takes 1 input" in err and "got 2" in err
    out = json.loads(cli("eval", "copy", "--input", "2x3", "--json").stdout)
    assert (out["reads"], out["writes"]) == (6, 6)   # a clone of 2*3 elements reads and writes each once
