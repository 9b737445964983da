"""Pieces instead of refusals: where a size guard bounds one input size (a truncation ``x[:, :512]``, a threshold
branch ``if W > 512``), the formula beyond it is derived too and the totals come as a ``Piecewise``, exact on both
sides.  Every expected number is FlopCounterMode's on the real module (torch's own counts), at sizes on both sides
of each guard and at odd, even and multiple-of-32 sizes."""
import textwrap

import numpy as np
import pytest
import sympy
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from symcost.errors import OutsideProvenDomain
from symcost.tracing import trace
from test_proven_domains import PATTERNS as GUARDED
from test_proven_domains import _Branch  # an extra layer beyond 200 positions: 225 and 161 straddle it

# the truncation and the threshold as tests/test_proven_domains.py writes them; two more patterns of bounds
PATTERNS = {
    "truncate": GUARDED["truncate"],
    "threshold": GUARDED["threshold"],
    "longer": """
        class Net(nn.Module):  # an extra layer for sequences longer than 300 positions
            def __init__(self):
                super().__init__()
                self.a, self.b = nn.Linear(16, 32), nn.Linear(32, 32)

            def forward(self, x):
                x = self.a(x)
                if x.shape[1] > 300:
                    x = self.b(x)
                return x @ x.transpose(1, 2)
        """,
    "capped": """
        class Net(nn.Module):  # as "longer", for at most 2000 positions
            def __init__(self):
                super().__init__()
                self.a, self.b = nn.Linear(16, 32), nn.Linear(32, 32)

            def forward(self, x):
                assert x.shape[1] <= 2000, "at most 2000 positions"
                x = self.a(x)
                if x.shape[1] > 300:
                    x = self.b(x)
                return x @ x.transpose(1, 2)
        """,
}

L, W = sympy.Symbol("L", integer=True, positive=True), sympy.Symbol("W", integer=True, positive=True)


def build(name):
    scope = {"nn": nn, "torch": torch, "F": F}
    exec(textwrap.dedent(PATTERNS[name]), scope)  # test-owned source, never user input
    return scope["Net"]().eval()


def torch_flops(name, shape):
    model = build(name).to("meta")
    with torch.no_grad(), FlopCounterMode(display=False) as c:
        model(torch.zeros(*shape, device="meta"))
    return c.get_total_flops()


@pytest.fixture(scope="module")
def derived():
    return {"truncate": trace(build("truncate"), (1, "L", 16)),
            "threshold": trace(build("threshold"), (1, 3, "H", "W")),
            "longer": trace(build("longer"), (1, "L", 16))}


# sizes on both sides of each guard, of every residue: odd, even, multiples of 32, the edges themselves
SEQUENCE = (2, 3, 7, 8, 32, 33, 100, 225, 299, 300, 301, 320, 511, 512, 513, 544, 600, 1023, 1024, 1025, 4097)


@pytest.mark.parametrize("name", ["truncate", "longer"])
def test_a_guard_on_the_length_gives_a_piecewise_exact_on_both_sides(derived, name):
    mc = derived[name]
    flops = mc.total("torch")["flops"]
    assert isinstance(flops, sympy.Piecewise) and len(mc.pieces) == 2
    edge = {"truncate": 512, "longer": 301}[name]
    assert [sympy.sstr(c) for _, c in flops.args] == [f"L <= {edge - 1}", f"L >= {edge}"]
    assert any(f"L <= {edge - 1} | L >= {edge}" in n for n in mc.notes), mc.notes
    for n in SEQUENCE:
        assert mc.evaluate({"L": n}, "torch")["flops"] == torch_flops(name, (1, n, 16)), n


