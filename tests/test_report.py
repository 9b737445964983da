"""`symcost report`: the interactive page.  Its JavaScript (formulas compiled to BigInt expressions, and the page's
own script) runs in node against a minimal DOM stand-in, and in headless chromium where installed; the page's totals
must equal `symcost model --at` (the NumPy evaluation of the cached summary) exactly, at sizes of every residue."""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import sympy

from symcost.export.javascript import RUNTIME, js_expression

FIXTURE_NET = str(Path(__file__).parent / "fixtures" / "my_models.py") + ":build_net"
NODE = shutil.which("node") or shutil.which("nodejs")
needs_node = pytest.mark.skipif(NODE is None, reason="node is not installed: the page's JavaScript is not run")
H = sympy.Symbol("H", integer=True, positive=True)


def cli(*args, cache):
    r = subprocess.run([sys.executable, "-m", "symcost.cli", *map(str, args)], capture_output=True, text=True,
                       env={**os.environ, "SYMCOST_CACHE_DIR": str(cache)})
    return r


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("report-cache")


def _node(script: str) -> str:
    r = subprocess.run([NODE, "-e", script], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


# ------------------------------------------------------------------------------------------ the JS printer

def test_printed_expressions_have_no_float_arithmetic():
    js = js_expression(sympy.floor(H / 2 - sympy.Rational(1, 2)) + 1)
    # the floor of (H - 1)/2, as BigInt floor division; no '/' between numbers, no Math.floor on floats
    assert js == "(1n + fl((-1n + (1n*s.H)), 2n))" and "Math." not in js
    assert js_expression(3 * H * (H - 1) / 2).startswith("ex(")           # exact division, checked at run time
    with pytest.raises(Exception, match="cannot compile"):
        js_expression(sympy.sin(H))


@needs_node
def test_printed_expressions_equal_sympy_at_every_residue():
    half = sympy.ceiling((H - 3) / 2)
    exprs = [
        sympy.floor(H / 2 - sympy.Rational(1, 2)) + 1,                          # conv 7x7/2 pad 3
        sympy.floor((sympy.floor((H - 1) / 2) + 1 - 1) / 2) + 1,                # nested
        3 * H * (H - 1) / 2,
        sympy.Piecewise((half, H + 1 <= 2 * half), (half + 1, True)),           # a ceil-mode pool's size
        sympy.Max(H - 5, 1) * sympy.Min(H, 7),
        (H / 3 + sympy.Rational(2, 3)) ** 2 * 9,
        10**30 * H**3 + 1,                                                       # far past 2**53
        sympy.ceiling(-H / 4),
    ]
    points = [1, 2, 3, 7, 31, 32, 33, 224, 225, 10**12 + 1]
    script = RUNTIME + "const out = [];\n" + "".join(
        f"{{ const s = {{H: {h}n}}; out.push([{', '.join(f'String({js_expression(e)})' for e in exprs)}]); }}\n"
        for h in points) + "console.log(JSON.stringify(out));"
    got = json.loads(_node(script))
    for h, row in zip(points, got):
        assert row == [str(e.subs(H, h)) for e in exprs], h


# ------------------------------------------------------------------------------------------------ the page

_DOM = """
const made = {};
function mk() {
  const e = {textContent: "", innerHTML: "", className: "", value: "", style: {}, listeners: {}, kids: null,
             addEventListener(t, f) { this.listeners[t] = f; }, appendChild() {},
             insertRow() { return mk(); }, insertCell() { return mk(); }};
  Object.defineProperty(e, "children", {get() { if (!this.kids) this.kids = Array.from({length: 8}, mk);
                                                return this.kids; }});
  return e;
}
const el = (id) => (made[id] = made[id] || mk());
global.document = {getElementById: el, querySelectorAll: () => [], createElement: mk};
"""


def _page_parts(page: str):
    data = re.search(r'<script type="application/json" id="data">(.*?)</script>', page, re.S).group(1)
    script = re.findall(r"<script>\n(.*?)</script>", page, re.S)[-1]
    return data.replace("<\\/", "</"), script


def run_page(page: str, steps: list) -> list:
    """Run the page's script in node with a DOM stand-in; each step sets inputs, fires their events, reads the
    status and the totals."""
    data, script = _page_parts(page)
    initial = dict(re.findall(r'id="n-(\w+)" min="1" value="(\d+)"', page))
    sel = re.search(r"<option selected>(\w+)</option>", page).group(1)
    setup = (_DOM + f"el('data').textContent = {json.dumps(data)};\n"
             + "".join(f"el('n-{k}').value = '{v}'; el('r-{k}').value = '{v}';\n" for k, v in initial.items())
             + f"el('convention').value = '{sel}';\n")
    read = ("const snap = () => ({status: el('status').textContent, "
            "total: Object.fromEntries(['params', 'buffers', 'macs', 'flops', 'reads', 'writes']"
            ".map((m) => [m, el('total-' + m).textContent.replace(/,/g, '')]))});\nconst out = [snap()];\n")
    acts = ""
    for step in steps:
        for name, value in step.items():
            if name == "convention":
                acts += f"el('convention').value = '{value}'; el('convention').listeners.change();\n"
            else:
                acts += f"el('n-{name}').value = '{value}'; el('n-{name}').listeners.input();\n"
        acts += "out.push(snap());\n"
    return json.loads(_node(setup + script + "\n" + read + acts + "console.log(JSON.stringify(out));"))


def _model_at(target, shape, at: list, convention, cache):
    r = cli("model", target, "--input", shape, *[a for x in at for a in ("--at", x)], "--convention", convention,
            "--json", cache=cache)
    assert r.returncode == 0, r.stderr
    return [{"values": e["values"], **e["total"]} for e in json.loads(r.stdout)["evaluations"]]


@needs_node
def test_resnet18_page_totals_equal_the_cli_at_two_slider_positions(cache, tmp_path):
    out = tmp_path / "r18.html"
    r = cli("report", "torchvision:resnet18", "--input", "1x3xRxR", "--out", out, "--at", "R=224", cache=cache)
    assert r.returncode == 0, r.stderr
    page = out.read_text()
    # self-contained: no script, style or font from elsewhere
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page) and "@import" not in page
    snaps = run_page(page, [{"R": 225}, {"convention": "torch"}, {"R": 97}])
    expect = {(e["values"]["R"], c): e for c in ("flops", "torch")
              for e in _model_at("torchvision:resnet18", "1x3xRxR", ["R=224,225,97"], c, cache)}
    for snap, (size, conv) in zip(snaps, [(224, "flops"), (225, "flops"), (225, "torch"), (97, "torch")]):
        assert snap["status"] == f"exact values at R={size}", snap
        for m in ("params", "macs", "flops"):
            assert int(snap["total"][m]) == expect[size, conv][m], (size, conv, m)
    # resnet18 at 224, from torchvision's model card: 11,689,512 params, 1.814 GMACs
    assert snaps[0]["total"]["params"] == "11689512" and snaps[0]["total"]["macs"] == "1814073344"


