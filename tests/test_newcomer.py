"""What a careful new user tripped on (issue 25), one test per class of mistake: the marked default size of a plot
per target kind, the report at a refused size, simplified formulas, syntax errors answered before torch is
imported, and one-line errors that say what was read."""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURE_NET = str(Path(__file__).parent / "fixtures" / "my_models.py") + ":build_net"
NODE = shutil.which("node") or shutil.which("nodejs")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_node = pytest.mark.skipif(NODE is None, reason="node is not installed: the page's JavaScript is not run")


def cli(*args, cache, env=None):
    return subprocess.run([sys.executable, "-m", "symcost.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), "SYMCOST_CACHE_DIR": str(cache),
                                         **(env or {})})


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("newcomer-cache")


# ------------------------------------------------------------------------------ 1. the plot's marked size

@pytest.mark.parametrize("target, shape, symbol, expected", [
    # timm's pretrained_cfg input_size for efficientnet_b3 is (3, 288, 288) (timm's model card); not 224
    ("timm:efficientnet_b3", ("1", "3", "R", "R"), "R", 288),
    # GPT-2's n_positions (max_position_embeddings) is 1024, BERT's 512 (their configs' defaults)
    ("hf:gpt2", (1, "L"), "L", 1024),
    ("hf:bert", (1, "L"), "L", 512),
    # torchvision: the weights' crop, 299 for inception_v3 (its model card), 224 for resnet50
    ("torchvision:inception_v3", (1, 3, "R", "R"), "R", 299),
    ("torchvision:resnet50", (1, 3, 224, "W"), "W", 224),
    ("torchvision:resnet50", ("B", 3, 224, 224), "B", None),     # the batch has no default
    ("torchvision:resnet50", (1, 1, "R", "R"), "R", None),       # not the model's input: 1 channel, not 3
    (FIXTURE_NET, (1, 3, "R", "R"), "R", None),                  # a user's file says nothing
])
def test_plot_marks_the_size_each_kind_of_target_was_made_for(target, shape, symbol, expected, tmp_path,
                                                               monkeypatch):
    pytest.importorskip("timm") if target.startswith("timm:") else None
    monkeypatch.setenv("SYMCOST_CACHE_DIR", str(tmp_path))
    from symcost import plot

    shape = tuple(int(d) if str(d).isdigit() else d for d in shape)
    assert plot.default_size(target, shape, symbol) == expected
    assert plot.default_size(target, shape, symbol) == expected       # again, from the cache


def test_plot_legend_names_what_is_marked():
    from symcost.plot import marker_label

    assert marker_label(["hf:gpt2", "hf:bert"]) == "the config's max_position_embeddings"
    assert marker_label(["torchvision:resnet50", "timm:resnet50d"]) == "the weights' input size"
    assert marker_label(["hf:gpt2", "timm:resnet50d"]) == "the model's default input size"


def test_report_slider_starts_at_the_models_context(cache, tmp_path):
    out = tmp_path / "gpt2.html"
    r = cli("report", "hf:gpt2", "--input", "1xL", "--out", out, cache=cache)
    assert r.returncode == 0, r.stderr
    # GPT-2's context, 1024 tokens (n_positions of its default config), not an image's 224
    assert 'id="n-L" min="1" value="1024"' in out.read_text()


# ------------------------------------------------------------------------------ 2. the report, refused

_DOM = """
function mk() {
  const e = {textContent: "", className: "", value: "", style: {}, listeners: {}, kids: null, rows: [], cells: [],
             addEventListener(t, f) { this.listeners[t] = f; }, appendChild() {},
             insertRow() { const r = mk(); this.rows.push(r); return r; },
             insertCell() { const c = mk(); this.cells.push(c); return c; }};
  let html = "";
  Object.defineProperty(e, "innerHTML", {get() { return html; }, set(v) { html = v; if (v === "") this.rows = []; }});
  Object.defineProperty(e, "children", {get() { if (!this.kids) this.kids = Array.from({length: 8}, mk);
                                                return this.kids; }});
  return e;
}
const made = {};
const el = (id) => (made[id] = made[id] || mk());
global.document = {getElementById: el, querySelectorAll: () => [], createElement: mk};
"""


