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
