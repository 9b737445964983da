"""`symcost table`, `symcost plot` and `python -m symcost.figures`: output structure, numbers equal to
`symcost model --json`, LaTeX that compiles (when pdflatex is installed), files of the right kind and size,
and one-line errors with exit code 2."""
import csv
import io
import json
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import sympy

from symcost.cli import main
from symcost.export.formulas import abbreviate, expand_back
from symcost.export.formulas import latex as latex_expr
from symcost.export.latex import escape
from symcost.render import choose_unit, scaled

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).parent / "fixtures"
RESNET50_DEPTH1 = ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool", "fc"]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("symcost-cache")


@pytest.fixture
def run(cache_dir, monkeypatch, capsys):
    """The CLI in-process (one derivation per model for the whole module, through a shared cache)."""
    monkeypatch.setenv("SYMCOST_CACHE_DIR", str(cache_dir))

    def call(*args):
        capsys.readouterr()
        try:
            code = main([str(a) for a in args])
        except SystemExit as e:  # argparse
            code = e.code
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return call


def ok(result):
    code, out, err = result
    assert code == 0, err
    return out


# ------------------------------------------------------------------------------------------------ pure helpers

def test_units_and_scaling():
    assert choose_unit([11_689_512, 25_557_032, 3_504_872]) == (10**6, "M")
    assert choose_unit([1_814_083_944, 4_089_184_256]) == (10**9, "G")
    assert choose_unit([9408, 128, 0, 0, 36864]) == (10**3, "K")
    assert choose_unit([0, 0]) == (1, "") and choose_unit([12, 300]) == (1, "")
    assert scaled(4_089_184_256, 10**9) == "4.09"
    assert scaled(2_359_296, 10**3) == "2,359.30"
    assert scaled(0, 10**6) == "0" and scaled(128, 10**6) == "<0.01"
    assert scaled(25_557_032, 1) == "25,557,032"


def test_a_total_reads_in_its_own_prefix_once_it_needs_a_thousand_column_units():
    from symcost.render import scaled_total

    # torchvision's ResNet18_Weights meta: num_params 11,689,512 -> 11.69 million; under a (K) column
    assert scaled_total(11_689_512, 10**3) == "11.69M"
    assert scaled_total(999_994, 10**3) == "999.99"          # below a thousand K: the column's own unit
    assert scaled_total(1_000_000, 10**3) == "1.00M"          # exactly a thousand K
    assert scaled_total(4_089_184_256, 10**6) == "4.09G"      # resnet50's MACs under a (M) column
    assert scaled_total(123_456, 1) == "123,456"              # an unscaled column stays exact
    assert scaled_total(0, 10**3) == "0"


def test_caption_escaping_keeps_latex():
    from symcost.export.latex import escape_caption

    assert escape_caption("mobilenet_v2, 50% & #1") == r"mobilenet\_v2, 50\% \& \#1"
    assert escape_caption(r"$R_1$ see~\ref{sec:my_label}, \textbf{a_b}, \_") == \
        r"$R_1$ see~\ref{sec:my_label}, \textbf{a\_b}, \_"


def test_escape():
    assert escape("layer1.0:add_") == r"layer1.0:add\_"
    assert escape("a&b%c$d#e{f}g~h^i\\j") == (r"a\&b\%c\$d\#e\{f\}g\textasciitilde{}h\textasciicircum{}i"
                                             r"\textbackslash{}j")


def test_abbreviations_name_sizes_and_expand_back():
    R = sympy.Symbol("R", integer=True, positive=True)
    s1 = sympy.floor(R / 2 - sympy.Rational(1, 2)) + 1        # conv1: 7x7 stride 2 pad 3
    s2 = sympy.floor((s1 - 1) / 2) + 1                        # maxpool 3x3 stride 2 pad 1
    s3 = sympy.ceiling(s2 / 2 - sympy.Rational(1, 2))         # a ceil-mode pool: the ceiling is the size
    exprs = [9408 * s1**2, 512 * s2**2 + 7 * s3, 3 * s3 + 1]
    out, where = abbreviate(exprs, sizes=[s1, s2, s3])
    names = {str(k): v for k, v in where.items()}
    assert list(names) == ["R_1", "R_2", "R_3"]
    r1, r2, r3 = where
    assert out[0] == 9408 * r1**2 and out[1] == 512 * r2**2 + 7 * r3 and out[2] == 3 * r3 + 1
    for e, o in zip(exprs, out):
        assert sympy.simplify(expand_back(o, where) - e) == 0
    assert latex_expr(names["R_2"]) == r"\left\lfloor \frac{R_{1} - 1}{2}\right\rfloor  + 1"
    # no floors: nothing to name
    assert abbreviate([R**2]) == ([R**2], {})


