"""Parameters of a traced model: every distinct parameter tensor counted once, at its own numel(), in the first row
that reads it -- tied weights, slices, expanded class tokens and nn.Embedding subclasses included.

Expected values come from torch: ``sum(p.numel() for p in model.parameters())`` (parameters() yields each distinct
tensor once), FlopCounterMode, and a reader below that asks torch which parameters forward touches."""
import subprocess
import sys

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import FlopCounterMode

from symcost.tracing import trace

transformers = pytest.importorskip("transformers")

UNUSED = "(parameters not used in forward)"
UNCOSTED = "(parameters read only by uncosted ops)"


def distinct_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


class _Touched(TorchDispatchMode):
    """Ids of the parameters any aten op reads, directly or through a view (torch's own ``_base``)."""

    def __init__(self, ids):
        super().__init__()
        self.ids, self.touched = ids, set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if "like" not in func.__name__ and not func.__name__.startswith("new_"):  # shape-only reads
            for t in tree_flatten((args, kwargs or {}))[0]:
                if isinstance(t, torch.Tensor):
                    for x in (t, t._base):
                        if x is not None and id(x) in self.ids:
                            self.touched.add(id(x))
        return func(*args, **(kwargs or {}))


def never_read(model, x) -> int:
    """Parameter values forward never reads, by torch's account."""
    params = {id(p): p for p in model.parameters()}
    with torch.no_grad(), _Touched(set(params)) as mode:
        model(x)
    return sum(p.numel() for i, p in params.items() if i not in mode.touched)


def torch_flops(model, x) -> int:
    with torch.no_grad(), FlopCounterMode(display=False) as c:
        model(x)
    return c.get_total_flops()


def row_params(mc, name) -> int:
    return sum(int(r.cost.params) for r in mc.rows if r.name == name)


# ---- Hugging Face: small configs of each family --------------------------------------------------------------

DECODER = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4, intermediate_size=96,
               vocab_size=1000)
CONFIGS = {
    "llama": DECODER,
    "mistral": DECODER,
    "qwen2": DECODER,
    "gemma": {**DECODER, "head_dim": 16},
    "phi3": {**DECODER, "pad_token_id": 0},  # its default padding id (32000) lies outside a 1000-token vocabulary
    "gpt_neox": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=96, vocab_size=1000),
    "opt": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, ffn_dim=96, vocab_size=1000,
                word_embed_proj_dim=32, pad_token_id=0),  # a projection in and out of the embeddings, as OPT-350m
    "falcon": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, vocab_size=1000),
    "bert": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=96, vocab_size=1000),
    "roberta": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=96,
                    vocab_size=1000),
    "t5": dict(d_model=64, d_kv=16, d_ff=96, num_layers=2, num_heads=4, vocab_size=1000),
    "bart": dict(d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                 decoder_attention_heads=4, encoder_ffn_dim=96, decoder_ffn_dim=96, vocab_size=1000,
                 pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=2),
}