def test_truncation_is_the_formula_at_min_of_the_length_and_512(derived):
    """x[:, :512]: beyond 512 the model computes what it computes at 512, so the piece is the first piece's formula
    with min(L, 512) for L; both sides agree with torch everywhere."""
    mc = derived["truncate"]
    flops = mc.total("torch")["flops"]
    short, long = flops.args[0].expr, flops.args[1].expr
    assert long.free_symbols == set()  # a constant: the work at 512 positions
    at_min = short.xreplace({L: sympy.Min(L, 512)})
    for n in SEQUENCE:
        assert flops.xreplace({L: n}) == at_min.xreplace({L: n}) == torch_flops("truncate", (1, n, 16)), n


def test_the_branch_on_one_of_two_sizes_splits_that_size_only(derived):
    """``if x.shape[-1] > 512``: pieces in W (W <= 512 | W >= 513); H runs through both pieces as a symbol."""
    mc = derived["threshold"]
    flops = mc.total("torch")["flops"]
    assert isinstance(flops, sympy.Piecewise)
    assert [sympy.sstr(c) for _, c in flops.args] == ["W <= 512", "W >= 513"]
    assert all(c.free_symbols == {W} for _, c in flops.args)
    refused = 0
    for h in (3, 5, 7, 32, 64, 97, 250):
        for w in (3, 33, 64, 225, 511, 512, 513, 514, 544, 640, 1023, 1024, 1025):
            try:
                expected = torch_flops("threshold", (1, 3, h, w))
            except RuntimeError:  # halved below the kernel: torch refuses, and so does symcost
                with pytest.raises(ValueError, match=r"a tensor size floor\(H/2\) - 2 \(where W >= 513\) becomes"):
                    mc.evaluate({"H": h, "W": w}, "torch")
                refused += 1
                continue
            assert mc.evaluate({"H": h, "W": w}, "torch")["flops"] == expected, (h, w)
    assert refused == 2 * 7  # H = 3 and 5 at the 7 widths >= 513 (halved to 1 and 2 rows: below the 3x3 kernel)


@pytest.mark.parametrize("name, symbols, points", [
    ("truncate", ["L"], [(n,) for n in SEQUENCE]),
    ("longer", ["L"], [(n,) for n in SEQUENCE]),
    ("threshold", ["H", "W"], [(h, w) for h in (6, 7, 32, 97) for w in (33, 64, 511, 512, 513, 544, 1025)]),
])
def test_the_lambdified_numpy_path_agrees(derived, name, symbols, points):
    mc = derived[name]
    run = mc.lambdified("torch", metrics=("flops",))
    out = run(*[np.array([p[k] for p in points]) for k in range(len(symbols))])
    assert out["valid"].all()
    shape = {"truncate": lambda p: (1, p[0], 16), "longer": lambda p: (1, p[0], 16),
             "threshold": lambda p: (1, 3, *p)}[name]
    assert [int(v) for v in out["flops"]] == [torch_flops(name, shape(p)) for p in points]


def test_a_size_in_no_piece_is_refused_naming_the_guard():
    """The model asserts L <= 2000: pieces for L <= 300 and 301 <= L <= 2000; beyond, torch raises, the model traced
    there does not run (no piece), and the formula refuses naming the bound, as the NumPy path marks it invalid."""
    mc = trace(build("capped"), (1, "L", 16))
    flops = mc.total("torch")["flops"]
    assert [sympy.sstr(c) for _, c in flops.args] == ["L <= 300", "L >= 301"]
    for n in (7, 32, 299, 300, 301, 512, 1999, 2000):
        assert mc.evaluate({"L": n}, "torch")["flops"] == torch_flops("capped", (1, n, 16)), n
    for n in (2001, 4096):
        with pytest.raises(AssertionError):
            torch_flops("capped", (1, n, 16))
        with pytest.raises(OutsideProvenDomain, match="L <= 2000"):
            mc.evaluate({"L": n}, "torch")
    assert mc.lambdified("torch")(np.array([2000, 2001]))["valid"].tolist() == [True, False]


