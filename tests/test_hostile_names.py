"""Module and target names are data, never markup: through every renderer (the report page, notebook HTML,
Markdown, LaTeX) a hostile name comes out as the same text, and the document around it stays intact.

Checked with real parsers: the HTML with ``html.parser`` (the page's scripts intact, its JSON data the same
names), the Markdown with markdown-it's GitHub tables, the LaTeX with pdflatex when it is installed."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections import OrderedDict
from html.parser import HTMLParser

import pytest
from torch import nn

from symcost.conventions import CONVENTIONS
from symcost.errors import UsageError
from symcost.export import render
from symcost.export.html import model_html
from symcost.export.report import report_html
from symcost.export.tables import layer_table, model_table
from symcost.tracing import trace

#: names torch accepts for submodules (anything without a dot), each aimed at one renderer
HOSTILE = [
    "<!--<script>",                  # an HTML comment then a script tag: swallows the page's script (JSON block)
    "</script><b>bold</b>",
    "a`b|c",                         # a backtick ends a Markdown code span, a bar a table cell
    "``",
    "*em* _u_ [l](http://x) &amp;",  # Markdown emphasis, link, entity
    "中文😀",                         # no glyph under pdflatex
    "blank\n\nline",                 # a blank line ends a LaTeX paragraph, a newline a Markdown row
    "x}y{z\\relax%#$&^~_",           # LaTeX specials
]
HOSTILE_TARGET = "<!--<script>`|}{%.py:build"
#: the targets of a comparison table (one row each)
MODEL_TARGETS = [HOSTILE_TARGET, "a`b|c 中文😀 blank\n\nline.py:m"]


@pytest.fixture(scope="module")
def model_cost():
    model = nn.Sequential(OrderedDict((name, nn.Linear(4, 4)) for name in HOSTILE))
    mc = trace(model, (1, "L", 4))
    mc.target = HOSTILE_TARGET
    assert [r.name for r in mc.rows] == HOSTILE
    return mc


@pytest.fixture(scope="module")
def tables(model_cost):
    conv = CONVENTIONS["flops"]
    return {
        "layers": layer_table(model_cost, HOSTILE_TARGET, conv, {"L": 5}, symbolic=True),
        "models": model_table([(t, model_cost) for t in MODEL_TARGETS], conv, {"L": 5}, symbolic=True),
    }


class Parsed(HTMLParser):
    """Every element's start tag, the text of each ``<script>``, ``<code>`` and table cell."""

    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.tags, self.scripts, self.codes, self.cells, self.paragraphs = [], [], [], [], []
        self._open: list = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag in ("script", "code", "td", "th", "p"):
            self._open.append([tag, ""])

    def handle_endtag(self, tag):
        if self._open and self._open[-1][0] == tag:
            _, text = self._open.pop()
            {"script": self.scripts, "code": self.codes, "p": self.paragraphs}.get(tag, self.cells).append(text)

    def handle_data(self, data):
        for entry in self._open:
            entry[1] += data


def test_report_page_keeps_its_scripts_and_its_names(model_cost):
    page = report_html(model_cost, {"L": 5}, {"L": (1, 64)})
    parsed = Parsed(page)
    scripts = [attrs for tag, attrs in parsed.tags if tag == "script"]
    assert scripts == [{"type": "application/json", "id": "data"}, {}]   # the data block and the program, no more
    assert "<" not in parsed.scripts[0] and ">" not in parsed.scripts[0]     # nothing in it can end or hide it
    data = json.loads(parsed.scripts[0])
    assert [r["name"] for r in data["rows"]] == HOSTILE and data["target"] == HOSTILE_TARGET
    assert parsed.scripts[1].rstrip().endswith("update();")   # the program reached its last statement
    assert parsed.codes == HOSTILE                             # each name shown as its text
    assert not any(tag == "b" for tag, _ in parsed.tags)       # no markup from a name


def test_notebook_html_shows_names_as_text(model_cost):
    parsed = Parsed(model_html(model_cost))
    assert parsed.codes == HOSTILE
    assert not any(tag in ("b", "script") for tag, _ in parsed.tags)


def _visible(name: str) -> str:
    """A name as the Markdown table shows it: control characters as escapes (a newline would end the row)."""
    return name.replace("\n", "\\n")


