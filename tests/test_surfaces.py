"""Where people look at costs: notebook hooks (LaTeX, HTML), symbol names in ``subs``/``evaluate`` with clear errors,
readable formulas (nested floors named once, like terms collected) in text output."""
import re
from pathlib import Path

import pytest
import sympy

import symcost
from symcost.errors import UsageError
from symcost.export.formulas import expand_back, readable

H, W = (sympy.Symbol(n, integer=True, positive=True) for n in "HW")
FIXTURE_NET = "tests/fixtures/my_models.py:build_net"


def _two_pools():
    """Two 2x2 stride-2 max pools in a row, on 1x3xHxW: the second's size is a floor of a floor."""
    pool = symcost.layer("maxpool2d", symbolic=False, kernel_size=2, stride=2)
    first = pool.cost((1, 3, H, W))
    return first + pool.cost(first.output_shape)


# ------------------------------------------------------------------------------------------------- notebooks

def test_latex_of_a_cost_is_one_convention_with_floors_named():
    tex = sympy.latex(_two_pools())
    lines = tex.strip().splitlines()
    assert lines[0] == r"\begin{align}" and lines[-1] == r"\end{align}"
    assert sum("FLOPs" in line for line in lines) == 1 and r"\text{FLOPs}_{\text{flops}}" in tex
    # each line holds at most one floor: nested floors are named H_1, H_2 (W_1, W_2) and defined once
    assert all(line.count(r"\lfloor") <= 1 for line in lines), tex
    for name in ("H_{1}", "H_{2}", "W_{1}", "W_{2}"):
        assert re.search(rf"^{re.escape(name)} &= ", tex, re.M), name
    torch_tex = sympy.latex(_two_pools().formula("torch"))
    assert r"\text{FLOPs}_{\text{torch}}" in torch_tex and r"\text{FLOPs}_{\text{flops}}" not in torch_tex


def test_latex_fits_a_page_where_it_used_to_list_ten_conventions():
    tex = sympy.latex(symcost.layer("conv2d", bias=True).cost())
    # 8 rows: output, H_out, W_out, params, MACs, one FLOPs line, reads, writes
    assert tex.count(r"\\") == 7 and max(len(line) for line in tex.splitlines()) < 120


def test_notebook_hooks():
    cost = symcost.layer("conv2d", bias=True).cost()
    latex = cost._repr_latex_()
    assert latex.startswith(r"$\displaystyle \begin{aligned}") and latex.endswith(r"\end{aligned}$")
    html = cost._repr_html_()
    assert html.startswith('<table class="symcost">') and "<math" in html and "flops" in html
    assert "<script" not in html and "http" not in html.replace("http://www.w3.org/1998/Math/MathML", "")


def test_subs_and_evaluate_accept_names():
    cost = symcost.layer("conv2d", bias=True).cost()
    C_in, C_out, K_h, K_w, g = (sympy.Symbol(n, integer=True, positive=True) for n in ("C_in", "C_out", "K_h",
                                                                                           "K_w", "g"))
    assert cost.subs({"C_in": 3}).params == 3 * C_out * K_h * K_w / g + C_out
    values = {"N": 1, "C_in": 3, "C_out": 8, "H": 7, "W": 6, "K_h": 3, "K_w": 3, "s_h": 2, "s_w": 2, "p_h": 1,
              "p_w": 0, "d_h": 1, "d_w": 1, "g": 1}
    got = cost.evaluate(values, "macs")
    # output (7 + 2 - 3)//2 + 1 = 4 rows, (6 - 3)//2 + 1 = 2 columns: 8 x 4 x 2 = 64 outputs x 27 MACs = 1728
    assert got["macs"] == 1728 and got["params"] == 3 * 8 * 9 + 8  # 216 weights + 8 biases
    assert got["writes"] == 64 and got["reads"] == 3 * 7 * 6 + 224  # input 126 + weights and biases 224


@pytest.mark.parametrize("values, message", [
    ({"C_inn": 3}, "C_inn is not a symbol here; its symbols: C_in, C_out"),
    ({"C_in": "3"}, "C_in needs an integer, got '3'"),
    ({"C_in": 2.5}, "C_in needs an integer"),
])
def test_subs_errors(values, message):
    with pytest.raises(UsageError, match=re.escape(message)):
        symcost.layer("conv2d", bias=True).cost().subs(values)


