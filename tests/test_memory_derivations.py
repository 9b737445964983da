"""derivations/memory_hand_formulas.py against sources independent of symcost: Korthikanti et al.'s formula
transcribed from the paper, ``saved_tensors_hooks`` on the real GPT-2 blocks (CPU), ``sum(p.numel())``."""
import sys
import warnings
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # derivations/ is not part of the installed package
    sys.path.insert(0, str(ROOT))

from derivations import memory_hand_formulas as page

# sizes of every residue: odd, even, a multiple of 32 (B, L >= 2: symcost's domain)
SIZES = [(2, 17), (3, 32), (2, 33)]


def korthikanti(s, b, h, a):
    """Korthikanti et al. 2022, eq. (1): sbh(34 + 5as/h) bytes = 34·s·b·h + 5·a·s²·b (integer arithmetic)."""
    return 34 * s * b * h + 5 * a * s * s * b


def real_saved(n_layer, h, a, activation, shape, train, attn="eager"):
    """Bytes of the storages autograd saves in the real bf16 forward on a CPU, each once, parameters left out."""
    torch.manual_seed(0)
    model = page.gpt2(n_layer, h, a, activation)
    if attn != "eager":
        model.model.config._attn_implementation = attn
    model = model.to(torch.bfloat16).train(train)
    own = {t.untyped_storage()._cdata for t in [*model.parameters(), *model.buffers()]}
    seen = {}

    def pack(t):
        st = t.untyped_storage()
        if st._cdata not in own:
            seen[st._cdata] = (st, st.nbytes())
        return t

    with warnings.catch_warnings(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        warnings.simplefilter("ignore")
        model(torch.randint(0, 100, shape))
    return sum(n for _, n in seen.values())


def real_block(h, a, activation, shape, train, attn="eager"):
    """One block's saved bytes: a two-layer model less a one-layer one."""
    return (real_saved(2, h, a, activation, shape, train, attn)
            - real_saved(1, h, a, activation, shape, train, attn))


@pytest.fixture(scope="module")
def md():
    return page.derive()


def row(md, first, second):
    hits = [ln for ln in md.splitlines() if ln.startswith(f"| {first} | {second} |")]
    assert len(hits) == 1, (first, second, hits)
    return [c.strip() for c in hits[0].strip("|").split("|")]


# A CPU keeps bf16 LayerNorm statistics in bf16 (2 norms x mean, rstd x 2 bytes = 8 per token); symcost keeps them
# in float32 as CUDA does (16 per token): the real block saves 8·B·L less than the page's formulas.
CPU_STATS = 8


@pytest.mark.parametrize("variant,activation,train,lin,quad", [
    # GPT-2's default gelu_new, dropout on: s·b·(60h + 16) + 6·a·s²·b
    ("train", "gelu_new", True, 60, 6),
    # one GELU kernel: 24 sbh less
    ("train-fused", "gelu_pytorch_tanh", True, 36, 6),
    # eval: no masks, no dropped probabilities
    ("eval-fused", "gelu_pytorch_tanh", False, 32, 2),
])
def test_page_formulas_equal_saved_tensors_hooks_on_the_real_blocks(md, variant, activation, train, lin, quad):
    formula = {"train": "M_\\text{train}", "train-fused": "M_\\text{fused}", "eval-fused": "M_\\text{eval}"}[variant]
    assert f"{formula} &= {quad} a b s^{{2}} + b s \\left({lin} h + 16\\right)" in md
    for h, a in [(32, 4), (48, 6)]:
        for b, s in SIZES:
            expected = s * b * (lin * h + 16) + quad * a * s * s * b
            assert real_block(h, a, activation, (b, s), train) == expected - CPU_STATS * b * s, (h, a, b, s)


def test_korthikanti_rows_are_the_paper_formula(md):
    # GPT-3 175B: s = 2048, h = 12288, a = 96: 2048 x 12288 x (34 + 5 x 96 x 2048 / 12288 = 80) = 2,868,903,936
    assert korthikanti(2048, 1, 12288, 96) == 2048 * 12288 * 114
    assert row(md, "GPT-3 175B", "Korthikanti")[2:] == [f"{korthikanti(2048, 1, 12288, 96):,}", "1.000"]
    # Llama-2-7B sizes: s = 4096, h = 4096, a = 32: 4096^2 x (34 + 160)
    assert row(md, "Llama-2-7B sizes", "Korthikanti")[2] == f"{4096 * 4096 * 194:,}"


def test_scaled_rows_are_the_checked_coefficients(md):
    # the coefficients the real blocks confirm above, evaluated by hand at GPT-3 175B sizes
    s, h, a = 2048, 12288, 96
    k = korthikanti(s, 1, h, a)
    for label, lin, quad in [("symcost, train", 60, 6), ("symcost, fused GELU", 36, 6), ("symcost, eval", 32, 2)]:
        v = s * (lin * h + 16) + quad * a * s * s
        assert row(md, "GPT-3 175B", label)[2:] == [f"{v:,}", f"{v / k:.3f}"], label
    # train: 3,925,901,312 / 2,868,903,936 = 1.368; fused 1.158
    assert row(md, "GPT-3 175B", "symcost, train")[3] == "1.368"
    # flash: 5·a·s² replaced by a float32 logsumexp, 4·a·s
    flash = k - 5 * a * s * s + 4 * a * s
    assert row(md, "GPT-3 175B", "Korthikanti with flash ($4asb$ for $5as^2b$)")[2] == f"{flash:,}"


def test_terms_named_on_the_page(md):
    assert "M_\\text{train} - M_\\text{Korthikanti} = 24 b h s + a b s^{2} + 2 b h s + 16 b s" in md


def test_dropout_mask_bytes_on_cpu_and_in_the_fused_kernel():
    x = torch.ones(4, 8, dtype=torch.bfloat16, requires_grad=True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        torch.nn.functional.dropout(x, 0.1, training=True)
    # off CUDA: a noise tensor in the input's dtype, 2 bytes an element
    assert [t.dtype for t in saved] == [torch.bfloat16] and saved[0].numel() == 32
    # the fused kernel Korthikanti assume keeps a bool mask: 1 byte an element
    _, mask = torch.native_dropout(x.detach(), 0.1, True)
    assert mask.dtype == torch.bool and mask.element_size() == 1


def test_sdpa_on_a_cpu_saves_no_square_term(md):
    eager, sdpa = [], []
    for b, s in SIZES:
        eager.append(real_block(32, 4, "gelu_pytorch_tanh", (b, s), False))
        sdpa.append(real_block(32, 4, "gelu_pytorch_tanh", (b, s), False, attn="sdpa"))
    # eager: 2 bytes x a = 4 probabilities per L x L entry, plus the page's EAGER_CPU per token
    assert eager == [8 * b * s * s + page.EAGER_CPU * b * s for b, s in SIZES]
    assert sdpa == [page.SDPA_CPU * b * s for b, s in SIZES]
    assert "1176·B·L bytes" in md and "144·B·L more" in md


def test_sixteen_bytes_per_parameter(md):
    model = page.gpt2(2, 32, 4, "gelu_new")
    n = sum(p.numel() for p in model.parameters())
    tensors = len(list(model.parameters()))
    # 2 (bf16 weights) + 2 (bf16 grads) + 4 (fp32 master) + 8 (two fp32 moments), + a 4-byte step per tensor
    total = 16 * n + 4 * tensors
    assert f"{total:,}".replace(",", "{,}") + f" = 16 \\cdot {n:,}".replace(",", "{,}") in md
    assert row(md, "params", f"{2 * n:,}") and row(md, "gradients", f"{2 * n:,}")
    assert row(md, "master_weights", f"{4 * n:,}")
    assert row(md, "optimizer_states", f"{8 * n + 4 * tensors:,}")
    assert row(md, "total", f"{total:,}")