@needs_node
def test_page_refuses_sizes_outside_the_domain(cache, tmp_path):
    out = tmp_path / "net.html"
    r = cli("report", FIXTURE_NET, "--input", "1x3xHxW", "--out", out, "--at", "H=33", "--at", "W=8", cache=cache)
    assert r.returncode == 0, r.stderr
    snaps = run_page(out.read_text(), [{"H": 1}, {"H": 5}, {"W": "x"}])
    # conv 3x3/2 pad 1 then a 3/2 ceil-mode pool: H=1 gives a 1-pixel map the pool makes 0 (the CLI refuses too)
    assert snaps[1]["status"].startswith("refused: the model cannot take H=1, W=8: a tensor size ")
    err = cli("model", FIXTURE_NET, "--input", "1x3xHxW", "--at", "H=1", "--at", "W=8", cache=cache)
    assert err.returncode == 2 and "the model cannot take H=1, W=8" in err.stderr
    expect = {e["values"]["H"]: e for e in _model_at(FIXTURE_NET, "1x3xHxW", ["H=33,5", "W=8"], "flops", cache)}
    for snap, h in ((snaps[0], 33), (snaps[2], 5)):
        assert snap["status"] == f"exact values at H={h}, W=8"
        assert {m: int(snap["total"][m]) for m in ("params", "macs", "flops")} == {
            m: expect[h][m] for m in ("params", "macs", "flops")}
    assert snaps[3]["status"] == "W must be a positive integer"


def test_report_errors_are_one_line(cache, tmp_path):
    r = cli("report", FIXTURE_NET, "--input", "1x3x32x32", "--out", tmp_path / "x.html", cache=cache)
    assert r.returncode == 2 and "report needs symbols in --input" in r.stderr and "Traceback" not in r.stderr
    r = cli("report", FIXTURE_NET, "--input", "1x3xHxW", "--out", tmp_path / "x.html", "--range", "H=9:3",
            cache=cache)
    assert r.returncode == 2 and "MAX must be above MIN" in r.stderr
    r = cli("report", "--help", cache=cache)
    text = " ".join(r.stdout.split())
    assert r.returncode == 0 and "--range NAME=MIN:MAX" in text and "needs no network" in text
    assert "symcost report torchvision:resnet50 --input 1x3xRxR --out report.html" in text


@pytest.mark.skipif(not (shutil.which("chromium") or shutil.which("chromium-browser")),
                    reason="chromium is not installed: the page is not run in a real browser")
def test_page_in_headless_chromium(cache, tmp_path):
    """The real page in a real browser, at two slider positions (its starting value set by --at)."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    expect = {e["values"]["R"]: e for e in _model_at("torchvision:resnet18", "1x3xRxR", ["R=225,97"], "flops", cache)}
    for size in (225, 97):
        out = tmp_path / f"r18-{size}.html"
        assert cli("report", "torchvision:resnet18", "--input", "1x3xRxR", "--out", out, "--at", f"R={size}",
                   cache=cache).returncode == 0
        r = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", out.as_uri()],
                           capture_output=True, text=True, timeout=120)
        dom = r.stdout
        status = re.search(r'<p id="status"[^>]*>([^<]*)</p>', dom).group(1)
        assert status == f"exact values at R={size}", status
        for m in ("params", "macs", "flops"):
            cell = re.search(rf'id="total-{m}">([^<]*)<', dom).group(1)
            assert int(cell.replace(",", "")) == expect[size][m], (size, m)
