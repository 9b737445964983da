"""The one number formatter and table renderer (symcost/render.py): exact layout, deterministic without a terminal."""
from __future__ import annotations

import subprocess
import sys

from symcost.render import choose_unit, count, pairs, prefix_for, scaled, seconds, si, table


def test_table_aligns_columns_with_a_rule_under_the_header():
    text = table(["layer", "type", "params"], [["conv1", "conv2d", "9,408"], ["layer1.0.conv1", "conv2d", "36,864"]],
                 right={2})
    # widths: 14 ("layer1.0.conv1"), 6, 6; two spaces between columns; numbers right-aligned
    assert text.splitlines() == [
        "layer           type    params",
        "--------------  ------  ------",
        "conv1           conv2d   9,408",
        "layer1.0.conv1  conv2d  36,864",
    ]


def test_cells_are_text_not_markup_and_never_truncated():
    long = "features." + ".".join(["block"] * 60)  # 369 characters, wider than any terminal
    text = table(["name", "torch"], [[long, "[torch.nn.Conv2d]"], ["x", "[bold]y[/bold]"]])
    lines = text.splitlines()
    assert lines[2] == f"{long}  [torch.nn.Conv2d]"
    assert lines[3].split() == ["x", "[bold]y[/bold]"]
    assert all(line == line.rstrip() for line in lines)


def test_pairs_pad_labels_to_one_width_and_indent():
    assert pairs([("params", "1,344"), ("FLOPs[flops]", "2*C")], indent=2).splitlines() == [
        "  params        1,344", "  FLOPs[flops]  2*C"]


def test_no_colour_or_terminal_width_even_when_the_environment_asks_for_them():
    code = ("from symcost.render import table; "
            "print(table(['a', 'b'], [['" + "x" * 150 + "', '1']], right={1}))")
    env = {"FORCE_COLOR": "1", "COLUMNS": "20", "TERM": "xterm-256color", "PATH": "/usr/bin:/bin",
           "PYTHONPATH": ":".join(sys.path)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert "\x1b" not in out
    assert out.splitlines()[2] == "x" * 150 + "  1"


def test_numbers():
    assert count(4089184256) == "4,089,184,256" and count(None) == "-" and count("2*H*W") == "2*H*W"
    assert count(True) == "True"  # a flag is not a count
    # one prefix convention: K, M, G, T (uppercase K), for counts and rates alike
    assert prefix_for(999) == (1, "") and prefix_for(1000) == (1000, "K") and prefix_for(0) == (1, "")
    assert si(1500, "B/s") == "1.5 KB/s"               # 1500 / 1000 = 1.5
    assert si(9.89e14, "FLOP/s") == "989 TFLOP/s"      # 9.89e14 / 1e12 = 989
    assert si(5e16, "FLOP/s") == "5e+04 TFLOP/s"       # T is the largest prefix
    assert si(12, "B/s") == "12 B/s"
    assert seconds(None) == "-" and seconds(2.5) == "2.500 s" and seconds(0.0125) == "12.500 ms"
    assert seconds(3.4e-5) == "34.0 us"


def test_column_units():
    # median nonzero entry 4,089,184,256 -> G; the largest has 1 digit before the point
    assert choose_unit([1_000, 4_089_184_256, 8_178_368_512]) == (10**9, "G")
    assert choose_unit([1, 9_999]) == (1, "")          # small integers stay unscaled
    assert choose_unit([0, 0]) == (1, "")
    assert scaled(4_089_184_256, 10**9) == "4.09" and scaled(0, 10**9) == "0" and scaled(1, 10**9) == "<0.01"