def _chart_after(page: str, steps: list) -> list:
    """The family chart's rows (their cells' text) after each step of setting slider values."""
    data = re.search(r'<script type="application/json" id="data">(.*?)</script>', page, re.S).group(1)
    script = re.findall(r"<script>\n(.*?)</script>", page, re.S)[-1]
    initial = dict(re.findall(r'id="n-(\w+)" min="1" value="(\d+)"', page))
    sel = re.search(r"<option selected>(\w+)</option>", page).group(1)
    data = data.replace("<\\/", "</")
    js = (_DOM + f"el('data').textContent = {json.dumps(data)};\n"
          + "".join(f"el('n-{k}').value = '{v}'; el('r-{k}').value = '{v}';\n" for k, v in initial.items())
          + f"el('convention').value = '{sel}';\n" + script
          + "\nconst chart = () => ({status: el('status').textContent, "
            "rows: el('chart').rows.map((r) => r.cells.map((c) => c.textContent))});\nconst out = [chart()];\n")
    for step in steps:
        js += "".join(f"el('n-{k}').value = '{v}'; el('n-{k}').listeners.input();\n" for k, v in step.items())
        js += "out.push(chart());\n"
    r = subprocess.run([NODE, "-e", js + "console.log(JSON.stringify(out));"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout)


@needs_node
def test_family_chart_shows_no_stale_values_at_a_refused_size(cache, tmp_path):
    out = tmp_path / "net.html"
    assert cli("report", FIXTURE_NET, "--input", "1x3xHxW", "--out", out, "--at", "H=33", "--at", "W=8",
               cache=cache).returncode == 0
    before, refused, after = _chart_after(out.read_text(), [{"H": 1}, {"H": 33}])
    assert before["status"] == "exact values at H=33, W=8" and len(before["rows"]) > 1
    # H=1: the pool's output would be 0 pixels (the CLI refuses it too): no family may keep H=33's number
    assert refused["status"].startswith("refused:")
    assert refused["rows"] == [["refused"]]
    assert after == before


def test_report_shows_the_whole_models_formulas_and_constant_ones(cache, tmp_path):
    out = tmp_path / "r18.html"
    assert cli("report", "torchvision:resnet18", "--input", "1x3xRxR", "--out", out, cache=cache).returncode == 0
    page = out.read_text()
    for m in ("params", "macs", "flops"):
        cell = re.search(rf'<td id="formula-{m}">(.*?)</td>', page, re.S).group(1)
        assert "<math" in cell, m
    # params: 11,689,512 (torchvision's resnet18 model card), a constant formula
    assert "<mn>11689512</mn>" in re.search(r'<td id="formula-params">(.*?)</td>', page, re.S).group(1)
    # the fc row's FLOPs formula is a constant, 512 x 1000 MACs x 2 + 1000 bias adds = 1,025,000: its cell is not empty
    math = json.loads(re.search(r"const M = (\[.*?\]);\n", page, re.S).group(1).replace("<\\/", "</"))
    data = json.loads(re.search(r'id="data">(.*?)</script>', page, re.S).group(1).replace("<\\/", "</"))
    fc = next(r for r in data["rows"] if r["name"] == "fc")
    assert "<mn>1025000</mn>" in math[fc["flops"]["flops"]]


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed: the page is not run in a real browser")
def test_family_chart_at_a_refused_size_in_headless_chromium(cache, tmp_path):
    out = tmp_path / "net.html"
    assert cli("report", FIXTURE_NET, "--input", "1x3xHxW", "--out", out, "--at", "H=1", "--at", "W=8",
               cache=cache).returncode == 0
    r = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", out.as_uri()],
                       capture_output=True, text=True, timeout=120)
    status = re.search(r'<p id="status"[^>]*>([^<]*)</p>', r.stdout).group(1)
    assert status.startswith("refused:"), status
    chart = re.search(r'<table id="chart">(.*?)</table>', r.stdout, re.S).group(1)
    assert re.sub(r"<[^>]+>", "", chart).strip() == "refused" and not re.search(r"\d", chart)


# ------------------------------------------------------------------------------ 3. formulas as simple as they can be

