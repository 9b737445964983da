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


def test_symbols_stay_allowed_where_the_argument_is_numeric(capsys):
    # padding takes a number or 'same'/'valid'; a symbol name is a number for the formula: H + 2P - 2 rows out
    assert main(["formula", "conv2d", "padding=P", "kernel_size=3"]) == 0
    out = capsys.readouterr().out
    assert "H + 2*P - 2" in out
