"""Proven domains: the size decisions a model's Python makes (a slice bound, a chunk size, a threshold, an equality,
a divisibility assert, topk's k) become the formula's domain, read from a run with symbolic sizes.  Inside it the
formula is exact; outside it ``evaluate`` refuses naming the guard and ``model --at`` traces that size on its own —
exact too.  Every expected number is FlopCounterMode's (or torch's own refusal) on the real module."""
import textwrap

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from symcost.errors import OutsideProvenDomain, TraceError
from symcost.model_report import model_report
from symcost.parse import InputSpec
from symcost.tracing import trace

# each pattern as source, so that one text builds the module here and the file target model_report loads
PATTERNS = {
    "truncate": """
        class Net(nn.Module):  # attention over at most 512 positions
            def __init__(self):
                super().__init__()
                self.q = nn.Linear(16, 16)

            def forward(self, x):
                x = x[:, :512]
                q = self.q(x)
                return torch.softmax(q @ x.transpose(1, 2), -1) @ x
        """,
    "chunks": """
        class Net(nn.Module):  # chunked attention: blocks of 1024 positions
            def __init__(self):
                super().__init__()
                self.q = nn.Linear(16, 16)

            def forward(self, x):
                out = []
                for c in torch.split(x, 1024, dim=1):
                    out.append(torch.softmax(self.q(c) @ c.transpose(1, 2), -1) @ c)
                return torch.cat(out, 1)
        """,
    "threshold": """
        class Net(nn.Module):  # halves wide inputs first
            def __init__(self):
                super().__init__()
                self.conv = nn.Conv2d(3, 8, 3)

            def forward(self, x):
                if x.shape[-1] > 512:
                    x = F.interpolate(x, scale_factor=0.5)
                return self.conv(x)
        """,
    "own_size": """
        class Net(nn.Module):  # resizes to 240 unless the input is 240 already (CrossViT's habit)
            def __init__(self):
                super().__init__()
                self.conv = nn.Conv2d(3, 8, 3)

            def forward(self, x):
                if x.shape[-1] != 240:
                    x = F.interpolate(x, size=(240, 240), mode="bilinear")
                return self.conv(x) + self.conv(x[..., :x.shape[-1] // 2 * 2])
        """,
    "topk": """
        class Net(nn.Module):  # the 16 strongest of N points
            def __init__(self):
                super().__init__()
                self.score = nn.Linear(8, 1)

            def forward(self, x):
                s = self.score(x).squeeze(-1)
                return torch.gather(x, 1, s.topk(16, dim=1).indices.unsqueeze(-1).expand(-1, -1, 8)).sum(1)
        """,
    "divisible": """
        class Net(nn.Module):  # space-to-depth stem: needs sizes divisible by 8
            def __init__(self):
                super().__init__()
                self.conv = nn.Conv2d(3 * 64, 16, 1)

            def forward(self, x):
                assert x.shape[-1] % 8 == 0 and x.shape[-2] % 8 == 0
                return self.conv(F.pixel_unshuffle(x, 8))
        """,
    "attend": """
        class Net(nn.Module):  # attention over every position, on one line
            def __init__(self):
                super().__init__()
                self.q = nn.Linear(16, 16)

            def forward(self, x):
                return torch.softmax(self.q(x) @ x.transpose(1, 2), -1) @ x
        """,
}


def build(name):
    scope = {"nn": nn, "torch": torch, "F": F}
    exec(textwrap.dedent(PATTERNS[name]), scope)  # test-owned source, never user input
    return scope["Net"]().eval()


def torch_flops(model, shape):
    with torch.no_grad(), FlopCounterMode(display=False) as c:
        model.to("meta")(torch.zeros(*shape, device="meta"))
    return c.get_total_flops()


def file_target(tmp_path, name):
    src = tmp_path / f"{name}.py"
    src.write_text("import torch\nimport torch.nn.functional as F\nfrom torch import nn\n"
                   + textwrap.dedent(PATTERNS[name]) + "\n\ndef build():\n    return Net().eval()\n")
    return f"{src}:build"