class EncoderDecoder(nn.Module):
    """T5 and BART take the token ids as both encoder and decoder input (symcost traces one input)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, ids):
        return self.model(input_ids=ids, decoder_input_ids=ids, use_cache=False).last_hidden_state


def hugging_face(model_type: str):
    from transformers import AutoConfig, AutoModel

    config = AutoConfig.for_model(model_type, **CONFIGS[model_type])
    if model_type == "bart":  # sdpa's mask shortcut reads a mask value (.item()), impossible on meta tensors
        config._attn_implementation = "eager"
    with torch.device("meta"):
        model = AutoModel.from_config(config)
    return (EncoderDecoder(model) if model_type in ("t5", "bart") else model).eval()


@pytest.mark.parametrize("model_type", list(CONFIGS))
def test_hugging_face_params_are_the_distinct_parameters(model_type):
    model = hugging_face(model_type)
    mc = trace(model, (2, "L"), input_dtype="int64")
    expected = distinct_params(model)
    for length in (7, 32, 64):  # odd, a multiple of 32, of 64
        ids = torch.zeros(2, length, dtype=torch.long, device="meta")
        values = mc.evaluate({"L": length}, "torch")
        assert values["params"] == expected, (model_type, values["params"], expected)
        # every parameter of these models is read by forward: no row claims otherwise
        assert never_read(model, ids) == 0
        assert row_params(mc, UNUSED) == 0 and row_params(mc, UNCOSTED) == 0, mc.notes
        assert values["flops"] == torch_flops(model, ids), (model_type, length)


def test_t5_shared_embedding_counts_once():
    model = hugging_face("t5")
    shared = model.model.shared.weight
    # one tensor read as the shared table and as both stacks' embed_tokens
    assert model.model.encoder.embed_tokens.weight is shared and model.model.decoder.embed_tokens.weight is shared
    counted_per_module = sum(p.numel() for _, p in model.named_parameters(remove_duplicate=False))
    assert counted_per_module - distinct_params(model) == 2 * 1000 * 64  # the two extra references
    assert trace(model, (2, 9), input_dtype="int64").evaluate({}, "torch")["params"] == distinct_params(model)


@pytest.mark.parametrize("model_type", ["gemma", "bart", "opt"])
def test_embedding_subclasses_are_costed_at_the_aten_level(model_type):
    """Gemma's scaled embedding, BART's and OPT's positional embeddings subclass nn.Embedding with their own
    forward: no parent formula for them, but their aten.embedding reads the table, so the table counts there."""
    model = hugging_face(model_type)
    subclasses = {n: m for n, m in model.named_modules() if isinstance(m, nn.Embedding) and type(m) is not nn.Embedding}
    assert subclasses, model_type
    mc = trace(model, (2, 11), input_dtype="int64")
    lookups = [r for r in mc.rows if r.layer == "embedding"]
    tables: dict[int, list[str]] = {}  # a table tied into several modules (BART's shared one) is one table
    for name, module in subclasses.items():
        assert name not in {r.name for r in mc.rows}  # never costed with nn.Embedding's own formula
        tables.setdefault(id(module.weight), []).append(name)
    for names in tables.values():
        # the table counts once, at its full size V x E, in the first lookup that reads it
        numel = subclasses[names[0]].weight.numel()
        assert [int(r.cost.params) for r in lookups if r.name.split(":")[0] in names and r.cost.params] == [numel]


def test_gpt2_with_its_lm_head_counts_the_tied_weight_once():
    from transformers import GPT2Config, GPT2LMHeadModel

    with torch.device("meta"):
        model = GPT2LMHeadModel(GPT2Config()).eval()  # GPT-2 small, its default config
    assert model.lm_head.weight is model.transformer.wte.weight
    mc = trace(model, (1, "L"), input_dtype="int64")
    # GPT-2 small: 124,439,808 distinct parameters; the LM head adds none (it is the 50257 x 768 token table)
    assert mc.evaluate({"L": 64}, "torch")["params"] == distinct_params(model) == 124_439_808
    assert [r.name for r in mc.rows if r.cost.params == 50257 * 768] == ["transformer.wte"]
    assert row_params(mc, "lm_head") == 0
    ids = torch.zeros(1, 37, dtype=torch.long, device="meta")
    assert mc.evaluate({"L": 37}, "torch")["flops"] == torch_flops(model, ids)


def test_gpt2_built_on_cpu_keeps_its_tie_when_traced():
    """symcost moves a CPU model to meta for tracing: the copy must stay tied (``.to('meta')`` unties it)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    model = GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=1, n_head=2, vocab_size=500, n_positions=64)).eval()
    mc = trace(model, (1, 9), input_dtype="int64")
    # 500*32 tokens + 64*32 positions + one block (12*32*32 + 13*32) + final norm 2*32 = 16000+2048+12704+64
    assert mc.evaluate({}, "torch")["params"] == distinct_params(model) == 30_816
    assert model.lm_head.weight.device.type == "cpu"  # the user's model is untouched


def test_hf_vit_counts_its_class_token_once_at_any_batch():
    from transformers import AutoConfig, AutoModel

    config = AutoConfig.for_model("vit", hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=96, image_size=32, patch_size=8)
    with torch.device("meta"):
        model = AutoModel.from_config(config).eval()
    for batch in (1, 2, 3):  # the class token is expanded to the batch: it still has 64 values
        mc = trace(model, (batch, 3, 32, 32))
        assert mc.evaluate({}, "torch")["params"] == distinct_params(model)
        x = torch.empty(batch, 3, 32, 32, device="meta")
        assert mc.evaluate({}, "torch")["flops"] == torch_flops(model, x)
    assert [int(r.cost.params) for r in mc.rows if r.name == "embeddings:cat"] == [64]  # the (1, 1, 64) token


def test_hf_vit_base_at_batch_2():
    from symcost.targets import load_target

    model = load_target("hf:vit", device="meta").eval()
    # ViT-B/16 (ViTModel with its pooler): 86,389,248 parameters, whatever the batch
    assert trace(model, (2, 3, 224, 224)).evaluate({}, "torch")["params"] == distinct_params(model) == 86_389_248


def test_timm_vit_with_dynamic_img_size_counts_the_sliced_position_table_once():
    timm = pytest.importorskip("timm")
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, dynamic_img_size=True).eval()
    # ViT-Ti/16: 5,717,416 parameters; at 240 the 197 x 192 position table is sliced and resampled
    for size in (224, 240):
        mc = trace(model, (1, 3, size, size))
        assert mc.evaluate({}, "torch")["params"] == distinct_params(model) == 5_717_416, size


# ---- a hand-written module: each way of reading a parameter ----------------------------------------------------