def test_backward_forward_flops_print_as_the_plain_models(cache):
    # the forward pass of a training step is the plain forward: the same formula, like terms collected
    plain = json.loads(cli("model", "hf:gpt2", "--input", "1xL", "--json", cache=cache).stdout)
    step = json.loads(cli("model", "hf:gpt2", "--input", "1xL", "--backward", "--json", cache=cache).stdout)
    assert step["forward"]["flops"] == plain["total"]["flops"]
    assert "(" not in step["forward"]["flops"] + step["backward"]["flops"] + step["total"]["flops"]


def test_the_same_integer_gets_one_name():
    import sympy

    from symcost.export.formulas import abbreviate, expand_back

    H = sympy.Symbol("H", integer=True, positive=True)
    half = sympy.floor((H - 1) / 2) + 1                       # a 3x3/2 pad-1 conv's output side
    # ceil-mode 2x2/2 pool (timm's resnet50d shortcut) and a 3x3/2 pad-1 conv of the same map: ceiling(h/2) and
    # floor((h - 1)/2) + 1, the same integer for every integer h
    pool, conv = sympy.ceiling(half / 2), sympy.floor((half - 1) / 2) + 1
    exprs = [7 * pool * H, 5 * conv, sympy.floor((conv - 1) / 2) + 1]
    out, where = abbreviate(exprs, sizes=[half, pool, conv, exprs[2]])
    assert len(where) == 3, where                             # half, pool = conv, and the next stage
    for h in range(1, 200):
        for o, e in zip(out, exprs):
            assert expand_back(o, where).subs(H, h) == e.subs(H, h), h
    # no two names for one integer function: their values differ somewhere in 1..199
    columns = [tuple(int(expand_back(s, where).subs(H, h)) for h in range(1, 200)) for s in where]
    assert len(set(columns)) == len(columns)


def test_conditions_read_as_a_reader_writes_them():
    import sympy

    from symcost.export.formulas import condition_text

    L, R = sympy.symbols("L R", integer=True, positive=True)
    conv = sympy.floor((R - 1) / 2) + 1
    cases = {1025 - L: "L <= 1024", 2 * L - 3: "L >= 2", conv: None, sympy.floor((conv - 1) / 2) + 1: None,
             sympy.floor((R - 7) / 2) + 1: "floor((R - 7)/2) + 1 >= 1", sympy.ceiling((R - 3) / 2): None}
    cases[sympy.ceiling((R - 3) / 2)] = "ceiling((R - 3)/2) >= 1"   # 0 at R = 1, 2, 3
    for size, expected in cases.items():
        assert condition_text(size) == expected, size
        # whatever is printed (or left out as always true) says exactly where the size is >= 1
        s = next(iter(size.free_symbols))
        bound = {"<=": lambda v, k: v <= k, ">=": lambda v, k: v >= k}
        for v in range(1, 1200):
            holds = size.subs(s, v) >= 1
            if expected is None:
                assert holds, (size, v)
            elif expected.startswith(f"{s} "):
                _, op, k = expected.split()
                assert bool(holds) == bound[op](v, int(k)), (size, v)


def test_totals_print_readably():
    import sympy

    from symcost.model import Totals

    R = sympy.Symbol("R", integer=True, positive=True)
    r1 = sympy.floor((R - 1) / 2) + 1
    r2 = sympy.floor((r1 - 1) / 2) + 1
    t = Totals("flops", {"params": sympy.Integer(10), "buffers": sympy.Integer(0), "macs": 3 * r2 ** 2 + r1,
                         "flops": 6 * r2 ** 2 + 2 * r1 * (r1 - 1), "reads": R ** 2, "writes": r2})
    text = repr(t)
    assert "floor(floor" not in text and "where R_2 = floor((R_1 - 1)/2) + 1" in text
    assert "flops    2*R_1**2 - 2*R_1 + 6*R_2**2" in text                 # like terms collected
    assert t["macs"] == 3 * r2 ** 2 + r1                                     # the values stay the exact expressions