def test_each_piece_has_its_own_rows_and_they_sum_to_its_totals(derived):
    """The per-layer rows carry each piece's costs: at any size they sum to the totals there (the extra layer of
    the long piece costs 0 in the short one)."""
    mc = derived["longer"]
    for n in (7, 300, 301, 1024):
        total = mc.evaluate({"L": n}, "flops")
        summed = sum(int(r.cost.macs.xreplace({L: n})) for r in mc.rows)
        assert summed == total["macs"], n
    extra = [r for r in mc.rows if r.name == "b"]
    assert len(extra) == 1 and extra[0].cost.macs.xreplace({L: 300}) == 0 and extra[0].cost.macs.xreplace({L: 301})


def test_the_report_page_evaluates_the_pieces(tmp_path):
    """The interactive page compiles the Piecewise to JavaScript: both sides of the guard give torch's numbers."""
    from test_report import NODE, cli, run_page

    if NODE is None:
        pytest.skip("node is not installed: the page's JavaScript is not run")
    src = tmp_path / "trunc.py"
    src.write_text("import torch\nimport torch.nn.functional as F\nfrom torch import nn\n"
                   + textwrap.dedent(PATTERNS["truncate"]) + "\n\ndef build():\n    return Net().eval()\n")
    out = tmp_path / "t.html"
    r = cli("report", f"{src}:build", "--input", "1xLx16", "--out", out, "--at", "L=100", "--convention", "torch",
            cache=tmp_path / "cache")
    assert r.returncode == 0, r.stderr
    snaps = run_page(out.read_text(), [{"L": 600}, {"L": 511}, {"L": 1}])
    for snap, n in zip(snaps, (100, 600, 511, 1)):  # L = 1: the matmul's size-1 question is no guard
        assert snap["status"] == f"exact values at L={n}"
        assert int(snap["total"]["flops"]) == torch_flops("truncate", (1, n, 16)), n


def test_pieces_off_keeps_one_formula_and_its_domain():
    mc = trace(build("truncate"), (1, "L", 16), pieces=False)
    assert not mc.pieces and not mc.total("torch")["flops"].has(sympy.Piecewise)
    with pytest.raises(OutsideProvenDomain, match="L <= 511"):
        mc.evaluate({"L": 600}, "torch")


def test_trace_sizes_on_both_sides_of_a_guard_give_pieces_not_a_refusal():
    mc = trace(_Branch().eval(), (1, "L", 16))
    flops = mc.total("torch")["flops"]
    assert [sympy.sstr(c) for _, c in flops.args] == ["L <= 200", "L >= 201"]
    # the short side never reads b's parameters, and says so for its piece only
    unread = "where L <= 200: 272 parameter values (b.bias, b.weight) are never read"
    assert any(n.startswith(unread) for n in mc.notes), mc.notes
    for n in (1, 2, 7, 32, 64, 161, 199, 200, 201, 224, 225, 256, 1025):
        with torch.no_grad(), FlopCounterMode(display=False) as c:
            _Branch().to("meta")(torch.zeros(1, n, 16, device="meta"))
        assert mc.evaluate({"L": n}, "torch")["flops"] == c.get_total_flops(), n


def test_a_formula_in_pieces_is_cached_whole(derived):
    """The cache stores the pieces (each a derivation of its own) and the summary's trees: both answer as the
    derivation does, on both sides of the guard, with torch's numbers."""
    from symcost import cache_format

    mc = derived["threshold"]
    back = cache_format.loads(cache_format.dumps(mc))
    summary = cache_format.loads(cache_format.dumps(mc.summary()))
    points = [{"H": 64, "W": w} for w in (100, 512, 513, 600)]
    answers = summary.evaluate(points, "torch")
    assert len(back.pieces) == 2
    for p, answer in zip(points, answers):
        expected = torch_flops("threshold", (1, 3, p["H"], p["W"]))
        assert back.evaluate(p, "torch")["flops"] == answer["flops"] == expected, p