class Reads(nn.Module):
    """A parameter read through a slice, one expanded to the batch, an embedding tied to the output head,
    a layer called twice, a parameter read only through a view nobody uses, and an auxiliary head never called."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(10, 8)
        self.cls = nn.Parameter(torch.zeros(1, 1, 8))
        self.pos = nn.Parameter(torch.zeros(1, 16, 8))
        self.mid = nn.Linear(8, 8)
        self.head = nn.Linear(8, 10, bias=False)
        self.head.weight = self.emb.weight
        self.scale = nn.Parameter(torch.ones(3))
        self.aux = nn.Linear(4, 3)

    def forward(self, ids):
        x = self.emb(ids)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1)
        x = x + self.pos[:, :x.shape[1]]
        x = self.mid(torch.relu(self.mid(x)))
        self.scale[0]  # a view taken and dropped
        return self.head(x)


def test_each_way_of_reading_a_parameter_counts_it_once():
    model = Reads().eval()
    # 10*8 table (tied head adds 0) + 8 cls + 16*8 pos + (8*8 + 8) mid + 3 scale + (4*3 + 3) aux = 306
    assert distinct_params(model) == 306
    mc = trace(model, ("B", "L"), input_dtype="int64", sizes=({"B": 2, "L": 5}, {"B": 3, "L": 9}))
    assert mc.total("torch")["params"] == 306
    by_row = [(r.name, int(r.cost.params)) for r in mc.rows if r.cost.params]
    assert by_row == [("emb", 80), ("(model):cat", 8), ("(model):add", 128), ("mid", 72), (UNCOSTED, 3),
                      (UNUSED, 15)]
    assert sum(r.name == "mid" for r in mc.rows) == 2 and row_params(mc, "head") == 0
    assert any("15 parameter values (aux.bias, aux.weight) are never read" in n for n in mc.notes)
    assert any("3 parameter values (scale) are read in this forward pass only by ops symcost does not cost" in n
               for n in mc.notes)
    for batch, length in ((1, 3), (4, 15), (2, 8)):  # the slice takes 4 to 16 of the 16 positions
        ids = torch.zeros(batch, length, dtype=torch.long)
        assert mc.evaluate({"B": batch, "L": length}, "torch")["flops"] == torch_flops(model, ids)
    assert never_read(model, torch.zeros(2, 5, dtype=torch.long)) == 15  # torch agrees: only aux is never read


# ---- buffers: described by what they are ------------------------------------------------------------------------

BUFFERS_FILE = '''
import torch
from torch import nn


class Buffers(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3)
        self.bn = nn.BatchNorm2d(6)  # 6 running means + 6 running variances (+ an int64 batch counter, not counted)
        self.register_buffer("inv_freq", torch.ones(5))  # state that is no statistic
        self.register_buffer("gate", torch.zeros(5))  # filled in place, then read
        self.register_buffer("original", torch.ones(4))  # never read

    def forward(self, x):
        self.gate.fill_(1.0)
        return self.bn(self.conv(x)).flatten(1)[:, :5] * self.inv_freq * self.gate
'''


@pytest.fixture
def buffers_target(tmp_path) -> str:
    path = tmp_path / "buffers.py"
    path.write_text(BUFFERS_FILE)
    return f"{path}:Buffers"


def test_buffers_are_described_by_kind(buffers_target):
    from symcost.targets import load_target

    model = load_target(buffers_target).eval()
    mc = trace(model, (1, 3, "H", "W"))
    # 12 running statistics + 5 inv_freq + 5 gate + 4 never read = 26 floating-point buffer values
    assert mc.total("torch")["buffers"] == 26
    assert mc.buffer_kinds == {"running statistics": 12, "other": 14}
    assert [int(r.cost.buffers) for r in mc.rows if r.cost.buffers] == [12, 5, 5, 4]  # bn, the two muls, unused
    assert row_params(mc, UNUSED) == 0 and [r.cost.buffers for r in mc.rows if r.name == UNUSED] == [4]
    assert any("4 buffer values (original) are never read" in n for n in mc.notes)


def test_cli_names_buffer_kinds(buffers_target):
    r = subprocess.run([sys.executable, "-m", "symcost.cli", "model", buffers_target, "--input", "1x3x9x9",
                        "--no-cache"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    # conv 6*3*3*3 + 6 = 168, BN 2*6 = 12 -> 180 params
    assert "total params  180   (+ 26 in buffers: running statistics 12; other 14)" in r.stdout
    resnet = subprocess.run([sys.executable, "-m", "symcost.cli", "model", "torchvision:resnet18", "--input",
                             "1x3x64x64", "--no-cache"], capture_output=True, text=True)
    # resnet18: 20 BatchNorms, sum of 2C over their widths = 9,600 running statistics and nothing else
    assert "(+ 9,600 in buffers: running statistics 9,600)" in resnet.stdout, resnet.stderr
