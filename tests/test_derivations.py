"""derivations/: every derivation runs, states the seeds' key numbers, and derivations/out/ is up to date."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # derivations/ is not part of the installed package
    sys.path.insert(0, str(ROOT))

from derivations import bn_folding, build, seed001_keras_table, seed004_worked_example  # noqa: E402
from derivations._doc import DerivationError, equal, same  # noqa: E402


@pytest.fixture(scope="module")
def measured():
    return bn_folding.measure()


@pytest.fixture(scope="module")
def pages(measured):
    return build.render_all(measured)


def forms(n: int) -> tuple[str, ...]:
    """How an integer may be printed: 327680, 327,680 (tables, text) or 327{,}680 (inside math)."""
    return str(n), f"{n:,}", f"{n:,}".replace(",", "{,}")


def has(md: str, n: int) -> bool:
    return any(f in md for f in forms(n))


def row(md: str, first_cell: str) -> str:
    """The Markdown table row whose first cell is ``first_cell``."""
    hits = [line for line in md.splitlines() if line.startswith(f"| {first_cell} |")]
    assert len(hits) == 1, (first_cell, hits)
    return hits[0]


def section(md: str, number: int) -> str:
    """The text of section ``## {number}.`` up to the next section."""
    return md.split(f"\n## {number}.")[1].split("\n## ")[0]


def cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip("|").split("|")]


# ---- the committed pages cannot drift ------------------------------------------------------------------

def test_committed_pages_equal_a_fresh_regeneration(pages):
    assert set(pages) == {f"{m}.md" for m in build.MODULES} | {"README.md"}
    assert build.stale(pages) == [], "run `python -m derivations` and commit derivations/out/"


def test_every_page_is_nonempty_markdown_with_math(pages):
    for name, md in pages.items():
        assert md.startswith("# ") and md.endswith("\n"), name
        if name != "README.md":
            assert "$" in md, name  # LaTeX math, inline or display


# each form renders every page again (minutes on a loaded machine; the in-process ``pages`` check already compares
# them with out/): the default run takes one form, the README's, and SYMCOST_FULL_TESTS=1 both (conftest.py)
@pytest.mark.sampled(every=2)
@pytest.mark.parametrize("how", [["-m", "derivations", "--check"], ["derivations/build.py", "--check"]],
                         ids=["python -m derivations", "derivations/build.py"])