# ----------------------------------------------------------------------------------------------------- tables

def test_latex_single_model_structure(run):
    tex = ok(run("table", "torchvision:resnet18", "--input", "1x3x224x224", "--environment", "table"))
    assert r"\documentclass" not in tex                          # a table to \input, not a document
    for piece in (r"\begin{table}", r"\toprule", r"\midrule", r"\bottomrule", r"\end{tabularx}",
                  r"\label{tab:resnet18}", "Layer & Type & Output & Params & MACs & FLOPs \\\\\n &  &  & (K) & (M) & (M)",
                  r"\texttt{flops} convention", r"$1\times 64\times 112\times 112$",
                  r"\texttt{layer1.\allowbreak 0:\allowbreak  add}"):   # out += identity: torch's add_
        assert piece in tex, piece
    assert tex.index(r"\toprule") < tex.index(r"\midrule") < tex.index(r"\bottomrule")
    # every underscore in text is escaped
    for name in re.findall(r"\\texttt\{([^}]*)\}", tex):
        assert not re.search(r"(?<!\\)_", name), name
    rows = [line for line in tex.splitlines() if line.startswith(r"\texttt{")]
    assert len(rows) == 68 and all(line.count("&") == 5 for line in rows)
    # totals of a thousand column units or more in their own prefix, as a paper writes them: torchvision's resnet18
    # has 11,689,512 parameters (its model card: 11.7M) -> 11.69M under the (K) column, not 11,689.51; its
    # 1,814,073,856 MACs at 224 (model card: 1.81 GFLOPS, MACs as torchvision counts them) -> 1.81G under (M)
    assert re.search(r"^Total &\s*&\s*& 11\.69M & 1\.81G & ", tex, re.M)


def test_latex_long_tables_use_longtable_and_caption_label_convention(run):
    tex = ok(run("table", "torchvision:resnet50", "--input", "1x3x224x224", "--convention", "torch",
                 "--caption", "ResNet-50, every layer call.", "--label", "tab:r50"))
    assert r"\begin{xltabular}{\linewidth}" in tex and r"\endhead" in tex and r"\label{tab:r50}" in tex
    assert "ResNet-50, every layer call." in tex and r"\texttt{torch} convention" in tex
    assert "% needs \\usepackage{booktabs}, \\usepackage{xltabular}" in tex


def test_depth_groups_rows_by_module_prefix(run):
    data = json.loads(ok(run("table", "torchvision:resnet50", "--input", "1x3x224x224", "--depth", "1", "--json")))
    assert [r["name"] for r in data["rows"]] == RESNET50_DEPTH1
    layer1 = data["rows"][4]
    assert layer1["layer"] == "Sequential" and layer1["output_shape"] == [1, 256, 56, 56]
    assert layer1["calls"] == 3 * 10 + 2  # 3 bottlenecks of 10 calls (residual add included), a downsample
    for m in ("params", "macs", "flops", "reads", "writes"):
        assert sum(r[m] for r in data["rows"]) == data["total"][m], m
    model = json.loads(ok(run("model", "torchvision:resnet50", "--input", "1x3x224x224", "--json")))
    # layer1's sum equals the layers under it, functional calls ("layer1.0: add") included
    under = [r for r in model["layers"] if r["name"].split(":")[0].split(".")[0] == "layer1"]
    assert sum(r["flops"] for r in under) == layer1["flops"] and any(":" in r["name"] for r in under)
    tex = ok(run("table", "torchvision:resnet50", "--input", "1x3x224x224", "--depth", "1"))
    assert r"\begin{tabularx}" in tex and r"\label{tab:resnet50-depth1}" in tex and "to depth 1" in tex


