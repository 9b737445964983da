"""The interactive report: one self-contained HTML page (no network, no script from elsewhere) where a slider per
input symbol re-evaluates every layer's cost and the totals in the browser, exactly; the whole model's formulas
(params, MACs, FLOPs under the chosen convention) head the page.

Each distinct formula of the derivation is compiled once to a BigInt JavaScript expression
(``symcost.export.javascript``); rows refer to formulas by index.  Shown formulas are MathML (rendered by the
browser itself) in the readable form of every other output: nested floors named once (``R_1 = …``), like terms
collected.  A size outside the model's domain (some tensor dimension below 1) is refused on the page, naming the
size that fails, as the CLI refuses it.
"""
from __future__ import annotations

import json
from html import escape

import sympy

from ..cost import as_expr
from ..model import shown_condition, shown_size
from .formulas import expand_back, readable, text
from .html import mathml
from .javascript import RUNTIME, js_expression

METRICS = ("params", "buffers", "macs", "reads", "writes")


class _Formulas:
    """Distinct expressions, numbered in order of first use."""

    def __init__(self):
        self.index: dict = {}

    def __call__(self, expr) -> int:
        expr = as_expr(expr)
        return self.index.setdefault(expr, len(self.index))

    @property
    def exprs(self) -> list:
        return list(self.index)


def report_data(mc, initial: dict, ranges: dict) -> tuple[dict, list, list]:
    """``(data for the page, JS expressions, MathML per formula)``."""
    from ..conventions import CONVENTIONS

    f = _Formulas()
    rows = []
    for r in mc.rows:
        c = r.cost
        rows.append({
            "name": r.label, "layer": r.layer, "family": c.family or r.layer,
            "shape": [f(d) for d in c.output_shape],
            **{m: f(getattr(c, m)) for m in METRICS},
            "flops": {n: f(conv.count_row(r)) for n, conv in CONVENTIONS.items()},
        })
    domain = [(f(d), shown_size(d, text)) for d in mc.domain]
    guards = [(f(sympy.Piecewise((1, g), (0, True))), shown_condition(g)) for g in getattr(mc, "guards", ())]
    totals = {"params": f(mc.total().params), "macs": f(mc.total().macs),
              "flops": {n: f(mc.total(conv).flops) for n, conv in CONVENTIONS.items()}}
    exprs = f.exprs
    sizes = [d for r in mc.rows for d in r.cost.output_shape] + list(mc.domain)
    shown, where = readable(exprs, sizes)
    names = [{"name": str(k), "mathml": mathml(sympy.Eq(k, v, evaluate=False)),
              "value": f(expand_back(k, where))} for k, v in where.items()]
    exprs = f.exprs                                          # the where values appended some
    shown += [None] * (len(exprs) - len(shown))
    symbols = [str(s) for s in mc.symbols]
    data = {
        "target": mc.target,
        "input_shape": [str(d) for d in mc.input_shape],
        "symbols": [{"name": s, "value": initial[s], "min": ranges[s][0], "max": ranges[s][1]} for s in symbols],
        "conventions": {n: c.summary for n, c in CONVENTIONS.items()},
        "rows": rows,
        "totals": totals,
        "domain": domain,
        "guards": guards,
        "where": names,
        "uncovered": mc.uncovered,
        "notes": mc.notes,
    }
    js = [js_expression(e) for e in exprs]
    # a constant formula (a linear layer's) is shown too: the cell says what the value is, not that it is missing
    math = [mathml(e) if e is not None else "" for e in shown]
    return data, js, math