def test_the_regenerate_command_runs(how):
    done = subprocess.run([sys.executable, *how], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "max abs diff" in done.stdout  # the measured fold differences are printed, not committed


# ---- seed 000 ---------------------------------------------------------------------------------------------

def test_bn_inference(pages):
    md = pages["bn_inference.md"]
    # alpha = gamma/sqrt(var + eps), and the intercept beta - alpha*mu, read off expand(y)
    assert r"\alpha &= \frac{\gamma}{\sqrt{\epsilon + \sigma^{2}}}" in md
    assert r"y = \alpha\, x + (\beta - \alpha\mu)" in md
    # one mul and one add per element, H*W elements per channel, C channels, N = 1
    assert r"\text{mul} &= C H W" in md and r"\text{add} &= C H W" in md
    # exact/flops: mul + add = 2*H*W*C; mults: H*W*C; macs and torch: 0
    assert "| `exact` | $2 C H W$ |" in md and "| `mults` | $C H W$ |" in md
    assert "| `macs` | $0$ |" in md and "| `torch` | $0$ |" in md
    # conv without bias: Hout*Wout*Cout*(Kh*Kw*Cin - 1) additions (a length-n sum has n - 1)
    assert r"C_{out} H_{out} W_{out} \left(C_{in} K_{h} K_{w} - 1\right)" in md
    # BN/conv multiplications = HWC / (Hout Wout Cout Kh Kw Cin) with H=Hout...: 1/(Kh Kw Cin); 3*3*64 = 576
    assert r"\frac{1}{C_{in} K_{h} K_{w}}" in md and "$1/576$" in md
    # folded: nothing left; a bias-free conv gains one bias add per output: exact saving Hout*Wout*Cout
    assert "0 under every convention" in md
    assert r"\Delta_{\text{exact}} = C_{out} H_{out} W_{out}" in md


# ---- seed 002 ---------------------------------------------------------------------------------------------

def test_conv_fc_conventions(pages):
    md = pages["conv_fc_conventions.md"]
    conv = section(md, 3)
    # per output, n = Kh*Kw*Cin: exact n + (n-1) = 2n - 1 without bias, +1 bias = 2n; flops 2n (+1); macs n
    assert cells(row(conv, "`exact`"))[1:] == ["$2 C_{in} K_{h} K_{w} - 1$", "$2 C_{in} K_{h} K_{w}$"]
    assert cells(row(conv, "`flops`"))[1:] == ["$2 C_{in} K_{h} K_{w}$", "$2 C_{in} K_{h} K_{w} + 1$"]
    assert cells(row(conv, "`macs`"))[1:] == ["$C_{in} K_{h} K_{w}$", "$C_{in} K_{h} K_{w}$"]
    # FC: the same with n = F_in
    assert cells(row(section(md, 4), "`exact`"))[1:] == ["$2 F_{in} - 1$", "$2 F_{in}$"]
    # params Cout*Kh*Kw*Cin + Cout; FC Fout*Fin + Fout
    assert r"\text{params} = C_{in} C_{out} K_{h} K_{w} + C_{out}" in md
    assert r"\text{params} = F_{in} F_{out} + F_{out}" in md
    numbers = section(md, 5)
    # 16*28*28 = 12544 outputs of length 5*5*3 = 75; FC: 64 outputs of length 128
    # macs: 12544*75 = 940800 | 128*64 = 8192
    assert cells(row(numbers, "`macs`"))[1:] == ["940,800", "940,800", "8,192", "8,192"]
    # flops: 2*940800 = 1881600, + 12544 bias = 1894144 | 2*8192 = 16384, + 64 = 16448
    assert cells(row(numbers, "`flops`"))[1:] == ["1,881,600", "1,894,144", "16,384", "16,448"]
    # exact: (2*75 - 1)*12544 = 1869056, 2*75*12544 = 1881600 | (2*128 - 1)*64 = 16320, 2*128*64 = 16384
    assert cells(row(numbers, "`exact`"))[1:] == ["1,869,056", "1,881,600", "16,320", "16,384"]
    # mults = MACs; torch = 2*MACs, bias ignored
    assert cells(row(numbers, "`mults`"))[1:] == ["940,800", "940,800", "8,192", "8,192"]
    assert cells(row(numbers, "`torch`"))[1:] == ["1,881,600", "1,881,600", "16,384", "16,384"]
    # params: 16*5*5*3 + 16 = 1216, 64*128 + 64 = 8256
    assert has(numbers, 1216) and has(numbers, 8256)


# ---- seed 004 ---------------------------------------------------------------------------------------------

def test_seed004_worked_example(pages):
    md = pages["seed004_worked_example.md"]
    # height floor((130 - 3 - 1)/2) + 1 = 64; width floor((40 - 9 - 1)/8) + 1 = floor(15/4) + 1 = 4
    assert r"\left\lfloor \frac{130 - 3 - 1}{2} \right\rfloor + 1 = 64" in md
    assert r"\lfloor \frac{15}{4} \rfloor + 1 = 4" in md
    # the seed's (40 - 10)/8 + 1 = 19/4 = 4.75, floored to 4
    assert r"\frac{19}{4} = 4.75" in md and "**floored**" in md
    # params: 32*1*4*10 = 1280 (no bias) + 2*32 = 64 (gamma, beta) = 1344
    assert "## 2. Parameters: 1280 + 64 = 1344" in md
    # conv: 32*64*4 = 8192 outputs x 4*10*1 = 40 multiplications = 327680
    assert r"32 \cdot 64 \cdot 4 \cdot 4 \cdot 10 = 8{,}192 \cdot 40 = 327{,}680" in md
    # the seed's 312320 = 2^10 * 5 * 61 = 32*61*4*40 (61 rows, not 64); 312320/(32*64*4) = 305/8
    assert "an arithmetic slip" in md
    assert r"312{,}320 = 2^{10} \cdot 5 \cdot 61" in md
    assert r"\frac{312{,}320}{32 \cdot 4 \cdot 40} = 61" in md and r"\frac{305}{8}" in md
    # 327680 - 312320 = 15360 = 3 rows x 32*4*40
    assert "15,360 = 3 rows" in md
    # BN train under mults: 32*64*4 squares + 32*64*4 scales = 16384
    assert r"32 \cdot 64 \cdot 4 \cdot 2 = 16{,}384" in md
    # total: 327680 + 16384 + 0 = 344064, the seed's total; 312320 + 16384 = 328704 is not
    assert r"327{,}680 + 16{,}384 + 0 = 344{,}064" in md
    assert cells(row(section(md, 6), "total"))[2:] == ["1,344", "344,064"]
    assert has(md, 328704)


def test_seed004_raises_instead_of_printing_a_wrong_total(monkeypatch):
    # with the seed's 312320 the total would be 312320 + 16384 = 328704; claiming that total must raise
    monkeypatch.setattr(seed004_worked_example, "SEED_TOTAL", 328704)
    with pytest.raises(DerivationError, match="total multiplications"):
        seed004_worked_example.derive()


# ---- seed 001 ---------------------------------------------------------------------------------------------

def test_seed001_keras_table(pages):
    md = pages["seed001_keras_table.md"]
    fritz = section(md, 2)
    # conv: 32*32*32 outputs x (3*3*3 MACs counted once + 1 bias add) = 917504 -> 0.92
    conv = cells(row(fritz, "conv2d_1 (Conv2D)"))
    assert conv[2].endswith("917{,}504$") and conv[3:5] == ["0.92", "0.92"]
    # BN: one multiply + one add per element: 2*32*32*32 = 65536 -> 0.07
    bn = cells(row(fritz, "batch_normalization_1 (BatchNormalization)"))
    assert bn[2].endswith("65{,}536$") and bn[3:5] == ["0.07", "0.07"]
    # flatten: a view, 0 -> 0.00
    assert cells(row(fritz, "flatten_1 (Flatten)"))[3:5] == ["0.00", "0.00"]
    # dense: 43 outputs x (2*32768 + 1) = 2818091 -> 2.82
    dense = cells(row(fritz, "dense_1 (Dense)"))
    assert dense[2].endswith("2{,}818{,}091$") and dense[3:5] == ["2.82", "2.82"]
    # params: 3*3*3*32 + 32 = 896; BN 64 + 64 = 128; dense 32768*43 + 43 = 1409067
    params = section(md, 1)
    assert cells(row(params, "conv2d_1"))[1:3] == ["896", "896 + 0"]
    assert cells(row(params, "batch_normalization_1"))[1:3] == ["128", "64 + 64"]
    assert cells(row(params, "flatten_1"))[1] == "0"
    assert cells(row(params, "dense_1"))[1] == "1,409,067"
    # Keras totals: 896 + 128 + 1409067 = 1410091; trainable 1410091 - 64 = 1410027
    assert "1,410,027 trainable + 64 non-trainable = 1,410,091" in params
    contrast = section(md, 3)
    # conv under macs 32*32*32*27 = 884736 -> 0.88; flops 2*884736 + 32768 = 1802240 -> 1.80;
    # exact 2*884736 (26 adds + bias per output) = 1769472 -> 1.77
    assert cells(row(contrast, "conv2d_1"))[1:4] == ["0.88 (884,736)", "1.80 (1,802,240)", "1.77 (1,769,472)"]
    # dense under macs 43*32768 = 1409024 -> 1.41; flops 2818091; exact 2*1409024 = 2818048 -> 2.82
    assert cells(row(contrast, "dense_1"))[1:4] == ["1.41 (1,409,024)", "2.82 (2,818,091)", "2.82 (2,818,048)"]


def test_seed001_raises_on_a_column_it_cannot_reproduce(monkeypatch):
    # 917504 / 10**6 rounds to 0.92; claiming 0.88 (the MACs alone) must raise
    monkeypatch.setitem(seed001_keras_table.SEED_MFLOPS, "conv2d_1", "0.88")
    with pytest.raises(DerivationError, match="conv2d_1 MFLOPS"):
        seed001_keras_table.derive()


# ---- seed 003 ---------------------------------------------------------------------------------------------

def test_bn_folding_page(pages):
    md = pages["bn_folding.md"]
    # coefficient of X in expand(gamma*((W X + B) - mu)/sqrt(var + eps) + beta) is W*a, constant (B - mu)*a + beta
    assert r"= W a \\" in md
    assert r"= a \left(B - \mu\right) + \beta" in md
    # without a conv bias: B = 0 leaves beta - mu*a, not beta
    assert r"B_{merged} = \beta - \frac{\gamma \mu}{\sqrt{\epsilon + \sigma^{2}}}" in md
    # transposed conv: weight (C_in, C_out/g, k, k), output channel on axis 1
    assert "**axis 1**" in md and r"W'[i, o, j] = W[i, o, j]\, a_o" in md
    assert cells(row(md, "`ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1)`"))[1:] == [
        "axis 1", r"$\le 10^{-12}$", r"$\le 10^{-5}$"]


def test_bn_folding_matches_pytorch(measured):
    for name, _, _ in bn_folding.CASES:
        for dtype, tol in bn_folding.TOLERANCE.items():
            assert measured[(name, dtype)] <= tol, (name, dtype, measured[(name, dtype)])
    # the wrong folds miss by far more than rounding: the check can fail
    for key in ("no-bias fold with b' = beta", "BN skipped", "ConvTranspose2d(6, 6, 3, stride=2), scaled on axis 0",
                "BN -> Conv2d(6, 4, 3, padding=1)"):
        assert measured[(key, "float64")] > bn_folding.WRONG_BY, key


def test_bn_folding_raises_when_pytorch_disagrees(measured):
    bad = dict(measured)
    bad[(bn_folding.CASES[0][0], "float32")] = 1e-3
    with pytest.raises(DerivationError, match="folded differs"):
        bn_folding.derive(bad)


# ---- the checks themselves ------------------------------------------------------------------------------

def test_checks_raise_rather_than_assert():
    import sympy

    x = sympy.Symbol("x")
    same(2 * x + 2, 2 * (x + 1), "factored")
    with pytest.raises(DerivationError):
        same(2 * x + 1, 2 * (x + 1), "off by one")
    with pytest.raises(DerivationError):
        equal(312320, 32 * 64 * 4 * 4 * 10, "the seed's conv line")   # 327680
    with pytest.raises(DerivationError):
        equal(x, 1, "symbolic")


# ---- the hand formulas of transformer training (derivations/_llm.py: Llama-2-7B and GPT-2 small) -------------------

def test_kaplan_page(pages):
    md = pages["kaplan_c_forward.md"]
    # Llama-2-7B forward per token: 2 x 6,607,077,376 matmul weights (32 x (4 x 4096^2 + 3 x 4096 x 11008) + the
    # 4096 x 32000 LM head) + 2 products x 2 x 32 layers x 4096 x L
    assert "524288 L + 13214154752" in md
    # the measurement: 1.023x Kaplan at L = 128, 1.059x at 2048
    assert row(md, "Llama-2-7B | 128").endswith("| 1.023 |") and row(md, "Llama-2-7B | 2,048").endswith("| 1.059 |")


def test_palm_page(pages):
    md = pages["palm_6n.md"]
    # 6 x 6,607,077,376 + 12 x 32 x 32 x 128 x 2048 = 39,642,464,256 + 3,221,225,472
    assert has(md, 42863689728)
    assert "GPT-2 small | 2,048" not in md  # beyond GPT-2's 1024 positions: never tabulated


def test_megatron_page(pages):
    md = pages["megatron_flops.md"]
    before, after = (md.split("## 4. After 8873b55d")[i] for i in (0, 1))   # the two tables: before, after
    assert cells(row(before, "Llama-2-7B | 2,048"))[-1] == "0"
    # GPT-2's vocabulary 50,257 padded to 50,304: 6 x 768 x 47 = 216,576 more per token in Megatron's count
    assert cells(row(before, "GPT-2 small | 1,024"))[-1] == "-216,576"
    # after 8873b55d: the causal half, 6 x 32 x 4096 x 2048 = 1,610,612,736 fewer at 2048 tokens: 41,253,076,992
    assert cells(row(after, "Llama-2-7B | 2,048"))[2:] == ["42,863,689,728", "41,253,076,992", "1,610,612,736",
                                                            "0.962"]
    assert "commit fdfcef87 (2025-03-03)" in md and "commit 8873b55d (2025-03-06" in md


def test_references_page_pins_every_reference(pages):
    md = pages["references.md"]
    for pin in ("fdfcef87 (2025-03-03)", "8873b55d (2025-03-06", "f08abb45 (2023-06-14)", "92d63d4e (2026-07-03)",
                "73aed7f6 (2026-08-20)", "arXiv:2001.08361, v1 (2020-01-23)", "arXiv:2204.02311, v1 (2022-04-05)",
                "arXiv:2203.15556, v1 (2022-03-29)"):
        assert pin in md, pin
    # torchtitan keeps Llama-2-7B's 65 x 4096 norm weights: 6 x 266,240 = 1,597,440 per token above
    assert "C - C_\\text{torchtitan} = -1597440" in md
    # Chinchilla's embedding lookup and softmax, GPT-2 small: 3 x (2 x 50257 x 768 + 3 x 12 x 12 L)
    assert "C - C_\\text{Chinchilla} = - 1296 L - 231584256" in md


def test_llama_params_page(pages):
    md = pages["llama_params.md"]
    # per layer 2d^2 (q, o) + 2 d (k d/h) (k, v) + 3 d f (gate, up, down) + 2d (norms); V d token table, d final norm
    assert "P_\\text{AutoModel} = V d + 2 d^{2} n + \\frac{2 d^{2} k n}{h} + 3 d f n + 2 d n + d" in md
    # the difference from 12 n d^2 with the LM head: 2Vd - 10 n d^2 + 2 n d^2 k/h + 3 n d f + 2 n d + d
    assert "P - 12 n d^2 = 2 V d - 10 d^{2} n + \\frac{2 d^{2} k n}{h} + 3 d f n + 2 d n + d" in md
    # Llama-3-8B: 32 x (2 x 4096^2 + 2 x 4096 x 1024 + 3 x 4096 x 14336 + 2 x 4096) + 2 x 128256 x 4096 + 4096
    # = 32 x 218,112,000 + 1,050,673,152 + 4096 = 8,030,261,248 (published)
    assert cells(row(md, "Llama-3-8B"))[2] == "8,030,261,248"