def test_cost_evaluate_names_missing_symbols():
    with pytest.raises(UsageError, match=r"no value for W"):
        _two_pools().evaluate({"H": 17})
    # H=17 -> 8 -> 4, W=9 -> 4 -> 2: writes 3*8*4 + 3*4*2 = 120
    assert _two_pools().evaluate({"H": 17, "W": 9})["writes"] == 120


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    import os

    os.environ.setdefault("SYMCOST_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    return symcost.model(FIXTURE_NET, "1x3xHxW")


def test_model_evaluate_errors_name_the_symbols(net):
    with pytest.raises(UsageError, match=r"no value for W: give one for each of H, W"):
        net.evaluate({"H": 224})
    with pytest.raises(UsageError, match=r"no value for W"):     # a typo is a missing symbol
        net.evaluate({"H": 224, "w": 224})
    with pytest.raises(UsageError, match=r"the model cannot take H=1, W=8"):   # conv 3x3/2 pad 1 then pool 3/2
        net.evaluate({"H": 1, "W": 8})
    assert net.evaluate({sympy.Symbol("H", integer=True, positive=True): 33, "W": 40}) == net.evaluate(
        {"H": 33, "W": 40})


def test_model_html_table(net):
    from tests.fixtures.my_models import Net

    html = net._repr_html_()
    rows = re.findall(r"<tr><td><code>([^<]*)</code>", html)
    assert rows[0] == "stem" and "head" in rows, rows
    # total params from torch itself: 3*8*9 conv weights + 2*8 BN affine + 8*5 + 5 linear = 277
    assert sum(p.numel() for p in Net().parameters()) == 277
    assert re.search(r"<tr><th>total</th><td></td><td></td><th>277</th>", html)
    assert "where" in html and "<math" in html and "<script" not in html


# ------------------------------------------------------------------------------------------ readable formulas

def test_readable_collects_like_terms_and_names_floors_exactly():
    L = sympy.Symbol("L", integer=True, positive=True)
    raw = 37152 * L**2 + 144 * L * (L - 1) + 144 * L * (2 * L - 1)    # BERT-style uncollected attention terms
    (out,), where = readable([raw])
    assert out == 37584 * L**2 - 288 * L and where == {}   # (37152 + 144 + 288) L^2 - (144 + 144) L
    s1 = sympy.floor((H - 1) / 2) + 1
    s2 = sympy.floor((s1 - 1) / 2) + 1
    exprs = [3 * s1 * s2 + 2 * s2 * s1 + s2**2, s1]
    out, where = readable(exprs, sizes=[s1, s2])
    H1, H2 = where
    assert out[0] == 5 * H1 * H2 + H2**2 and out[1] == H1
    for e, o in zip(exprs, out):
        for h in (1, 2, 7, 32, 33, 224):
            assert expand_back(o, where).subs(H, h) == e.subs(H, h)


def _cli(*args, cache):
    import os
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "symcost.cli", *args], capture_output=True, text=True,
                       env={**os.environ, "SYMCOST_CACHE_DIR": str(cache)})
    assert r.returncode == 0, r.stderr
    return r.stdout


def _value(text: str, where: dict, values: dict) -> int:
    """A printed formula at ``values``: the named sizes computed in order (test side: sympify of our own output)."""
    env = {k: sympy.Integer(v) for k, v in values.items()}
    for name, definition in where.items():
        env[name] = sympy.sympify(definition, locals=dict(env))
    return int(sympy.sympify(text, locals=dict(env)))


def test_model_text_names_floors_and_stays_exact(tmp_path):
    out = _cli("model", "torchvision:resnet18", "--input", "1x3xHxW", cache=tmp_path)
    assert "floor(floor" not in out
    where = dict(re.findall(r"^  (\w+) = (.+)$", out, re.M))
    assert list(where)[:4] == ["H_1", "W_1", "H_2", "W_2"] and where["H_2"] == "floor((H_1 - 1)/2) + 1"
    macs = re.search(r"^total MACs    (.+)$", out, re.M).group(1)
    assert max(len(line) for line in out.splitlines() if not line.startswith("total FLOPs")) < 120
    raw = __import__("json").loads(_cli("model", "torchvision:resnet18", "--input", "1x3xHxW", "--json",
                                        cache=tmp_path))["formula"]
    assert "floor(floor(" in raw["macs"]                    # JSON keeps the raw strings
    # torchvision's resnet18 card: 1.81 GFLOPS (MACs) at 224: 1,814,073,344 exactly under FlopCounterMode / 2
    assert _value(macs, where, {"H": 224, "W": 224}) == 1_814_073_344
    for h, w in ((1, 1), (33, 32), (225, 97)):                # every residue: named form == raw form
        assert _value(macs, where, {"H": h, "W": w}) == _value(raw["macs"], {}, {"H": h, "W": w}), (h, w)