def test_a_layers_output_sizes_have_one_name_everywhere():
    import sympy

    import symcost

    cost = symcost.layer("conv2d").cost()
    printed = subprocess.run([sys.executable, "-m", "symcost.cli", "formula", "conv2d"], capture_output=True,
                             text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout
    assert "H_out" in printed and "H_out" in str(cost.formula()) and "H_{out}" in sympy.latex(cost)
    assert "H_1" not in str(cost.formula()) + sympy.latex(cost) + cost.formula()._repr_html_()


def test_config_formulas_name_their_floors(tmp_path, cache):
    path = tmp_path / "nets.py"
    path.write_text("from torch import nn\n\n\ndef build(width=8):\n"
                    "    return nn.Sequential(nn.Conv2d(3, width, 3, stride=2, padding=1), nn.ReLU(),\n"
                    "                         nn.Conv2d(width, width, 3, stride=2, padding=1))\n")
    r = cli("model", f"{path}:build", "--input", "1x3xRxR", "--config", "width=w", cache=cache)
    assert r.returncode == 0, r.stderr
    assert "floor(floor" not in r.stdout and "R_2 = floor((R_1 - 1)/2) + 1" in r.stdout, r.stdout
    # the sizes' ">= 1" always holds (a 3x3/2 pad-1 conv never empties a map): not printed
    assert re.search(r"^valid where +w >= 2$", r.stdout, re.M), r.stdout
    # --json names the same floors: the text's "where" lines and formulas, beside the raw ones
    data = json.loads(cli("model", f"{path}:build", "--input", "1x3xRxR", "--config", "width=w", "--json",
                          cache=cache).stdout)
    assert data["where"] == {"R_1": "floor((R - 1)/2) + 1", "R_2": "floor((R_1 - 1)/2) + 1"}
    assert f"MACs          {data['formula_named']['macs']}\n" in r.stdout and "floor" not in str(data["formula_named"])
    import importlib.util

    import sympy
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    namespace = {n: sympy.Symbol(n, integer=True, positive=True) for n in ("R", "R_1", "R_2", "w")}
    for width, size in ((8, 33), (6, 224), (3, 8)):
        values = {namespace["R"]: size, namespace["w"]: width}
        for name, definition in data["where"].items():   # each name defined by the ones before it
            values[namespace[name]] = int(sympy.sympify(definition, locals=namespace).subs(values))
        named = int(sympy.sympify(data["formula_named"]["macs"], locals=namespace).subs(values))
        raw = int(sympy.sympify(data["formula"]["macs"], locals=namespace).subs(values))
        spec = importlib.util.spec_from_file_location("nets", path)
        spec.loader.exec_module(nets := importlib.util.module_from_spec(spec))
        with FlopCounterMode(display=False) as counter:                 # torch counts 2 FLOPs per conv MAC
            nets.build(width).to("meta")(torch.zeros(1, 3, size, size, device="meta"))
        assert named == raw == counter.get_total_flops() // 2, (width, size)
    # by hand at w=8, R=33: conv1 17x17 outputs x 8 x 27 MACs = 62,424; conv2 9x9 x 8 x 72 = 46,656
    assert int(sympy.sympify(data["formula_named"]["macs"], locals=namespace).subs(
        {namespace["R_1"]: 17, namespace["R_2"]: 9, namespace["w"]: 8})) == 62_424 + 46_656


def test_model_json_names_the_floors_the_text_names(cache):
    text = cli("model", FIXTURE_NET, "--input", "1x3xHxW", cache=cache).stdout
    data = json.loads(cli("model", FIXTURE_NET, "--input", "1x3xHxW", "--json", cache=cache).stdout)
    # by hand: the 3x3 stride-2 pad-1 stem gives floor((H + 2 - 3)/2) + 1; the 3x3/2 ceil-mode pool on H_1,
    # ceil((H_1 - 3)/2) + 1 = ceiling((H_1 - 1)/2)
    assert data["where"] == {"H_1": "floor((H - 1)/2) + 1", "W_1": "floor((W - 1)/2) + 1",
                             "H_2": "ceiling((H_1 - 1)/2)", "W_2": "ceiling((W_1 - 1)/2)"}
    assert all(f"  {k} = {v}\n" in text for k, v in data["where"].items()), text
    # stem 8 x 27 MACs per output pixel, head 8 x 5: the text's total, unformatted
    assert data["formula_named"]["macs"] == "216*H_1*W_1 + 40" and "total MACs    216*H_1*W_1 + 40\n" in text
    assert data["formula_named"]["params"] == "277" and "floor" in data["formula"]["macs"]   # the raw ones kept
    import sympy
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    sys.path.insert(0, str(Path(FIXTURE_NET.split(":")[0]).parent))
    from my_models import build_net

    names = {n: sympy.Symbol(n, integer=True, positive=True) for n in ("H", "W", "H_1", "W_1", "H_2", "W_2")}
    for h, w in ((33, 20), (224, 224), (7, 9)):
        values = {names["H"]: h, names["W"]: w}
        for name, definition in data["where"].items():
            values[names[name]] = int(sympy.sympify(definition, locals=names).subs(values))
        with FlopCounterMode(display=False) as counter:      # the conv and the linear: 2 FLOPs per MAC
            build_net().to("meta")(torch.zeros(1, 3, h, w, device="meta"))
        assert int(sympy.sympify(data["formula_named"]["macs"], locals=names).subs(values)) == \
            counter.get_total_flops() // 2, (h, w)


# ------------------------------------------------------------------------------ 4. typos answered before torch

_PROBE = ("import sys\nfrom symcost.cli import main\nrc = main(sys.argv[1:])\n"
          "print(sorted(m for m in ('torch', 'torchvision', 'timm', 'transformers') if m in sys.modules))\n"
          "sys.exit(rc)\n")


@pytest.mark.parametrize("args, message", [
    (["model", "resnet50", "--input", "1x3x224x224"], "target 'resnet50': expected torchvision:NAME"),
    (["model", "torchvision:resnet5O", "--input", "1x3x224x224"], "did you mean resnet50"),
    (["model", "timm:resnet5Od", "--input", "1x3x224x224"], "unknown timm model 'resnet5Od'"),
    (["model", "hf:gtp2", "--input", "1xL"], "did you mean gpt2"),
    (["model", "hf:gpt2", "--input", "1xL", "--config", "n_embed=d"], "no integer config field 'n_embed'; did you "
                                                                      "mean n_embd"),
    (["model", "hf:gpt2", "--input", "1x1", "--past", "T", "--config", "n_embed=d"], "did you mean n_embd"),
    (["model", "tests/fixtures/my_models.py:build_nett", "--input", "1x3xHxW"], "did you mean build_net"),
    (["plot", "resnet50", "--input", "1x3xRxR", "--range", "R=32:64:32", "--out", "x.png"], "expected torchvision"),
    (["report", "torchvision:resnet5O", "--input", "1x3xRxR", "--out", "x.html"], "did you mean resnet50"),
    (["table", "torchvision:resnet18", "torchvision:resnet5O", "--input", "1x3x224x224"], "did you mean resnet50"),
    (["compare", "resnet50", "--input", "1x3x224x224"], "expected torchvision"),
    (["fold", "torchvision:resnet5O", "--input", "1x3x224x224"], "did you mean resnet50"),
])
def test_a_typo_is_answered_before_torch_is_imported(args, message, tmp_path):
    if args[1].startswith("timm:"):
        pytest.importorskip("timm")
    r = subprocess.run([sys.executable, "-c", _PROBE, *args], capture_output=True, text=True, cwd=ROOT,
                       env={**os.environ, "PYTHONPATH": str(ROOT), "SYMCOST_CACHE_DIR": str(tmp_path)})
    assert r.returncode == 2 and message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert r.stdout.strip() == "[]", r.stdout                     # no model library imported, torch least of all


def test_the_name_lists_read_from_source_are_the_libraries_own(tmp_path, monkeypatch):
    monkeypatch.setenv("SYMCOST_CACHE_DIR", str(tmp_path))
    import torchvision

    from symcost import target_names

    for f in (target_names.torchvision_names, target_names.timm_names, target_names.hf_config_classes):
        f.cache_clear()
    assert target_names.torchvision_names() == set(torchvision.models.list_models())
    try:
        import timm
    except ImportError:
        pass
    else:
        assert target_names.timm_names() == set(timm.list_models())
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    assert set(CONFIG_MAPPING.keys()) <= set(target_names.hf_config_classes())


def test_config_field_check_refuses_no_field_the_config_has():
    import random

    from transformers import AutoConfig
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    from symcost.target_names import check_config_fields

    # every integer field of a default config passes the check that reads source text (all 800 types pass; a
    # sample here, plus the README's)
    types = ["gpt2", "llama", "mixtral", "bert", "t5"] + random.Random(25).sample(sorted(CONFIG_MAPPING.keys()), 20)
    for t in types:
        try:
            config = AutoConfig.for_model(t)
        except Exception:  # noqa: BLE001  (a type that needs arguments: nothing to check)
            continue
        ints = [k for k, v in vars(config).items() if isinstance(v, int) and not isinstance(v, bool)]
        check_config_fields(f"hf:{t}", ints)


# ------------------------------------------------------------------------------ 5. errors that say what was read

@pytest.mark.parametrize("args, message", [
    # torch's own message was "too many values to unpack (expected 2)"
    (["model", "hf:bert", "--input", "1x3x224x224"], "BertModel takes token ids of shape B x L"),
    (["formula", "conv2d", "stride=2.5"], "conv2d: stride must be a positive integer or a symbol name, got 2.5"),
    (["formula", "conv2d", "padding=-1.5"], "padding must be a nonnegative integer or a symbol name, got -1.5"),
    (["eval", "conv2d", "--input", "1x3x224", "in_channels=3", "out_channels=8", "kernel_size=3"],
     "input 1x3x224 has rank 3, so it was read as unbatched (C, H, W) with C = 1 channels, but in_channels=3"),
    (["model"], "symcost model: error: the following arguments are required: target, --input"),
    (["report", "torchvision:resnet18"], "required: --input, --out"),
    (["latency"], "required"),
    (["model", "torchvision:resnet18", "--input", "1x3x8x8", "--convention"], "expected one argument"),
])
def test_errors_are_one_line_and_say_what_was_read(args, message, cache):
    r = cli(*args, cache=cache)
    assert r.returncode == 2 and message in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "usage:" not in r.stderr, r.stderr


def test_an_embedding_first_model_is_told_to_take_integer_ids(tmp_path, cache):
    path = tmp_path / "emb.py"
    path.write_text("from torch import nn\n\n\ndef build():\n    return nn.Sequential(nn.Embedding(100, 16), "
                    "nn.Linear(16, 4))\n")
    r = cli("model", f"{path}:build", "--input", "1xL", cache=cache)
    assert r.returncode == 2 and "give --input-dtype int64" in r.stderr and len(r.stderr.splitlines()) == 1
    r = cli("model", f"{path}:build", "--input", "1xL", "--input-dtype", "int64", cache=cache)
    # 100 x 16 embedding + 16 x 4 linear and its bias = 1600 + 64 + 4 params; 16 x 4 MACs per token
    assert r.returncode == 0 and "total params  1,668" in r.stdout and "total MACs    64*L" in r.stdout, r.stderr


# ------------------------------------------------------------------------------ 6. notes and numbers

def test_a_conventions_note_shows_under_that_convention_once():
    from symcost.conventions import notes_for

    notes = ["torch-causal: 12 attention calls …", "backward: one step", "torch-causal: 12 attention calls …"]
    names = {"flops": "", "torch": "", "torch-causal": ""}
    assert notes_for(notes, "flops", names) == ["backward: one step"]
    assert notes_for(notes, "torch-causal", names) == ["torch-causal: 12 attention calls …", "backward: one step"]


def test_hf_notes_follow_the_convention_and_decode_prints_params_and_writes(cache):
    plain = cli("model", "hf:gpt2", "--input", "1xL", cache=cache).stdout
    causal = cli("model", "hf:gpt2", "--input", "1xL", "--convention", "torch-causal", cache=cache).stdout
    assert "torch-causal" not in plain and causal.count("note: torch-causal:") == 1
    # GPT-2: 124,439,808 parameters (its model card; wte 50257 x 768 tied to the LM head, which AutoModel lacks)
    past = cli("model", "hf:gpt2", "--input", "1x1", "--past", "T", cache=cache)
    assert re.search(r"^params  124,439,808$", past.stdout, re.M) and "writes " in past.stdout, past.stdout
    step = json.loads(cli("model", "hf:gpt2", "--input", "1x1", "--past", "T", "--json", cache=cache).stdout)
    assert re.search(rf"writes {re.escape(step['total']['writes'])}", past.stdout)


def test_help_lists_every_target_kind_and_breakdown_draws_flops(cache, tmp_path):
    text = " ".join(cli("--help", cache=cache).stdout.split())
    assert "(torchvision:NAME, timm:NAME, hf:MODEL_TYPE or file.py:fn)" in text
    from symcost.cli import build_parser

    plot = build_parser()._subparsers._group_actions[0].choices["plot"]
    args = plot.parse_args(["torchvision:resnet18", "--input", "1x3xRxR", "--range", "R=32:64:32", "--out", "x.png",
                            "--breakdown"])
    assert args.metric is None                    # run_plot then chooses flops for a breakdown, macs otherwise
    out = tmp_path / "b.svg"
    r = cli("plot", "torchvision:resnet18", "--input", "1x3xRxR", "--range", "R=32:64:32", "--out", out,
            "--breakdown", cache=cache)
    assert r.returncode == 0, r.stderr
    assert "FLOPs [flops]" in out.read_text()      # the y axis: matplotlib writes each text as a comment


# ------------------------------------------------------------------------------ 7. notebook and LaTeX cosmetics

def test_notebook_table_caption_is_short_and_notes_follow_the_convention():
    import torch

    import symcost
    from symcost.export.html import model_html

    mc = symcost.trace(torch.nn.Linear(8, 4), (1, "H", 8))
    mc.notes[:] = ["torch-causal: 1 attention call …", "a note for every convention"]
    page = model_html(mc)
    caption = re.search(r"<caption>(.*?)</caption>", page).group(1)
    # the convention's one-line summary made the table 2000 px wide in JupyterLab: it sits under the table now
    assert caption.endswith("on 1xHx8; FLOPs: flops") and "two per multiply-accumulate" in page
    assert "torch-causal" not in page and "a note for every convention" in page


def test_formula_latex_is_unnumbered_with_its_flags_explained():
    r = subprocess.run([sys.executable, "-m", "symcost.cli", "formula", "conv2d", "--latex"], capture_output=True,
                       text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    lines = r.stdout.strip().splitlines()
    assert lines[0] == r"\begin{align*}" and r"\end{align*}" in lines
    assert lines[-1] == r"\noindent where $b$ is $1$ with bias, $0$ without."


def test_long_latex_tables_start_with_room_and_a_full_width_caption():
    from symcost.export.latex import render_latex
    from symcost.export.tables import Table

    import symcost   # noqa: F401

    rows = [{"name": f"l{i}", "layer": "linear", "output_shape": (1, 4), "params": 36, "macs": 32, "flops": 68}
            for i in range(80)]
    from symcost.conventions import get_convention

    tex = render_latex(Table("layers", get_convention("flops"), (1, 8), {}, ["net"], rows), environment="longtable")
    assert r"\setlength{\LTcapwidth}{\linewidth}" in tex
    before = tex[:tex.index(r"\begin{xltabular}")]   # a per-layer table: a longtable with X columns
    assert r"\penalty-200" in before          # a conditional page break: no caption and two rows at a page's foot


def test_config_plots_mark_the_fields_default(tmp_path):
    from symcost.commands.config import _field_default

    path = tmp_path / "nets.py"
    path.write_text("def build(width=8, depth=2):\n    return None\n")
    assert _field_default(f"{path}:build", "width") == 8             # the factory's own default
    assert _field_default("hf:gpt2", "n_embd") == 768                # GPT-2's default config (its model card: 768)
    assert _field_default("hf:gpt2", "no_such_field") is None


# ------------------------------------------------------------------------------ 7. functional rows by name

RESIDUAL = '''
import torch
from torch import nn


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x):
        out = self.conv(x)
        out += x                                   # torch runs aten.add_ (in place)
        return torch.softmax(out, dim=1)           # torch runs aten._softmax


def build():
    return nn.Sequential(Block())
'''


def test_functional_rows_read_as_the_call_the_code_made_everywhere(tmp_path, capsys):
    import torch

    import symcost
    from symcost.cli import main
    from symcost.export.html import model_html
    from symcost.model import Row, RowKind

    # the label: torch's in-place and private underscores dropped; a module's own name kept whole, ':' and all
    cost = symcost.trace(torch.nn.Linear(2, 2), (1, 2)).rows[0].cost
    assert Row("(model):_softmax", "softmax", {}, (), cost, kind=RowKind.FUNCTIONAL).label == "(model): softmax"
    assert Row("(backward):mm", "matmul", {}, (), cost, kind=RowKind.FUNCTIONAL).label == "(backward): mm"
    assert Row("odd:name", "linear", {}, (), cost).label == "odd:name"
    assert Row("odd:name:relu_", "relu", {}, (), cost, kind=RowKind.FUNCTIONAL).label == "odd:name: relu"

    (tmp_path / "res.py").write_text(RESIDUAL)
    target, shape = f"{tmp_path / 'res.py'}:build", "1x4x6x6"
    wanted = ["0.conv", "0: add", "0: softmax"]
    mc = symcost.model(target, shape, use_cache=False)
    assert [r.name for r in mc.rows] == ["0.conv", "0:add_", "0:_softmax"]    # the key timing data matches
    assert [r.label for r in mc.rows] == wanted
    outputs = {}
    for what, args in {"text": ["model", target, "--input", shape],
                       "json": ["model", target, "--input", shape, "--json"],
                       "latex": ["table", target, "--input", shape],
                       "markdown": ["table", target, "--input", shape, "--markdown"],
                       "table json": ["table", target, "--input", shape, "--json"],
                       "latency": ["latency", target, "--input", shape, "--device", "h100", "--no-measure"]}.items():
        assert main(args) == 0, what
        outputs[what] = capsys.readouterr().out
    assert main(["report", target, "--input", "1x4xHxH", "--out", str(tmp_path / "r.html")]) == 0
    outputs["report"] = (tmp_path / "r.html").read_text()
    outputs["notebook"] = model_html(mc)
    assert [r["name"] for r in json.loads(outputs["json"])["layers"]] == wanted
    assert [r["name"] for r in json.loads(outputs["table json"])["rows"]] == wanted
    assert r"\texttt{0:\allowbreak  add}" in outputs["latex"] and r"0:\allowbreak  softmax" in outputs["latex"]
    for what, out in outputs.items():
        assert "add_" not in out and "_softmax" not in out, what
        if what not in ("latex", "json", "table json"):
            assert "0: add" in out and "0: softmax" in out, what


def test_trace_of_something_not_a_module_says_what_to_call():
    import symcost
    from symcost.errors import UsageError

    # was: AttributeError "'str' object has no attribute 'parameters'"
    with pytest.raises(UsageError, match=r"not a str: a target name goes to symcost.model\('torchvision:resnet18'"):
        symcost.trace("torchvision:resnet18", (1, 3, 224, 224))
    with pytest.raises(UsageError, match="not an int$"):
        symcost.trace(42, (1, 3))
    with pytest.raises(UsageError, match="a factory of modules takes config="):
        symcost.trace(lambda width: None, (1, 3))


def test_model_of_something_not_a_target_name_says_what_to_call():
    import torch

    import symcost
    from symcost.errors import UsageError

    # were AttributeErrors ("'Linear' object has no attribute 'strip'", "'tuple' object has no attribute 'replace'")
    with pytest.raises(UsageError, match=r"not a Linear: an nn.Module goes to symcost.trace\(module, shape\)$"):
        symcost.model(torch.nn.Linear(2, 2), "1x2")
    with pytest.raises(UsageError, match="not an int$"):
        symcost.model(42, "1x2")
    with pytest.raises(UsageError, match=r"a tuple of integers and symbol names, not \(1, 3, True\)$"):
        symcost.model(FIXTURE_NET, (1, 3, True))
    # a tuple as trace takes it is the string's shape: 8 x 27 MACs per stem output pixel (4 x 4 at 8 x 8), head 40
    assert symcost.model(FIXTURE_NET, (1, 3, 8, 8), use_cache=False).total("macs")["macs"] == 216 * 16 + 40
