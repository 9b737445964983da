"""The `symcost` command as a user runs it: output, JSON, exit codes, one-line errors."""
import json
import subprocess
import sys

import pytest


def run(*args):
    return subprocess.run([sys.executable, "-m", "symcost.cli", *args], capture_output=True, text=True)


def test_formula_conv2d_bias_shows_floors_and_named_sizes():
    r = run("formula", "conv2d", "--bias")
    assert r.returncode == 0, r.stderr
    assert "H_out" in r.stdout and "floor((H - d_h*(K_h - 1) + 2*p_h - 1)/s_h) + 1" in r.stdout
    assert "C_in*C_out*K_h*K_w/g + C_out" in r.stdout


def test_formula_latex_is_an_align_environment():
    r = run("formula", "conv2d", "--bias", "--latex")
    assert r.returncode == 0
    assert r.stdout.startswith("\\begin{align*}") and "\\left\\lfloor" in r.stdout and "C_{out}" in r.stdout


def test_formula_batchnorm_eval_exact():
    r = run("formula", "batchnorm2d", "--mode", "eval", "--convention", "exact")
    assert r.returncode == 0, r.stderr
    assert "FLOPs[exact]  2*C*H*N*W" in r.stdout


def test_eval_seed_004_conv_mults():
    r = run("eval", "conv2d", "--input", "1x1x130x40", "in_channels=1", "out_channels=32", "kernel_size=4,10",
            "stride=2,8", "bias=false", "--convention", "mults", "--json")
    data = json.loads(r.stdout)
    # 32*64*4 outputs x 40 multiplications = 327680
    assert data["output_shape"] == [1, 32, 64, 4] and data["flops"] == 327680 and data["convention"] == "mults"
    assert data["params"] == 1280 and data["macs"] == 327680
    # reads: 130*40 input + 1280 weights = 6480 ; writes 32*64*4 = 8192
    assert data["reads"] == 6480 and data["writes"] == 8192


def test_eval_linear_json():
    r = run("eval", "linear", "--input", "1x128", "in_features=128", "out_features=64", "--json")
    data = json.loads(r.stdout)
    # 64 outputs x 128 MACs = 8192 ; flops: 2*8192 + 64 bias adds = 16448
    assert data["macs"] == 8192 and data["flops"] == 16448 and data["params"] == 8256


def test_check_agrees_with_torch():
    r = run("check", "conv2d", "--input", "2x3x33x31", "in_channels=3", "out_channels=8", "kernel_size=3",
            "stride=2", "groups=1")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "all equal" in r.stdout


@pytest.mark.parametrize("args, message", [
    (["eval", "conv2dd", "--input", "1x1x4x4"], "did you mean conv2d"),
    (["eval", "conv2d", "--input", "1x3x8x8", "in_channels=3", "out_channels=4"], "missing required argument 'kernel_size'"),
    (["eval", "conv2d", "--input", "1x3x8x8", "in_channels=3", "out_channels=4", "kernel_size=3", "color=2"], "unknown argument 'color'"),
    (["eval", "conv2d", "--input", "1x3x8x8", "in_channels=3", "out_channels=4", "kernel_size=2.5"], "expected an integer"),
    (["eval", "conv2d", "--input", "1x3x8x8", "in_channels=3", "out_channels=4", "kernel_size=0"], "positive integer"),
    (["eval", "conv2d", "--input", "1x3x0x8", "in_channels=3", "out_channels=4", "kernel_size=1"], "positive integers"),
    (["eval", "conv2d", "--input", "1x3x4x4", "in_channels=3", "out_channels=4", "kernel_size=7"], "larger than the padded input"),
    (["eval", "conv2d", "--input", "1x3x8x8", "in_channels=3", "out_channels=4", "kernel_size=1", "groups=2"], "not divisible by groups"),
    (["eval", "linear", "--input", "1x8", "in_features=8", "out_features=2", "--convention", "gflops"], "unknown convention"),
    (["formula", "conv2d", "kernel_size=__import__('os').system('true')"], "not a valid symbol name"),
    (["eval", "conv2d", "--input", "1x3xHx8", "in_channels=3", "out_channels=4", "kernel_size=1"], "not an integer"),
])
def test_bad_input_is_one_line_exit_2(args, message):
    r = run(*args)
    assert r.returncode == 2, r.stdout + r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_formula_does_not_import_torch():
    code = ("import sys; from symcost.cli import main; main(['formula','conv2d','--bias']); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_list_and_conventions():
    r = run("list")
    assert r.returncode == 0 and "conv2d" in r.stdout and "torch.nn.Conv2d" in r.stdout
    r = run("conventions")
    for name in ("macs", "flops", "exact", "mults", "torch"):
        assert f"  {name} " in r.stdout