@pytest.mark.parametrize("kind", ["layers", "models"])
def test_markdown_cells_hold_the_names(tables, kind):
    from markdown_it import MarkdownIt

    text = render(tables[kind], "markdown")
    html = MarkdownIt("commonmark").enable("table").render(text)
    parsed = Parsed(html)
    assert not any(tag in ("b", "em", "a", "script", "img") for tag, _ in parsed.tags), html
    ncols = len([line for line in text.splitlines() if line.startswith("|")][0].split(" | "))
    rows = [parsed.cells[i:i + ncols] for i in range(0, len(parsed.cells), ncols)]
    assert all(len(r) == ncols for r in rows)   # no cell split by a bar in a name
    names = [r[0] for r in rows[1:-1 if kind == "layers" else None]]   # (the header row, the total row)
    want = HOSTILE if kind == "layers" else MODEL_TARGETS
    assert names == [_visible(n) for n in want], names
    assert parsed.codes == ["flops"] + [_visible(n) for n in want]   # the caption's convention, then the names
    if kind == "layers":   # the caption names the target, as its text
        assert HOSTILE_TARGET in parsed.paragraphs[0], parsed.paragraphs[0]


def _latex_ok(tex: str) -> None:
    """What pdflatex needs, checked without it: ASCII only, no blank line, braces balanced outside escapes and
    comments."""
    assert tex.isascii(), [ch for ch in tex if not ch.isascii()]
    tex = re.sub(r"(?<!\\)%.*", "", tex)
    body = tex.split("\\begin{document}")[-1]
    assert "\n\n" not in body.strip()
    depth = 0
    for m in re.finditer(r"\\.|[{}]", tex):
        depth += {"{": 1, "}": -1}.get(m.group(), 0)
        assert depth >= 0
    assert depth == 0


@pytest.mark.parametrize("kind", ["layers", "models"])
def test_latex_prints_every_name(tables, kind, tmp_path):
    tex = render(tables[kind], "latex", standalone=True)
    _latex_ok(tex)
    assert "[U+4E2D][U+6587][U+1F600]" in tex and "blank[U+000A][U+000A]line" in tex
    if shutil.which("pdflatex") is None:
        pytest.skip("pdflatex is not installed: checked as text only")
    (tmp_path / "doc.tex").write_text(tex)
    r = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-3000:]
    log = (tmp_path / "doc.log").read_text(errors="replace")
    assert "Missing character" not in log


def test_latex_refuses_a_label_that_is_not_a_key(tables):
    for label in ("a}b", "a b", "a\\b", "x{", "t\u00e9", ""):
        with pytest.raises(UsageError, match="--label"):
            render(tables["layers"], "latex", label=label)
    assert "\\label{tab:my-net_1.2/x+y}" in render(tables["layers"], "latex", label="tab:my-net_1.2/x+y")


def test_latex_caption_with_blank_lines_stays_one_paragraph(tables):
    tex = render(tables["layers"], "latex", caption="first\n\nsecond", standalone=True)
    _latex_ok(tex)
    assert "first second" in tex


# ---- --out names a file: a folder is one line, exit 2 -----------------------------------------------------------

NET = "tests/fixtures/my_models.py:build_net"


@pytest.mark.parametrize("argv", [
    ["table", NET, "--input", "1x3x16x16", "--out", "{dir}"],
    ["table", NET, "--input", "1x3x16x16", "--out", "{dir}/new/"],
    ["plot", NET, "--input", "1x3xRxR", "--range", "R=16:32:16", "--out", "{dir}"],
    ["plot", NET, "--input", "1x3xRxR", "--range", "R=16:32:16", "--out", "{dir}/folder.png"],
    ["report", NET, "--input", "1x3xRxR", "--out", "{dir}"],
])
def test_out_naming_a_folder_is_one_line(argv, tmp_path, capsys, monkeypatch):
    from symcost.cli import main

    monkeypatch.setenv("SYMCOST_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "folder.png").mkdir()
    code = main([a.replace("{dir}", str(tmp_path)) for a in argv])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "is a folder, not a file" in err, err


def test_a_plot_labels_a_model_by_its_name(model_cost, tmp_path):
    # matplotlib reads $...$ as math: a name holding one would fail to parse (or be typeset as a formula)
    from symcost import plot

    out = tmp_path / "names.svg"
    plot.plot_models([("net$\\frac$.py:build", model_cost), ("a$b$c", model_cost)], "L", list(range(1, 9)), "macs",
                     "flops", out)
    text = out.read_text()
    assert "net$\\frac$.py:build" in text and "a$b$c" in text   # the names, character for character


def test_latex_refuses_a_caption_whose_braces_do_not_pair(tables):
    for caption in ("a}b", "{open", "\\textbf{x}}"):
        with pytest.raises(UsageError, match="--caption"):
            render(tables["layers"], "latex", caption=caption)
    _latex_ok(render(tables["layers"], "latex", caption="a \\{ set \\} and \\textbf{bold}", standalone=True))