@pytest.mark.parametrize("name, shape, guard, inside, outside", [
    # x[:, :512]: the slice is the identity below 512 positions
    ("truncate", (1, "L", 16), "L <= 511", [(7,), (8,), (32,), (225,), (511,)], [(512,), (600,), (1025,)]),
    # split(x, 1024): one chunk up to 1024 positions, ceil(L/1024) above
    ("chunks", (1, "L", 16), "1024", [(7,), (64,), (1023,), (1024,)], [(1025,), (2500,)]),
    # the branch on W > 512
    ("threshold", (1, 3, "H", "W"), "W <= 512", [(250, 97), (64, 512), (33, 225)], [(250, 640), (64, 513)]),
])
def test_guard_bounds_the_formula_and_per_size_traces_are_exact(tmp_path, name, shape, guard, inside, outside):
    model = build(name)
    mc = trace(model, shape, pieces=False)  # the one formula of the path traced (pieces: tests/test_pieces.py)
    symbols = [d for d in shape if isinstance(d, str)]
    assert any(guard in n for n in mc.notes), mc.notes
    for point in inside:
        values = dict(zip(symbols, point))
        concrete = [values.get(d, d) for d in shape]
        assert mc.evaluate(values, "torch")["flops"] == torch_flops(build(name), concrete), point
    for point in outside:
        values = dict(zip(symbols, point))
        with pytest.raises(OutsideProvenDomain, match="outside the formula's domain"):
            mc.evaluate(values, "torch")
    # symcost model --at: inside from the formula, outside traced on its own, all exact
    spec = "x".join(str(d) for d in shape)
    points = [dict(zip(symbols, p)) for p in inside[:2] + outside]
    report = model_report(file_target(tmp_path, name), InputSpec.of(spec), "torch", points=points, progress=False)
    for e in report.evaluations:
        concrete = [e["values"].get(d, d) for d in shape]
        assert e["total"]["flops"] == torch_flops(build(name), concrete), e
        # every point carries its memory traffic, from the formula or traced on its own: as a fixed-size derivation
        fixed = trace(build(name), tuple(concrete)).total("torch")
        assert (e["total"]["reads"], e["total"]["writes"]) == (fixed["reads"], fixed["writes"]), e
    # beyond a bound on one size (truncate, threshold) the formula's other piece answers (tests/test_pieces.py);
    # the chunk count's guard is not such a bound: those sizes are traced on their own
    traced = len(outside) if name == "chunks" else 0
    assert sum("traced at that size on its own" in n for n in report.notes) == traced


def test_a_size_the_model_treats_specially_is_not_covered_by_the_formula():
    """``if W != 240``: the formula of the resizing path must not answer at 240, where the model skips the resize
    (CrossViT, MobileNetV5).  The resize fixes the sizes inside torch, so the domain is sampled, and says so."""
    model = build("own_size")
    mc = trace(model, (1, 3, "H", "W"))
    assert any("W != 240" in n for n in mc.notes) and any("sampled, not proven" in n for n in mc.notes)
    with pytest.raises(OutsideProvenDomain, match="W != 240"):
        mc.evaluate({"H": 240, "W": 240}, "torch")
    # at 240 the model itself, traced there, differs from the formula's path: 2 convs at 238x238 and 238x238
    at_240 = trace(build("own_size"), (1, 3, 240, 240)).total("torch")["flops"]
    assert at_240 == torch_flops(build("own_size"), (1, 3, 240, 240))
    for w in (97, 239, 241, 256):
        assert mc.evaluate({"H": 240, "W": w}, "torch")["flops"] == torch_flops(build("own_size"), (1, 3, 240, w))