def test_comparison_table(run):
    tex = ok(run("table", "torchvision:resnet18", "torchvision:resnet50", "torchvision:mobilenet_v2",
                 "--input", "1x3x224x224"))
    for piece in ("Model & Params & MACs & FLOPs & Reads & Writes \\\\\n & (M) & (G) & (G) & (M) & (M)",
                  r"\texttt{mobilenet\_v2}", r"\begin{adjustbox}{max width=\linewidth}",
                  r"\label{tab:model-comparison}", "4 bytes each at fp32"):
        assert piece in tex, piece
    assert re.search(r"\\texttt\{resnet50\} & 25\.56 & 4\.09 & ", tex)
    data = json.loads(ok(run("table", "torchvision:resnet18", "torchvision:resnet50", "--input", "1x3x224x224",
                             "--json")))
    assert data["kind"] == "models" and [r["name"] for r in data["rows"]] == ["resnet18", "resnet50"]
    assert data["rows"][1]["macs"] == 4_089_184_256  # torchvision: 4.089 GMACs


def test_symbolic_column(run):
    tex = ok(run("table", "torchvision:resnet50", "--input", "1x3xRxR", "--at", "R=224", "--depth", "1",
                 "--symbolic"))
    assert r"\begin{tabularx}" in tex and "R_{1}" in tex and r"\lfloor" in tex
    # each row's formula on a line of its own under it: conv1, 64 x 7x7x3 = 9408 MACs per output pixel, 2 FLOPs each
    assert "\\texttt{conv1} & conv2d" in tex and r"{\quad FLOPs $= 18816 R_{1}^{2}$} \\" in tex
    assert r"at $R = 224$" in tex and "Total FLOPs $=" in tex
    data = json.loads(ok(run("table", "torchvision:resnet50", "--input", "1x3xRxR", "--at", "R=224", "--depth",
                             "1", "--symbolic", "--json")))
    R = sympy.Symbol("R", integer=True, positive=True)
    for row in data["rows"]:   # each formula (a sympy string in R) gives the row's number at R=224
        expr = sympy.sympify(row["flops_formula"], locals={"R": R})
        assert expr.subs(R, 224) == row["flops"], row["name"]
    assert data["where"]["R_1"] == "floor(R/2 - 1/2) + 1"
    assert data["rows"][0]["flops_formula_latex"] == "18816 R_{1}^{2}"
    # numbers at R=224 equal the concrete table's
    concrete = json.loads(ok(run("table", "torchvision:resnet50", "--input", "1x3x224x224", "--depth", "1",
                                 "--json")))
    assert [r["flops"] for r in concrete["rows"]] == [r["flops"] for r in data["rows"]]


def _model_json(run, target, convention="flops"):
    return json.loads(ok(run("model", target, "--input", "1x3x224x224", "--json", "--convention", convention)))


@pytest.mark.parametrize("convention", ["flops", "exact"])
def test_json_csv_markdown_equal_model_json(run, convention):
    model = _model_json(run, "torchvision:resnet18", convention)
    args = ("table", "torchvision:resnet18", "--input", "1x3x224x224", "--convention", convention)
    data = json.loads(ok(run(*args, "--json")))
    assert data["convention"] == convention
    keys = ("name", "layer", "params", "macs", "flops")
    assert [{k: r[k] for k in keys} for r in data["rows"]] == [{k: r[k] for k in keys} for r in model["layers"]]
    assert [r["output_shape"] for r in data["rows"]] == [r["output_shape"] for r in model["layers"]]
    for k in ("params", "macs", "flops", "reads", "writes", "buffers"):
        assert data["total"][k] == model["total"][k], k

    rows = list(csv.DictReader(io.StringIO(ok(run(*args, "--csv")))))
    assert [r["name"] for r in rows] == [r["name"] for r in model["layers"]]
    for r, m in zip(rows, model["layers"]):
        assert (int(r["params"]), int(r["macs"]), int(r["flops"])) == (m["params"], m["macs"], m["flops"])
        assert r["output_shape"] == "x".join(map(str, m["output_shape"]))

    md = ok(run(*args, "--markdown", "--exact")).splitlines()
    table = [line for line in md if line.startswith("| `")]
    assert len(table) == len(model["layers"])
    for line, m in zip(table, model["layers"]):
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[0] == f"`{m['name']}`" and cells[1] == m["layer"]
        assert [int(c.replace(",", "")) for c in cells[3:6]] == [m["params"], m["macs"], m["flops"]]
    total = next(line for line in md if line.startswith("| **Total**"))
    assert int(total.split("|")[6].strip(" *").replace(",", "")) == model["total"]["flops"]
    assert f"`{convention}` convention" in md[0]

    scaled_md = ok(run(*args, "--markdown"))
    header = next(line for line in scaled_md.splitlines() if line.startswith("| Layer"))
    assert "Params (K)" in header and "MACs (M)" in header
    first = next(line for line in scaled_md.splitlines() if line.startswith("| `conv1`"))
    macs = float(first.split("|")[5].replace(",", ""))
    assert macs == pytest.approx(model["layers"][0]["macs"] / 1e6, abs=0.005)