def test_model_layers_text_uses_the_names(tmp_path):
    out = _cli("model", "torchvision:resnet18", "--input", "1x3xRxR", "--layers", cache=tmp_path)
    conv1 = next(line for line in out.splitlines() if line.startswith("conv1 "))
    # conv1: 64 output channels of 7x7x3 = 147 MACs each, on an R_1 x R_1 map
    assert conv1.split()[2:5] == ["1x64xR_1xR_1", "9,408", "9408*R_1**2"]
    assert "floor" not in "".join(line for line in out.splitlines() if not line.startswith("  R_"))


def test_hf_bert_flops_come_collected(tmp_path):
    out = _cli("model", "hf:bert", "--input", "1xL", cache=tmp_path)
    # BERT-base: 12 layers x (4 E^2 + 2 E x 3072) L = 84934656 L projection MACs, 12 x 2 x E L^2 = 18432 L^2 in
    # attention, 768 x 768 pooler = 589824
    assert re.search(r"^total MACs    18432\*L\*\*2 \+ 84934656\*L \+ 589824$", out, re.M), out
    flops = re.search(r"^total FLOPs   (\S+) \+ (\S+) \+ (\S+)   \[", out, re.M)
    assert flops and flops.group(1).endswith("*L**2") and "(" not in flops.group(0).split("[")[0], out


def test_cached_plot_imports_neither_torch_nor_torchvision(tmp_path):
    out = tmp_path / "cost.png"
    args = ["plot", "torchvision:resnet18", "--input", "1x3xRxR", "--range", "R=32:256:32", "--out", str(out)]
    _cli(*args, cache=tmp_path)                           # derives, and caches the weights' input size too
    import os
    import subprocess
    import sys

    code = (f"import sys; from symcost.cli import main; assert main({args!r}) == 0; "
            "loaded = sorted(m for m in ('torch', 'torchvision') if m in sys.modules); assert not loaded, loaded")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env={**os.environ, "SYMCOST_CACHE_DIR": str(tmp_path)})
    assert r.returncode == 0, r.stderr[-2000:]
    assert out.read_bytes()[:4] == b"\x89PNG"


NOTEBOOK = Path(__file__).resolve().parent.parent / "examples" / "notebook.ipynb"


def test_example_notebook_runs(tmp_path, monkeypatch):
    """With nbclient installed the notebook runs in a kernel; without it its code cells run in order here (the
    same code, without the display machinery), so the example cannot rot either way."""
    import json

    monkeypatch.setenv("SYMCOST_CACHE_DIR", str(tmp_path))
    try:
        import nbclient
        import nbformat
    except ImportError:
        nb = json.loads(NOTEBOOK.read_text())
        namespace: dict = {}
        shown = []
        for cell in nb["cells"]:
            if cell["cell_type"] == "code":
                code = "".join(cell["source"])
                exec(compile(code, f"{NOTEBOOK.name}:{cell['id']}", "exec"), namespace)   # our own file only
                last = code.strip().splitlines()[-1].split("#")[0].strip()
                if last.isidentifier():
                    shown.append(namespace[last])
        # what the notebook displays renders: a Cost, a model
        assert any(hasattr(x, "_repr_latex_") and x._repr_latex_().startswith("$") for x in shown)
        assert any(type(x).__name__ == "ModelCost" and "<table" in x._repr_html_() for x in shown)
        return
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(nb, timeout=300, resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert any("text/html" in o.get("data", {}) for o in outputs)


def test_symcost_model_stays_the_function_after_the_submodule_is_imported():
    import importlib

    importlib.import_module("symcost.model")             # what ModelCost's import does
    from symcost.model import ModelCost                   # the submodule stays importable

    assert callable(symcost.model) and ModelCost.__name__ == "ModelCost"