def test_an_ops_size_one_question_on_a_model_line_is_no_guard(tmp_path):
    """The matmul inside ``torch.softmax(q @ k)`` asks whether L is 1 (to fold its batch dims): torch's layout
    question on a line that compares nothing (``softmax(`` is not Python's ``max(``), so L = 1 stays in the domain."""
    import importlib.util

    path = file_target(tmp_path, "attend").rsplit(":", 1)[0]
    spec = importlib.util.spec_from_file_location("attend_model", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    mc = trace(module.build(), (1, "L", 16))
    assert mc.proven and not mc.guards, mc.guards
    for n in (1, 2, 7, 32):
        assert mc.evaluate({"L": n}, "torch")["flops"] == torch_flops(build("attend"), (1, n, 16))


def test_topk_needs_k_positions():
    """topk(16) over N points: torch raises for N < 16, and the domain says N >= 16."""
    model = build("topk")
    mc = trace(model, (1, "N", 8))
    for n in (16, 17, 64, 225):
        assert mc.evaluate({"N": n}, "torch")["flops"] == torch_flops(build("topk"), (1, n, 8))
    with pytest.raises(RuntimeError):
        torch_flops(build("topk"), (1, 15, 8))
    with pytest.raises(OutsideProvenDomain, match="N >= 16"):
        mc.evaluate({"N": 15}, "torch")


def test_a_divisibility_assert_is_the_domain():
    """A stem that needs multiples of 8: traced at sizes it accepts, the formula holds at multiples of 8 only,
    where torch runs; elsewhere torch raises and symcost refuses."""
    model = build("divisible")
    with pytest.raises(TraceError):
        trace(model, (1, 3, "H", "W"))  # symcost's own odd trace sizes: the model refuses them
    mc = trace(model, (1, 3, "H", "W"), sizes=({"H": 232, "W": 168}, {"H": 168, "W": 104}))
    for h, w in ((16, 24), (64, 96), (224, 224), (520, 48)):
        assert mc.evaluate({"H": h, "W": w}, "torch")["flops"] == torch_flops(build("divisible"), (1, 3, h, w))
    for h, w in ((225, 224), (224, 100)):
        with pytest.raises(AssertionError):
            torch_flops(build("divisible"), (1, 3, h, w))
        with pytest.raises(OutsideProvenDomain, match="Mod"):
            mc.evaluate({"H": h, "W": w}, "torch")


class _BiasCache(nn.Module):
    """Fills a cache on its first call in eval mode (LeViT's and EfficientFormer's attention biases)."""

    def __init__(self):
        super().__init__()
        self.table = nn.Parameter(torch.randn(16, 16))
        self.proj = nn.Linear(16, 16)
        self.cache = {}

    def forward(self, x):
        if not self.training:
            if "bias" not in self.cache:
                self.cache["bias"] = self.table @ self.table.T  # the work one call does and later calls skip
            bias = self.cache["bias"]
        else:
            bias = self.table @ self.table.T
        return self.proj(x) @ bias


def test_every_recording_starts_from_the_model_as_built():
    """The first call fills the cache; every recording (trace sizes, checks, the symbolic run) starts from the
    model as the user built it, so the formula, the fixed-size derivation and a fresh module's first call agree
    — reads and writes too."""
    def fresh_flops(length):
        return torch_flops(_BiasCache().eval(), (1, length, 16))

    model = _BiasCache().to("meta").eval()
    mc = trace(model, (1, "L", 16))
    assert model.cache == {}  # the user's module is left as it was
    for length in (1, 7, 8, 32, 33, 224):
        at = mc.evaluate({"L": length}, "torch")
        fixed = trace(_BiasCache().to("meta").eval(), (1, length, 16)).total("torch")
        assert at["flops"] == fresh_flops(length) == fixed["flops"], length
        for metric in ("reads", "writes", "macs", "params"):
            assert mc.evaluate({"L": length}, "flops")[metric] == fixed[metric], (length, metric)


def test_the_report_page_refuses_outside_the_guards(tmp_path):
    """The interactive page evaluates the guards too: W = 240 is refused naming W != 240 (the model skips its
    resize there), W = 100 and 239 get numbers."""
    from test_report import NODE, cli, run_page

    if NODE is None:
        pytest.skip("node is not installed: the page's JavaScript is not run")
    out = tmp_path / "t.html"
    r = cli("report", file_target(tmp_path, "own_size"), "--input", "1x3xHxW", "--out", out, "--at", "H=100,W=100",
            cache=tmp_path / "cache")
    assert r.returncode == 0, r.stderr
    snaps = run_page(out.read_text(), [{"W": 240}, {"W": 239}])
    assert snaps[1]["status"].startswith("refused: H=100, W=240 is outside the formula's domain: it holds where "
                                         "W != 240")
    assert snaps[0]["status"] == "exact values at H=100, W=100" and snaps[2]["status"] == "exact values at H=100, W=239"


@pytest.mark.slow
def test_timm_models_of_both_patterns_agree_with_a_fixed_size_derivation():
    """CrossViT resizes its input to 240 unless it is 240 already; LeViT fills an attention-bias cache on its first
    eval call.  At their own size, the symbolic derivation's answer equals a fresh fixed-size derivation in every
    metric (the issue's numbers: CrossViT 3,174,534,733 FLOPs, LeViT 14,319,552 reads and 6,099,098 writes)."""
    pytest.importorskip("timm")
    import symcost

    cross = model_report("timm:crossvit_tiny_240", InputSpec.of("1x3xHxW"), "flops", points=[{"H": 240, "W": 240}],
                         use_cache=False, progress=False).evaluations[0]
    fixed = symcost.model("timm:crossvit_tiny_240", "1x3x240x240", use_cache=False).total("flops")
    metrics = ("params", "macs", "flops", "reads", "writes")
    assert {m: cross["total"][m] for m in metrics} == {m: fixed[m] for m in metrics}
    levit = symcost.model("timm:levit_128s", "1x3xHxW", use_cache=False)
    assert levit.fixed_at == {"H": 224, "W": 224}
    assert dict(levit.total("flops")) == dict(symcost.model("timm:levit_128s", "1x3x224x224",
                                                            use_cache=False).total("flops"))


class _Branch(nn.Module):
    """An extra layer for inputs longer than 200 positions: the trace sizes 225 and 161 fall on both sides."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(16, 16), nn.Linear(16, 16)

    def forward(self, x):
        x = self.a(x)
        if x.shape[1] > 200:
            x = self.b(x)
        return x


def test_a_refusal_names_the_branch_it_saw():
    """Not "a loop": the refusal names the guard whose answer differs between the two trace sizes."""
    from symcost.errors import NoSingleFormula

    with pytest.raises(NoSingleFormula, match="L >= 201"):  # (with pieces: one per side, tests/test_pieces.py)
        trace(_Branch().to("meta").eval(), (1, "L", 16), pieces=False)
