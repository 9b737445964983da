"""symcost memory --config: every heading and the peak as formulas in Llama's hidden size and depth, checked at
configurations the fit did not use against the real model: parameters and gradients as numel x 4 bytes, AdamW's
states after a real step, saved activations as the storages ``saved_tensors_hooks`` is shown (CPU, SDPA's math
path, the one meta tensors run), the peak as ``MemTracker``'s (FakeTensor) plus the optimizer states held through
the step.  Sizes odd, even and multiples of 32."""
from __future__ import annotations

import warnings

import pytest
import torch

import symcost.footprint as M
from symcost.errors import UsageError
from symcost.cli import main
from tests.test_memory import real_saved, tracker_peak

FIXED = {"num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 64, "vocab_size": 100,
         "max_position_embeddings": 256}
CONFIG = "hidden_size=d,num_hidden_layers=n," + ",".join(f"{k}={v}" for k, v in FIXED.items())
#: (d, n) and (B, L): d a multiple of 8 (head_dim = d/4 even), none of them a configuration the fit traced
CASES = [((40, 3), (3, 17)), ((48, 5), (2, 32)), ((56, 4), (4, 33))]


@pytest.fixture(scope="module")
def mem():
    return M.memory("hf:llama", "BxL", backward=True, optimizer="adamw", config=CONFIG)


def llama(d: int, n: int):
    from transformers import AutoConfig, AutoModel

    cfg = AutoConfig.for_model("llama", hidden_size=d, num_hidden_layers=n, **FIXED)
    return Hidden(AutoModel.from_config(cfg))


class Hidden(torch.nn.Module):
    """LlamaModel's first output, the one the step's backward is seeded from (as symcost model --backward).  The
    whole output is kept until the next call, as symcost's step keeps an hf: model's output through the backward:
    with it the KV cache the forward fills (``use_cache`` is on by default, in training mode too), 2 x n x B x L x
    (2 key/value heads x d/4) x 4 bytes."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, ids):
        self.out = self.model(ids)
        return self.out.last_hidden_state


def math_sdpa():
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel(SDPBackend.MATH)


def test_the_fit_did_not_trace_the_checked_configurations(mem):
    traced = [(p["hidden_size"], p["num_hidden_layers"]) for p in mem.fitting["traced_at"]]
    assert not set(traced) & {c for c, _ in CASES}
    assert {str(s) for s in mem.symbols} == {"B", "L", "d", "n"}


@pytest.mark.parametrize("config", [c for c, _ in CASES])
def test_parameters_gradients_and_adamw_states_equal_torch(mem, config):
    d, n = config
    torch.manual_seed(0)
    model = llama(d, n)
    params = [p for p in model.parameters()]
    got = mem.at({"B": 2, "L": 5, "d": d, "n": n})
    assert got["params"] == got["gradients"] == sum(p.numel() * 4 for p in params)
    opt = torch.optim.AdamW(params)
    for p in params:
        p.grad = torch.zeros_like(p)
    opt.step()
    states = sum(t.numel() * t.element_size() for s in opt.state.values() for t in s.values())
    assert got["optimizer_states"] == states


@pytest.mark.parametrize("config,size", CASES)
def test_saved_activations_equal_saved_tensors_hooks(mem, config, size):
    (d, n), (b, l) = config, size
    with math_sdpa():
        want = real_saved(lambda: llama(d, n), (b, l), torch.float32, ids=True)
    assert mem.at({"B": b, "L": l, "d": d, "n": n})["saved_activations"] == want


def test_peak_equals_mem_tracker_plus_the_optimizer_states(mem):
    """MemTracker runs no optimizer: the states, held through the step, are added to its peak."""
    (d, n), (b, l) = CASES[0]
    got = mem.at({"B": b, "L": l, "d": d, "n": n})
    with math_sdpa(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = tracker_peak(lambda: llama(d, n), (b, l), torch.float32, True, ids=True)
    assert got["peak"] == want + got["optimizer_states"]


def test_outside_the_configurations_conditions_is_refused(mem):
    with pytest.raises(UsageError, match="divisible"):
        mem.at({"B": 2, "L": 5, "d": 20, "n": 2})   # head_dim = 20/4 = 5 is odd: rotary halves need it even


def test_fit_in_a_device_memory_with_config_values(mem):
    """The largest batch of d=4096, n=32 at L=2048 within an H100's 80 GiB, and the next batch's peak above it."""
    budget = 80 * 2**30
    found = mem.fit("B", budget, {"L": 2048, "d": 4096, "n": 32})

    def at(b):
        return mem.at({"B": b, "L": 2048, "d": 4096, "n": 32})["peak"]

    if found["value"] is None:
        assert at(found["next_value"]) > budget
    else:
        assert at(found["value"]) <= budget < at(found["value"] + 1)
    with pytest.raises(UsageError, match="input"):
        mem.fit("d", budget, {"B": 1, "L": 2048, "n": 32})


@pytest.mark.parametrize("extra", [["--layers"], ["--config", "hidden_size=B"]])
def test_cli_bad_config_combinations_are_one_line(capsys, extra):
    argv = ["memory", "hf:llama", "--input", "BxL", "--backward", "--config", CONFIG, *extra]
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "internal error" not in err, err


def test_decode_step_kv_cache_equals_the_real_dynamic_cache():
    """One decode step, bf16, with T cached tokens: ``kv_cache`` in d, n, B and T equals the bytes of the keys and
    values a real prefill of T tokens leaves in a DynamicCache (CPU), at configurations and sizes the fit did not
    use."""
    from transformers import AutoConfig, AutoModelForCausalLM

    fixed = {**FIXED, "max_position_embeddings": 4096}
    config = "hidden_size=d,num_hidden_layers=n," + ",".join(f"{k}={v}" for k, v in fixed.items())
    mem = M.memory("hf:llama", "Bx1", past="T", dtype="bf16", config=config)
    for (d, n), (b, t) in CASES:
        cfg = AutoConfig.for_model("llama", hidden_size=d, num_hidden_layers=n, **fixed)
        model = AutoModelForCausalLM.from_config(cfg).to(torch.bfloat16).eval()
        with torch.no_grad():
            cache = model(torch.randint(0, 100, (b, t)), use_cache=True).past_key_values
        held = sum(x.numel() * x.element_size() for layer in cache.layers for x in (layer.keys, layer.values))
        assert mem.at({"B": b, "T": t, "d": d, "n": n})["kv_cache"] == held


def test_past_the_configurations_fitted_the_peak_equals_mem_tracker(mem):
    """d = 96 lies past the widths the fit traced (head_dim 24 too): the number is given after a derivation at
    that configuration agrees, and it is MemTracker's."""
    d, n, b, l = 96, 3, 2, 9
    assert mem.conditions.beyond({"B": b, "L": l, "d": d, "n": n})
    got = mem.at({"B": b, "L": l, "d": d, "n": n})
    with math_sdpa(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = tracker_peak(lambda: llama(d, n), (b, l), torch.float32, True, ids=True)
    assert got["peak"] == want + got["optimizer_states"]
    assert {"B": b, "L": l, "d": d, "n": n} in mem.fitting["confirmed"]