def test_markdown_comparison_with_formulas(run):
    md = ok(run("table", "torchvision:resnet18", "torchvision:densenet121", "--input", "1x3xRxR", "--at", "R=224",
                "--markdown", "--symbolic"))
    assert "| Model | Params (M) | MACs (G) | FLOPs (G) | Reads (M) | Writes (M) | FLOPs formula |" in md
    assert "where $R_{1} = " in md and "$19008 R_{1}^{2} + " in md


def test_table_falls_back_to_a_concrete_derivation(run):
    """swin_t has no single formula (its graph changes with the size); its numbers at R=224 still come."""
    code, out, err = run("table", "torchvision:swin_t", "--input", "1x3xRxR", "--at", "R=224", "--json")
    assert code == 0, err
    assert json.loads(out)["total"]["params"] == 28_288_354 and "derived at 1x3x224x224" in err


def test_cached_table_does_not_import_torch(cache_dir):
    subprocess.run([sys.executable, "-m", "symcost.cli", "table", "torchvision:resnet18", "--input", "1x3x224x224",
                    "--json"], check=True, capture_output=True, env={**_env(), "SYMCOST_CACHE_DIR": str(cache_dir)})
    code = ("import sys; from symcost.cli import main; "
            "main(['table','torchvision:resnet18','--input','1x3x224x224','--markdown']); "
            "assert 'torch' not in sys.modules and 'matplotlib' not in sys.modules")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env={**_env(), "SYMCOST_CACHE_DIR": str(cache_dir)})
    assert r.returncode == 0, r.stderr


def _env():
    import os

    return dict(os.environ)


# ------------------------------------------------------------------------------------------------- pdflatex

VARIANTS = {
    "single": ("torchvision:resnet18", "--input", "1x3x224x224"),
    "depth": ("torchvision:resnet50", "--input", "1x3x224x224", "--depth", "1"),
    "comparison": ("torchvision:resnet18", "torchvision:mobilenet_v2", "torchvision:efficientnet_b0",
                   "--input", "1x3x224x224"),
    "symbolic": ("torchvision:resnet50", "--input", "1x3xRxR", "--at", "R=224", "--depth", "1", "--symbolic"),
    "symbolic-comparison": ("torchvision:resnet18", "torchvision:densenet121", "--input", "1x3xRxR", "--at",
                            "R=224", "--symbolic"),
    "symbolic-layers-long": ("torchvision:mobilenet_v2", "--input", "1x3xHxW", "--at", "H=224", "--at", "W=193",
                             "--symbolic"),
    "comparison-five": ("torchvision:resnet18", "torchvision:mobilenet_v2", "torchvision:efficientnet_b0",
                        "torchvision:convnext_tiny", "torchvision:regnet_y_400mf", "--input", "1x3x224x224", "--exact"),
    "symbolic-longtable": (f"{FIXTURES / 'my_models.py'}:build_net", "--input", "2x3xHxW", "--at", "H=32",
                           "--at", "W=45", "--symbolic", "--environment", "longtable", "--caption",
                           "A user's net (tiny_net, 50% pooled, $R_1$ in \\textbf{bold_face}); see "
                           "\\S 2 and Table~\\ref{tab:my_label}."),
}