_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.3em; } .controls label { display: inline-block; margin-right: 2em; }
input[type=range] { width: 22em; vertical-align: middle; } input[type=number] { width: 7em; }
table { border-collapse: collapse; } th, td { padding: 2px 8px; border-bottom: 1px solid #ddd; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; } code { font-size: 0.95em; }
#status.refused { color: #b00; font-weight: bold; } #totals td { font-size: 1.1em; }
.bar { background: #4a7ebb; height: 1em; display: inline-block; vertical-align: middle; }
#chart td { border: none; } .muted { color: #777; }
"""

_SCRIPT = """
const D = JSON.parse(document.getElementById("data").textContent);
const $ = (id) => document.getElementById(id);
const fmt = (v) => v.toLocaleString("en-US");
function values() {
  const s = {};
  for (const sym of D.symbols) {
    const t = $("n-" + sym.name).value.trim();
    if (!/^[0-9]+$/.test(t)) return [null, sym.name + " must be a positive integer"];
    s[sym.name] = BigInt(t);
    if (s[sym.name] < 1n) return [null, sym.name + " must be at least 1"];
  }
  return [s, null];
}
function update() {
  const [s, bad] = values();
  const conv = $("convention").value;
  $("convention-summary").textContent = D.conventions[conv];
  $("formula-flops").innerHTML = M[D.totals.flops[conv]] || "";
  const refuse = (msg) => {
    $("status").textContent = msg; $("status").className = "refused";
    for (const el of document.querySelectorAll(".v")) el.textContent = "refused";
    // the family chart is drawn from values: at a refused size there are none, so none is left standing
    const chart = $("chart"); chart.innerHTML = "";
    chart.insertRow().insertCell().textContent = "refused";
  };
  if (bad) return refuse(bad);
  const given = D.symbols.map((x) => x.name + "=" + s[x.name]).join(", ");
  for (const [i, text] of D.domain) {
    const v = F[i](s);
    if (v < 1n) return refuse("refused: the model cannot take " + given + ": a tensor size " + text + " becomes " + v);
  }
  for (const [i, text] of D.guards) {
    if (F[i](s) < 1n) return refuse("refused: " + given + " is outside the formula's domain: it holds where " + text +
                                    " (a size guard of the model's forward; symcost model --at traces it on its own)");
  }
  $("status").textContent = "exact values at " + given; $("status").className = "";
  const total = {params: 0n, buffers: 0n, macs: 0n, flops: 0n, reads: 0n, writes: 0n};
  const families = {};
  D.rows.forEach((r, k) => {
    const v = {params: F[r.params](s), buffers: F[r.buffers](s), macs: F[r.macs](s), flops: F[r.flops[conv]](s),
               reads: F[r.reads](s), writes: F[r.writes](s)};
    for (const m in total) total[m] += v[m];
    families[r.family] = (families[r.family] || 0n) + v.flops;
    const tr = $("row-" + k);
    tr.children[2].textContent = r.shape.map((i) => F[i](s)).join("\u00d7");
    tr.children[3].textContent = fmt(v.params);
    tr.children[4].textContent = fmt(v.macs);
    tr.children[5].textContent = fmt(v.flops);
    tr.children[6].innerHTML = M[r.flops[conv]] || "";
  });
  for (const m in total) $("total-" + m).textContent = fmt(total[m]);
  D.where.forEach((w, k) => { $("where-" + k).textContent = " = " + F[w.value](s); });
  const chart = $("chart"); chart.innerHTML = "";
  const fams = Object.entries(families).sort((a, b) => (b[1] > a[1] ? 1 : b[1] < a[1] ? -1 : 0));
  for (const [name, v] of fams) {
    const share = total.flops > 0n ? Number((v * 100000n) / total.flops) / 1000 : 0;
    const tr = chart.insertRow();
    tr.insertCell().textContent = name;
    const bar = tr.insertCell(); const b = document.createElement("span");
    b.className = "bar"; b.style.width = (share * 4) + "px"; bar.appendChild(b);
    const c = tr.insertCell(); c.className = "n"; c.textContent = fmt(v) + " (" + share.toFixed(1) + " %)";
  }
}
for (const sym of D.symbols) {
  const r = $("r-" + sym.name), n = $("n-" + sym.name);
  r.addEventListener("input", () => { n.value = r.value; update(); });
  n.addEventListener("input", () => { if (/^[0-9]+$/.test(n.value.trim())) r.value = n.value.trim(); update(); });
}
$("convention").addEventListener("change", update);
update();
"""


def script_json(value) -> str:
    """JSON to put inside a ``<script>`` element: ``<``, ``>`` and ``&`` as ``\\u`` escapes (the same strings to a
    JSON or JavaScript parser), so no name can close the element or open an HTML comment in it (``<!--<script>``
    would make the parser swallow the page's script), whatever it holds; non-ASCII is escaped by ``json.dumps``."""
    return json.dumps(value).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def report_html(mc, initial: dict, ranges: dict, convention: str = "flops") -> str:
    """The page.  ``initial``: a value per symbol name; ``ranges``: (min, max) per symbol name for its slider."""
    data, js, math = report_data(mc, initial, ranges)
    payload = script_json(data)
    functions = ",\n".join(f"(s) => {e}" for e in js)
    title = f"symcost: {mc.target} on {'x'.join(data['input_shape'])}"
    controls = "".join(
        f'<label>{escape(s["name"])} <input type="range" id="r-{escape(s["name"])}" min="{s["min"]}" '
        f'max="{s["max"]}" value="{s["value"]}"> <input type="number" id="n-{escape(s["name"])}" min="1" '
        f'value="{s["value"]}"></label>' for s in data["symbols"])
    options = "".join(f'<option{" selected" if n == convention else ""}>{escape(n)}</option>'
                      for n in data["conventions"])
    body_rows = "".join(
        f'<tr id="row-{k}"><td><code>{escape(r["name"])}</code></td><td>{escape(r["layer"])}</td>'
        '<td class="v"></td><td class="n v"></td><td class="n v"></td><td class="n v"></td><td></td></tr>'
        for k, r in enumerate(data["rows"]))
    totals = "".join(f'<th class="n">{m}</th>' for m in ("params", "buffers", "MACs", "FLOPs", "reads", "writes"))
    total_cells = "".join(f'<td class="n v" id="total-{m}"></td>'
                          for m in ("params", "buffers", "macs", "flops", "reads", "writes"))
    where = "".join(f'<li>{w["mathml"]}<span id="where-{k}" class="v"></span></li>'
                    for k, w in enumerate(data["where"]))
    extra = ""
    if mc.uncovered:
        extra += ("<p><b>Uncovered</b> (not costed, not counted): "
                  + escape(", ".join(f"{k} x{v}" for k, v in mc.uncovered.items())) + "</p>")
    extra += "".join(f'<p class="muted">note: {escape(n)}</p>' for n in mc.notes)
    math_json = script_json(math)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>
<style>{_STYLE}</style></head>
<body>
<h1>{escape(title)}</h1>
<p class="muted">Exact closed-form costs from one symbolic derivation; every number below is recomputed in this page,
in integer arithmetic, as you move a slider. MACs are multiply-accumulates; reads and writes count tensor
elements.</p>
<div class="controls">{controls}
<label>FLOPs convention <select id="convention">{options}</select></label></div>
<p class="muted" id="convention-summary"></p>
<p id="status"></p>
<table id="totals"><tr>{totals}</tr><tr>{total_cells}</tr></table>
<h2>Whole model</h2>
<table id="formulas"><tr><th>params</th><td id="formula-params">{math[data["totals"]["params"]]}</td></tr>
<tr><th>MACs</th><td id="formula-macs">{math[data["totals"]["macs"]]}</td></tr>
<tr><th>FLOPs</th><td id="formula-flops">{math[data["totals"]["flops"][convention]]}</td></tr></table>
<h2>FLOPs by layer family</h2>
<table id="chart"></table>
<h2>Layers</h2>
<table id="layers"><thead><tr><th>layer</th><th>type</th><th>output</th><th class="n">params</th>
<th class="n">MACs</th><th class="n">FLOPs</th><th>FLOPs formula</th></tr></thead><tbody>{body_rows}</tbody></table>
{"<h2>Named sizes</h2><ul>" + where + "</ul>" if where else ""}
{extra}
<script type="application/json" id="data">{payload}</script>
<script>
"use strict";
{RUNTIME}
const F = [
{functions}
];
const M = {math_json};
{_SCRIPT}
</script>
</body></html>
"""
