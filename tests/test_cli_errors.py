"""Bad input on the command line: one line on stderr naming the problem, exit code 2, never an internal error
(exit 3) and never a number printed for input symcost did not understand."""
import pytest

from symcost.cli import main


def fails(capsys, *argv) -> str:
    """Run ``symcost ARGV`` in process; it must refuse with exit 2 and one line on stderr, which is returned."""
    rc = main(list(argv))
    out, err = capsys.readouterr()
    assert rc == 2, (rc, out, err)
    assert out == "" and err.count("\n") == 1 and "internal error" not in err, err
    return err


CONV = ("in_channels=3", "out_channels=8", "kernel_size=3")


@pytest.mark.parametrize("command", ["eval", "formula", "check"])
def test_comma_separated_sizes_name_the_input_count_and_the_syntax(capsys, command):
    err = fails(capsys, command, "conv2d", "--input", "1,3,32,32", *CONV)
    assert "conv2d: takes 1 input" in err and "got 4" in err
    assert "joined by x" in err and "did you mean --input 1x3x32x32?" in err


@pytest.mark.parametrize("command", ["eval", "formula", "check"])
def test_two_inputs_to_a_one_input_layer(capsys, command):
    err = fails(capsys, command, "linear", "--input", "1x128,1x128", "in_features=128", "out_features=64")
    assert "linear: takes 1 input" in err and "got 2" in err and "did you mean" not in err


def test_the_input_count_is_also_checked_in_the_library():
    from symcost import layer
    from symcost.errors import LayerError

    conv = layer("conv2d", in_channels=3, out_channels=8, kernel_size=3)
    with pytest.raises(LayerError, match="conv2d: takes 1 input, got 2"):
        conv.cost((1, 3, 8, 8), (1, 3, 8, 8))


@pytest.mark.parametrize("argv", [
    ("formula", "batchnorm2d", "--mode", "sideways"),
    ("formula", "batchnorm2d", "mode=sideways"),
    ("eval", "batchnorm2d", "--mode", "sideways", "num_features=3", "--input", "1x3x4x4"),
    ("formula", "batchnorm2d", "mode=2"),
])
def test_an_unknown_choice_lists_the_choices(capsys, argv):
    err = fails(capsys, *argv)
    assert "batchnorm2d: mode: expected one of 'eval', 'train', 'folded'" in err


def test_a_choice_is_never_a_symbol_or_number_in_the_library():
    import sympy

    from symcost import layer
    from symcost.errors import LayerError

    for value in ("sideways", sympy.Symbol("m"), 3):
        with pytest.raises(LayerError, match="mode must be one of 'eval', 'train', 'folded'"):
            layer("batchnorm2d", symbolic=True, mode=value)


@pytest.mark.parametrize("value", ["Same", "sme", "valdi"])
def test_a_misspelt_choice_of_a_numeric_argument_is_not_taken_as_a_symbol(capsys, value):
    err = fails(capsys, "formula", "conv2d", f"padding={value}")
    assert "conv2d: padding: expected 'same', 'valid' or an integer" in err and "did you mean" in err


def test_an_option_word_is_never_a_size_symbol(capsys):
    # ConvTranspose has no padding='same' in torch; 'same' must not become a symbol "same" in the formula
    err = fails(capsys, "formula", "conv_transpose2d", "padding=same")
    assert "conv_transpose2d: padding: expected an integer or a symbol name, got the keyword 'same'" in err
    assert "stride: expected an integer or a symbol name, got the keyword 'none'" in fails(
        capsys, "formula", "conv2d", "stride=none")


def test_symbols_stay_allowed_where_the_argument_is_numeric(capsys):
    # padding takes a number or 'same'/'valid'; a symbol name is a number for the formula: H + 2P - 2 rows out
    assert main(["formula", "conv2d", "padding=P", "kernel_size=3"]) == 0
    out = capsys.readouterr().out
    assert "H + 2*P - 2" in out


# ---- ceil_mode pooling: Piecewise sizes in the cached sweep -------------------------------------------------------

CEIL_MODEL = '''
import torch.nn as nn


def build():
    # MaxPool2d(3, stride=3, padding=1, ceil_mode=True): a last window may start in the right padding and is dropped,
    # so the pooled size is a Piecewise; the adaptive pool's windows add floors and ceilings of thirds
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.MaxPool2d(3, stride=3, padding=1, ceil_mode=True),
                         nn.Conv2d(8, 4, 3), nn.AdaptiveAvgPool2d(3))
'''


@pytest.fixture
def ceil_target(tmp_path, monkeypatch):
    monkeypatch.setenv("SYMCOST_CACHE_DIR", str(tmp_path / "cache"))
    path = tmp_path / "ceilnet.py"
    path.write_text(CEIL_MODEL)
    return f"{path}:build"