def _pdflatex(tex: str, folder: Path) -> subprocess.CompletedProcess:
    (folder / "doc.tex").write_text(tex)
    return subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"], cwd=folder,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed")
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_latex_compiles(run, variant, tmp_path):
    snippet = ok(run("table", *VARIANTS[variant]))
    # as a user would: \input the table into a document that loads the packages its first lines name
    needs = re.search(r"^% needs (.*)$", snippet, re.M).group(1)
    (tmp_path / "table.tex").write_text(snippet)
    doc = ("\\documentclass{article}\n" + needs.replace(", ", "\n")
           + "\n\\begin{document}\n\\input{table}\n\\end{document}\n")
    r = _pdflatex(doc, tmp_path)
    assert r.returncode == 0, r.stdout[-3000:]
    assert (tmp_path / "doc.pdf").stat().st_size > 1000
    # it fits a default article's text width: no box overfull by more than 1pt
    log = (tmp_path / "doc.log").read_text(errors="replace")
    overfull = [float(x) for x in re.findall(r"Overfull \\[hv]box \(([\d.]+)pt too", log)]
    assert all(x <= 1.0 for x in overfull), re.findall(r"Overfull .*\n.*", log)[:5]
    assert re.findall(r"Overfull \\[hv]box \(([\d.]+)pt too", "Overfull \\hbox (120.3pt too wide)") == ["120.3"]
    standalone = ok(run("table", *VARIANTS[variant], "--standalone"))
    assert standalone.startswith("\\documentclass") and standalone.rstrip().endswith("\\end{document}")
    r = _pdflatex(standalone, tmp_path)
    assert r.returncode == 0, r.stdout[-3000:]


# ------------------------------------------------------------------------------------------------------ plots

def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


@pytest.mark.parametrize("suffix, magic", [(".png", b"\x89PNG"), (".pdf", b"%PDF"), (".svg", b"<?xml")])
def test_plot_files(run, tmp_path, suffix, magic):
    out = tmp_path / f"cost{suffix}"
    stdout = ok(run("plot", "torchvision:resnet18", "torchvision:mobilenet_v2", "--input", "1x3xRxR", "--range",
                    "R=32:512:32", "--out", out, "--logy", "--metric", "flops", "--convention", "torch"))
    assert out.read_bytes().startswith(magic) and out.stat().st_size > 5000 and str(out) in stdout
    if suffix == ".png":
        from symcost.plot import DPI, FIGSIZE

        assert png_size(out) == (int(FIGSIZE[0] * DPI), int(FIGSIZE[1] * DPI))
    if suffix == ".svg":
        assert "<svg" in out.read_text()


def test_plot_is_reproducible_and_breakdown(run, tmp_path):
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    for out in (a, b):
        ok(run("plot", "torchvision:resnet50", "--input", "1x3xRxR", "--range", "R=64,128,224,320", "--out", out,
               "--breakdown", "--metric", "writes"))
    assert a.read_bytes() == b.read_bytes()


def test_plot_skips_sizes_outside_the_domain(run, tmp_path):
    out = tmp_path / "alexnet.png"
    code, stdout, err = run("plot", "torchvision:alexnet", "torchvision:resnet18", "--input", "1x3xRxR", "--range",
                            "R=16:256:16", "--out", out, "--logx")
    assert code == 0, err
    assert "alexnet: 3 of 16 sizes outside the model's domain" in err and "R=16, 32, 48" in err
    assert out.stat().st_size > 5000


def test_plot_evaluates_the_formula_not_a_counter(run, tmp_path, monkeypatch):
    """One derivation per model, one vectorised evaluation per curve: no trace per point."""
    import symcost.derive as models
    import symcost.plot as plot

    calls = {"derive": 0, "lambdified": 0}
    real_derive, real_evaluate = models.derive, plot.evaluate

    def derive(*a, **k):
        calls["derive"] += 1
        return real_derive(*a, **k)

    def evaluate(mc, xs, *a, **k):
        calls["lambdified"] += 1
        return real_evaluate(mc, xs, *a, **k)

    ok(run("table", "torchvision:resnet18", "--input", "1x3xRxR", "--at", "R=224", "--json"))  # in the cache now
    monkeypatch.setattr(models, "derive", derive)
    monkeypatch.setattr(plot, "evaluate", evaluate)
    monkeypatch.setattr(models, "trace_target", lambda *a, **k: pytest.fail("traced per point"), raising=True)
    ok(run("plot", "torchvision:resnet18", "--input", "1x3xRxR", "--range", "R=32:1024:8", "--out",
           tmp_path / "x.png"))
    assert calls["derive"] == 1 and calls["lambdified"] == 1


# ----------------------------------------------------------------------------------------------------- errors