def _sweep(capsys, target, *at):
    import json

    argv = ["model", target, "--input", "1x3xHxW", "--json", *(x for a in at for x in ("--at", a))]
    assert main(argv) == 0
    return [{"values": e["values"], **e["total"]} for e in json.loads(capsys.readouterr().out)["evaluations"]]


def test_ceil_mode_model_sweeps_from_the_cache_exactly_as_a_fresh_evaluation(capsys, ceil_target):
    import importlib.util

    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from symcost import trace

    hs, ws = "8:41", "8,9,10,31,32,33,64,65,97"
    first = _sweep(capsys, ceil_target, f"H={hs}", f"W={ws}")   # derives and fills the cache
    cached = _sweep(capsys, ceil_target, f"H={hs}", f"W={ws}")  # answers from the plain-data summary
    assert cached == first and len(cached) == 34 * 9
    spec = importlib.util.spec_from_file_location("ceilnet", ceil_target.rsplit(":", 1)[0])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.build()
    fresh = trace(model, (1, 3, "H", "W"))
    for e in cached:  # sympy substitution, point by point
        assert {m: e[m] for m in ("params", "macs", "flops")} == \
            {m: fresh.evaluate(e["values"], "flops")[m] for m in ("params", "macs", "flops")}, e["values"]
    # the torch convention against FlopCounterMode, at sizes of every residue mod 3 and where a window is dropped
    for h, w in ((8, 9), (10, 31), (32, 33), (65, 97)):
        counter = FlopCounterMode(display=False)
        with counter:
            model(torch.zeros(1, 3, h, w))
        assert fresh.evaluate({"H": h, "W": w}, "torch")["flops"] == counter.get_total_flops(), (h, w)
    assert cached[0]["params"] == sum(p.numel() for p in model.parameters())


def test_ceil_mode_model_refuses_a_size_outside_its_domain(capsys, ceil_target):
    # H=7: conv 5 rows, pool ceil((5 + 2 - 3)/3) + 1 = 3 windows, the last starting at row 2*3 = 6 in the right
    # padding, so torch drops it: 2 rows; the second conv's 3x3 kernel has no room: 2 - 2 = 0
    err = fails(capsys, "model", ceil_target, "--input", "1x3xHxW", "--at", "H=7", "--at", "W=32")
    assert "cannot take H=7, W=32" in err and "becomes 0" in err


def test_tree_evaluation_is_exact_where_float_rounding_is_not():
    import sympy

    from symcost.exact import gcd
    from symcost.summary import evaluate_tree, to_tree

    h = sympy.Symbol("H", integer=True, positive=True)
    exprs = [
        sympy.floor(h / 49),  # float64: floor(49 * (1/49)) = floor(0.999...) = 0
        sympy.ceiling(h / 3) * 7 - sympy.floor(2 * h / 7),
        sympy.Piecewise((h - 1, sympy.And(h >= 5, sympy.Ne(h, 9))), (h + 100, sympy.Or(h < 2, h > 50)), (0, True)),
        sympy.Min(h, 30) + 2 * sympy.Max(h / 2, 10),
        sympy.Mod(h, 7) + gcd(h, 12),
        sympy.factorial(h % 5),  # no tuple form: evaluated by sympy
    ]
    points = list(range(1, 200))
    for e in exprs:
        values = evaluate_tree(to_tree(e), {"H": points})
        assert [int(v) for v in values] == [int(e.xreplace({h: p})) for p in points], e


# ---- --assume-divisible -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("argv, message", [
    # ResNet-50 at 224x225 has 4,346,221,568 MACs; the multiple-of-32 formula would give 4,107,430,400
    (("--input", "1x3xHxW", "--assume-divisible", "32", "--at", "H=224", "--at", "W=225"),
     "--assume-divisible 32: W=225 is not a multiple of 32"),
    (("--input", "1x3xRxR", "--assume-divisible", "32", "--at", "R=64:128:16"),
     "--assume-divisible 32: R=80 is not a multiple of 32"),
    (("--input", "1x3xHxW", "--assume-divisible", "0"), "--assume-divisible needs a positive integer, got 0"),
    (("--input", "1x3xHxW", "--assume-divisible", "-32"), "--assume-divisible needs a positive integer, got -32"),
    (("--input", "1x3x224x224", "--assume-divisible", "32"), "--assume-divisible needs symbols in --input"),
])
def test_assume_divisible_refuses_sizes_that_break_it_before_tracing(capsys, argv, message):
    assert message in fails(capsys, "model", "torchvision:resnet50", *argv)


STRIDED_MODEL = '''
import torch.nn as nn


def build():
    return nn.Conv2d(3, 8, 3, stride=2, padding=1)
'''