@pytest.mark.parametrize("args, message", [
    (["table", "torchvision:resnet5", "--input", "1x3x224x224"], "did you mean resnet50"),
    (["plot", "torchvision:resnet5", "--input", "1x3xRxR", "--range", "R=32:64:8", "--out", "{tmp}/x.png"],
     "did you mean resnet50"),
    (["plot", "torchvision:resnet18", "--input", "1x3xRxR", "--range", "R=64:32", "--out", "{tmp}/x.png"],
     "--range"),
    (["plot", "torchvision:resnet18", "--input", "1x3xRxR", "--range", "R=a:b:c", "--out", "{tmp}/x.png"],
     "--range"),
    (["plot", "torchvision:resnet18", "--input", "1x3xRxR", "--range", "Q=32:64", "--out", "{tmp}/x.png"],
     "no symbol 'Q'"),
    (["plot", "torchvision:resnet18", "--input", "1x3xRxR", "--range", "R=224", "--out", "{tmp}/x.png"],
     "at least two sizes"),
    (["plot", "torchvision:resnet18", "--input", "1x3xRxR", "--range", "R=32:64", "--out", "{tmp}/x.png",
      "--metric", "gflops"], "unknown metric 'gflops'"),
    (["plot", "torchvision:resnet18", "torchvision:resnet50", "--input", "1x3xRxR", "--range", "R=32:64",
      "--out", "{tmp}/x.png", "--breakdown"], "--breakdown draws one model"),
    (["plot", "torchvision:resnet18", "--input", "1x3xRxR", "--range", "R=32:64", "--out", "{tmp}/x.jpg"],
     ".png, .pdf or .svg"),
    (["plot", "torchvision:resnet18", "--input", "1x3xHxW", "--range", "H=32:64", "--out", "{tmp}/x.png"],
     "exactly one symbol"),
    (["plot", "torchvision:resnet18", "--input", "1x3xRxR", "--out", "{tmp}/x.png"], "required: --range"),
    (["plot", "torchvision:resnet18", "--input", "1x3xRxR", "--range", "R=32:64", "--out", "{tmp}/no/x.png"],
     "does not exist"),
    (["plot", "torchvision:swin_t", "--input", "1x3xRxR", "--range", "R=224,256", "--out", "{tmp}/x.png"],
     "one formula per model"),
    (["table", "torchvision:resnet18", "--input", "1x3xRxR"], "--at R=224"),
    (["table", "torchvision:resnet18", "--input", "1x3x224x224", "--symbolic"], "--symbolic needs symbols"),
    (["table", "torchvision:resnet18", "--input", "1x3xRxR", "--at", "R=224,256"], "one value per symbol"),
    (["table", "torchvision:resnet18", "torchvision:resnet50", "--input", "1x3x224x224", "--depth", "1"],
     "several targets"),
    (["table", "torchvision:resnet18", "--input", "1x3x224x224", "--depth", "0"], "positive integer"),
    (["table", "torchvision:resnet18", "--input", "1x3x224x224", "--latex", "--csv"], "one output format"),
    (["table", "torchvision:resnet18", "--input", "1x3x224x224", "--convention", "nope"], "unknown convention"),
    (["table", "torchvision:resnet18", "--input", "1x3x224x224", "--csv", "--standalone"], "--latex output"),
    (["table", "torchvision:alexnet", "--input", "1x3xRxR", "--at", "R=32"], "cannot take R=32"),
    (["table", "torchvision:resnet18", "--input", "1x3x224x224", "--digits", "x"], "invalid int value"),
])
def test_errors_are_one_line_exit_2(run, tmp_path, args, message):
    code, out, err = run(*[a.replace("{tmp}", str(tmp_path)) for a in args])
    assert code == 2, (out, err)
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err


# ---------------------------------------------------------------------------------------------------- figures

@pytest.mark.slow
def test_figures_regenerate(cache_dir, tmp_path):
    from symcost.figures import FIGURES

    r = subprocess.run([sys.executable, "-m", "symcost.figures", "--out", str(tmp_path)], capture_output=True,
                       text=True, env={**_env(), "SYMCOST_CACHE_DIR": str(cache_dir)}, timeout=600)
    assert r.returncode == 0, r.stderr
    for name, size in FIGURES.items():
        made = tmp_path / name
        assert made.is_file() and 10_000 < made.stat().st_size < 300_000, name
        assert png_size(made) == size, name
        committed = ROOT / "figures" / name
        assert committed.is_file() and committed.stat().st_size < 300_000, name
        assert png_size(committed) == size, name