def test_assume_divisible_is_stated_and_exact_where_it_holds(capsys, tmp_path, monkeypatch):
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    monkeypatch.setenv("SYMCOST_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "strided.py").write_text(STRIDED_MODEL)
    target = f"{tmp_path / 'strided.py'}:build"
    assert main(["model", target, "--input", "1x3xHxW", "--assume-divisible", "2", "--at", "H=64,66",
                 "--at", "W=32"]) == 0
    out = capsys.readouterr().out
    # (H/2)*(W/2) outputs x 8 channels x 27 MACs = 54*H*W
    assert "total MACs    54*H*W" in out
    assert "note: assumes H, W multiples of 2 (--assume-divisible): the formulas hold only at such sizes" in out
    for h, w in ((64, 32), (66, 32)):
        counter = FlopCounterMode(display=False)
        with counter:
            torch.nn.Conv2d(3, 8, 3, stride=2, padding=1)(torch.zeros(1, 3, h, w))
        macs = counter.get_total_flops() // 2  # FlopCounterMode: 2 per MAC, bias not counted
        assert f"H={h} W={w}" in out and f"{macs:,}" in out


# ---- per-layer --help ---------------------------------------------------------------------------------------------

def _help(capsys, *argv) -> str:
    with pytest.raises(SystemExit) as e:
        main(list(argv))
    assert e.value.code == 0
    return capsys.readouterr().out


def test_layer_help_lists_its_arguments_defaults_and_symbols(capsys):
    out = _help(capsys, "formula", "conv2d", "--help")
    assert "conv2d arguments (NAME=VALUE), omitted ones stay symbols:" in out
    assert "takes 1 input, e.g. --input NxC_inxHxW" in out
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ") and line.split()}
    assert "required; symbol C_in. input channels" in lines["in_channels"]
    assert "'same', 'valid'; default 0; omitted: symbol p_h,p_w" in lines["padding"]
    assert "(--bias / --no-bias); default true" in lines["bias"]
    assert "one of 'zeros', 'reflect', 'replicate', 'circular'; default zeros" in lines["padding_mode"]


def test_every_layer_has_a_help_listing_every_declared_argument(capsys):
    from symcost.registry import all_layers

    for name, cls in all_layers().items():
        for command in ("formula", "eval"):
            out = _help(capsys, command, name, "-h")
            assert f"{name} arguments (NAME=VALUE)" in out, name
            assert all(f"\n  {a.name} " in out for a in cls.args), name


def test_help_without_a_layer_is_the_command_help(capsys):
    out = _help(capsys, "formula", "--help")
    assert "usage: symcost formula" in out and "arguments (NAME=VALUE)" not in out


# ---- progress on stderr, only on a terminal ------------------------------------------------------------------------

class _Terminal:
    """A stderr that says it is a terminal, and keeps what was written."""

    def __init__(self):
        import io

        self.buffer = io.StringIO()

    def isatty(self):
        return True

    def write(self, text):
        return self.buffer.write(text)

    def flush(self):
        pass


@pytest.mark.parametrize("argv, spinner", [
    (["check", "relu", "--input", "2x3"], "running torch's torch.nn.ReLU under FlopCounterMode"),
    (["compare", "STRIDED", "--input", "1x3x16x16"], "deriving each tool's count"),
])
def test_slow_commands_show_a_spinner_on_a_terminal_and_nothing_elsewhere(capsys, monkeypatch, tmp_path, argv,
                                                                          spinner):
    import sys

    monkeypatch.setenv("SYMCOST_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "strided.py").write_text(STRIDED_MODEL)
    argv = [a.replace("STRIDED", f"{tmp_path / 'strided.py'}:build") for a in argv]
    assert main(argv) == 0
    piped = capsys.readouterr()
    assert piped.err == "" and piped.out
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert main(argv) == 0
    assert spinner in terminal.buffer.getvalue() and capsys.readouterr().out == piped.out


def test_every_tree_node_comes_back_as_it_went():
    """``summary.to_tree`` then ``formulas.from_tree``: the cached summary's trees rebuild each expression kind a
    formula holds (pieces, Min/Max, Mod, gcd, relations), so ``--json``'s named formulas work from the cache."""
    import sympy

    from symcost.exact import gcd
    from symcost.export.formulas import from_tree
    from symcost.summary import to_tree

    H, W = (sympy.Symbol(n, integer=True, positive=True) for n in "HW")
    exprs = [sympy.floor((H - 1) / 2) + 1, sympy.ceiling(W / 3) * H ** 2, sympy.Min(H, 512) * W,
             sympy.Max(H - 3, 1), sympy.Mod(W, 8), gcd(H, 4), sympy.Rational(3, 7) * H,
             sympy.Piecewise((64 * H ** 2, H <= 511), (17039360, H >= 512)),
             sympy.Piecewise((H, sympy.And(sympy.Ge(W, 2), sympy.Ne(H, 240))), (W, sympy.Or(H < 3, sympy.Eq(W, 5))),
                             (0, sympy.Not(sympy.Gt(H, 2))))]
    for e in exprs:
        back = from_tree(to_tree(e))
        assert back == e, (e, back)
        for h, w in ((1, 1), (7, 5), (240, 64), (600, 513)):  # and the same numbers
            assert back.xreplace({H: h, W: w}) == e.xreplace({H: h, W: w})
