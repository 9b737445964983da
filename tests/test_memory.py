"""symcost memory: bytes as formulas, checked against torch itself.

Saved activations: the storages ``torch.autograd.graph.saved_tensors_hooks`` is shown on the real model (CPU, real
tensors), each once, parameters' and buffers' storages left out.  Peak: ``MemTracker``'s peak (FakeTensor, CPU) for
the same step, with the input tracked.  Sizes of every residue: odd, even, multiples of 32.
"""
from __future__ import annotations

import warnings

import pytest
import torch

import symcost.footprint as M
from symcost.errors import UsageError
from symcost.cli import main
from symcost.footprint.fit import parse_bytes


class SmallCNN(torch.nn.Module):
    """Conv, BatchNorm, ReLU, pooling, a strided conv, global pooling, linear."""

    def __init__(self):
        super().__init__()
        self.f = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
            torch.nn.Conv2d(8, 16, 3, stride=2), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
            torch.nn.Linear(16, 10))

    def forward(self, x):
        return self.f(x)


def gpt2():
    import transformers

    cfg = transformers.GPT2Config(n_layer=2, n_embd=32, n_head=4, vocab_size=100, n_positions=256, bos_token_id=0,
                                  eos_token_id=0, attn_implementation="eager")
    return Logits(transformers.GPT2LMHeadModel(cfg))


def llama():
    import transformers

    cfg = transformers.LlamaConfig(num_hidden_layers=2, hidden_size=32, intermediate_size=64, num_attention_heads=4,
                                   num_key_value_heads=2, vocab_size=100, max_position_embeddings=256,
                                   attn_implementation="eager")
    return Logits(transformers.LlamaForCausalLM(cfg))


class Logits(torch.nn.Module):
    """A Hugging Face language model's logits: the output the step's backward starts from."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, ids):
        return self.model(ids).logits


def _input(shape, dtype, ids: bool):
    return torch.randint(0, 100, shape) if ids else torch.randn(*shape, dtype=dtype)


def real_saved(make, shape, dtype, ids=False, train=False) -> int:
    """Bytes of the storages autograd saves in the real forward (CPU), each once, parameters and buffers left out."""
    torch.manual_seed(0)
    model = make().to(dtype).train(train)
    own = {t.untyped_storage()._cdata for t in [*model.parameters(), *model.buffers()]}
    seen = {}

    def pack(t):
        st = t.untyped_storage()
        if st._cdata not in own:
            seen[st._cdata] = (st, st.nbytes())  # the storage held: no other storage reuses its address meanwhile
        return t

    with warnings.catch_warnings(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        warnings.simplefilter("ignore")
        model(_input(shape, dtype, ids))
    return sum(n for _, n in seen.values())


def tracker_peak(make, shape, dtype, backward: bool, ids=False, train=False) -> int:
    """MemTracker's peak bytes of the same step on FakeTensors (CPU), the input tracked too."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.distributed._tools.mem_tracker import MemTracker

    old = torch.get_default_dtype()
    with FakeTensorMode():
        torch.set_default_dtype(dtype)
        try:
            model = make().train(train)
        finally:
            torch.set_default_dtype(old)
        x = _input(shape, dtype, ids)
        tracker = MemTracker()
        tracker.track_external(model, x)
        with tracker, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if backward:
                out = model(x)
                out.backward(torch.ones_like(out))
            else:
                with torch.no_grad():
                    model(x)
        snap = tracker.get_tracker_snapshot("peak")
    return sum(dev["Total"] for dev in snap.values())


CNN_SIZES = [(2, 17, 20), (3, 32, 64), (2, 33, 31), (3, 64, 40)]


@pytest.fixture(scope="module")
def cnn_train():
    return M.memory(SmallCNN(), "Bx3xHxW", backward=True, train=True, optimizer="adam")


def test_cnn_saved_activations_and_peak_equal_torch(cnn_train):
    for b, h, w in CNN_SIZES:
        got = cnn_train.at({"B": b, "H": h, "W": w})
        assert got["saved_activations"] == real_saved(SmallCNN, (b, 3, h, w), torch.float32, train=True)
        # the step's peak: MemTracker's, plus the optimizer states (held through the step, made by no op here)
        assert got["peak"] - got["optimizer_states"] == tracker_peak(SmallCNN, (b, 3, h, w), torch.float32, True,
                                                                      train=True)


def test_cnn_bf16_saved_activations_differ_by_batchnorm_statistics():
    """bf16: BatchNorm saves its batch mean and inverse std (C values each) as float32 on meta tensors (as on
    CUDA) and as bf16 on a CPU: 2 statistics x C = 8 channels x (4 - 2) bytes = 32 bytes more than the CPU saves."""
    mem = M.memory(SmallCNN(), "Bx3xHxW", backward=True, train=True, dtype="bf16")
    for b, h, w in CNN_SIZES[:2]:
        assert mem.at({"B": b, "H": h, "W": w})["saved_activations"] == real_saved(
            SmallCNN, (b, 3, h, w), torch.bfloat16, train=True) + 2 * 8 * 2


def test_parameters_gradients_and_optimizer_states_equal_torch(cnn_train):
    model = SmallCNN()
    got = cnn_train.at({"B": 2, "H": 17, "W": 20})
    assert got["params"] == sum(p.numel() * p.element_size() for p in model.parameters())
    assert got["buffers"] == sum(b.numel() * b.element_size() for b in model.buffers())
    assert got["inputs"] == 2 * 3 * 17 * 20 * 4
    out = model(torch.randn(2, 3, 17, 20))
    out.backward(torch.ones_like(out))
    assert got["gradients"] == sum(p.grad.numel() * p.grad.element_size() for p in model.parameters())
    opt = torch.optim.Adam(model.parameters())
    opt.step()
    held = sum(t.numel() * t.element_size() for s in opt.state.values() for t in s.values())
    assert got["optimizer_states"] == held
    sgd = M.memory(SmallCNN(), "2x3x17x20", backward=True, optimizer="sgd", momentum=True).at({})
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    opt.step()
    assert sgd["optimizer_states"] == sum(t.numel() * t.element_size() for s in opt.state.values()
                                          for t in s.values() if isinstance(t, torch.Tensor))
    assert M.memory(SmallCNN(), "2x3x17x20", backward=True, optimizer="sgd").at({})["optimizer_states"] == 0


def test_inference_peak_with_eval_batchnorm_differs_by_its_two_statistics():
    """Eval-mode BatchNorm: on meta tensors torch runs native_batch_norm, which returns the saved mean and inverse
    std (C values each); on a CPU it runs _native_batch_norm_legit_no_training, which returns them empty.  The peak
    is at that op, so it is 2 x C x 4 bytes (C = 8 channels, fp32) above MemTracker's."""
    mem = M.memory(SmallCNN(), "Bx3xHxW")
    for b, h, w in CNN_SIZES[:2]:
        got = mem.at({"B": b, "H": h, "W": w})
        assert "native_batch_norm" in got["peak_op"]
        assert got["peak"] == tracker_peak(SmallCNN, (b, 3, h, w), torch.float32, False) + 2 * 8 * 4


@pytest.fixture(scope="module")
def gpt2_fp32():
    return M.memory(gpt2(), "BxL", backward=True, input_dtype="int64")


GPT_SIZES = [(2, 7), (2, 32), (3, 33), (2, 64)]


def test_gpt2_saved_activations_and_peak_equal_torch(gpt2_fp32):
    for b, l in GPT_SIZES:
        got = gpt2_fp32.at({"B": b, "L": l})
        assert got["saved_activations"] == real_saved(gpt2, (b, l), torch.float32, ids=True)
        assert got["peak"] == tracker_peak(gpt2, (b, l), torch.float32, True, ids=True)


def test_a_batch_of_one_is_outside_the_formulas_and_derived_on_its_own(gpt2_fp32):
    """At B = 1 torch reshapes without copying where it copies a larger batch: the formula says B >= 2, refuses
    B = 1, and a derivation at B = 1 is exact."""
    assert any("B >= 2" in n for n in gpt2_fp32.notes)
    with pytest.raises(UsageError):
        gpt2_fp32.at({"B": 1, "L": 7})
    one = M.memory(gpt2(), "1xL", backward=True, input_dtype="int64")
    for l in (7, 32):
        assert one.at({"L": l})["saved_activations"] == real_saved(gpt2, (1, l), torch.float32, ids=True)


def test_gpt2_bf16_saved_activations_differ_by_layernorm_statistics():
    """bf16: LayerNorm saves its mean and rstd (one value per token each) as float32 on meta tensors (as on CUDA)
    and as bf16 on a CPU: 5 LayerNorms (2 per block, 1 final) x 2 statistics x (4 - 2) bytes = 20 bytes per token
    more than the CPU saves."""
    mem = M.memory(gpt2(), "BxL", backward=True, input_dtype="int64", dtype="bf16")
    for b, l in GPT_SIZES[1:3]:
        got = mem.at({"B": b, "L": l})["saved_activations"]
        assert got == real_saved(gpt2, (b, l), torch.bfloat16, ids=True) + 20 * b * l


def test_llama_saved_activations_and_inference_peak_equal_torch():
    mem = M.memory(llama(), "BxL", backward=True, input_dtype="int64")
    for b, l in GPT_SIZES[1:3]:
        got = mem.at({"B": b, "L": l})
        assert got["saved_activations"] == real_saved(llama, (b, l), torch.float32, ids=True)
        assert got["peak"] == tracker_peak(llama, (b, l), torch.float32, True, ids=True)


def test_resnet18_saved_activations_equal_torch():
    """Training mode (BatchNorm saves its batch statistics on every device; in eval mode meta tensors' kernel
    returns 2 x C statistics that a CPU's returns empty, as the eval-mode test above shows)."""
    import torchvision

    mem = M.memory("torchvision:resnet18", "Bx3x64x64", backward=True, train=True)
    for b in (2, 3):
        assert mem.at({"B": b})["saved_activations"] == real_saved(
            lambda: torchvision.models.resnet18(), (b, 3, 64, 64), torch.float32, train=True)
    model = torchvision.models.resnet18()
    assert mem.at({"B": 2})["params"] == sum(p.numel() * p.element_size() for p in model.parameters())


def test_fit_is_the_largest_value_within_the_budget(cnn_train):
    budget = 5_000_000
    found = cnn_train.fit("B", budget, {"H": 64, "W": 64})
    at = [cnn_train.at({"B": b, "H": 64, "W": 64})["peak"] for b in range(1, found["value"] + 2)]
    assert all(p <= budget for p in at[:-1]) and at[-1] > budget
    assert (found["peak"], found["next_peak"]) == (at[-2], at[-1])


def test_fit_in_a_device_memory_takes_its_datasheet_capacity(capsys):
    """--device h100-sxm: the H100 SXM datasheet's 80GB, five 16 GiB HBM3 stacks = 80 * 2**30 bytes; --fit without
    BYTES and --device alone give the same budget."""
    import json

    argv = ["memory", "tests/fixtures/my_models.py:build_net", "--input", "Bx3x32x32", "--json"]
    budgets = []
    for extra in (["--device", "h100-sxm"], ["--fit", "--device", "h100"], ["--fit", str(80 * 2**30)]):
        assert main(argv + extra) == 0
        fit = json.loads(capsys.readouterr().out)["fit"]
        budgets.append((fit["budget"], fit["value"], fit.get("device")))
    assert budgets[0] == budgets[1] and budgets[0][:2] == budgets[2][:2]
    assert budgets[0][0] == 80 * 2**30 and budgets[0][2] == "h100-sxm" and budgets[2][2] is None


def test_parse_bytes():
    assert parse_bytes("80GB") == 80 * 10**9
    assert parse_bytes("80GiB") == 80 * 2**30
    assert parse_bytes("1.5TB") == 1_500_000_000_000
    assert parse_bytes("123") == 123
    for bad in ("80 gigs", "", "1.5B", "-3GB"):
        with pytest.raises(UsageError):
            parse_bytes(bad)


def test_cli_help_says_what_is_not_counted(capsys):
    with pytest.raises(SystemExit):
        main(["memory", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "live tensor bytes" in out and "caching allocator" in out and "workspaces" in out


@pytest.mark.parametrize("argv", [
    ["memory", "torchvision:resnet18", "--input", "Bx3x64x64", "--fit", "80 gigs"],
    ["memory", "torchvision:resnet18", "--input", "1x3x64x64", "--optimizer", "adam"],
    ["memory", "torchvision:resnet18", "--input", "1x3x64x64", "--backward", "--master-weights"],
    ["memory", "torchvision:resnet18", "--input", "BxCx64x64", "--fit", "8GB"],
    ["memory", "torchvision:resnet18", "--input", "Bx3x64x64", "--fit", "8GB", "--device", "h100-sxm"],
    ["memory", "torchvision:resnet18", "--input", "Bx3x64x64", "--fit"],
    ["memory", "torchvision:resnet18", "--input", "Bx3x64x64", "--device", "laptop-cpu"],
    ["memory", "torchvision:resnet18", "--input", "Bx3x64x64", "--device", "h200-imaginary"],
    ["memory", "torchvision:resnet18", "--input", "1x3x64x64", "--device", "h100-sxm"],
])
def test_cli_bad_input_is_one_line(capsys, argv):
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "internal error" not in err, err


def test_cli_json_has_saved_and_peak(capsys):
    import json

    assert main(["memory", "torchvision:resnet18", "--input", "Bx3x64x64", "--backward", "--json", "--at",
                 "B=2"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert any("saved" in k for k in data["bytes"]) and "peak" in data["bytes"]
    assert data["evaluations"][0]["peak_op"]


def test_kv_cache_of_a_decode_step_equals_the_real_dynamic_cache():
    """One decode step with T cached tokens: ``kv_cache`` is the bytes of the DynamicCache's keys and values a real
    prefill of T tokens leaves (CPU, real tensors), at T of every residue."""
    import transformers

    cfg = transformers.LlamaConfig(num_hidden_layers=2, hidden_size=32, intermediate_size=64, num_attention_heads=4,
                                   num_key_value_heads=2, vocab_size=100, max_position_embeddings=512,
                                   attn_implementation="eager")
    model = transformers.LlamaForCausalLM(cfg).eval()
    mem = M.memory(model, "Bx1", past="T")
    for b, t in ((2, 7), (3, 32), (2, 33)):
        with torch.no_grad():
            cache = model(torch.randint(0, 100, (b, t)), use_cache=True).past_key_values
        held = sum(x.numel() * x.element_size() for layer in cache.layers for x in (layer.keys, layer.values))
        got = mem.at({"B": b, "T": t})
        assert got["kv_cache"] == held
        assert got["inputs"] == b * 1 * 8   # the new token's id, int64


@pytest.mark.parametrize("mode", ["full", "selective"])
def test_checkpointing_saved_activations_and_peak_equal_torch(mode, gpt2_fp32):
    """With the blocks (full) or the attention modules (selective) under torch.utils.checkpoint: what autograd
    keeps and the peak, against the real model wrapped the same way, and less kept than without."""
    from symcost.footprint.checkpoint import checkpointed

    def wrapped():
        model = gpt2()
        checkpointed(model, mode)
        return model

    mem = M.memory(gpt2(), "BxL", backward=True, input_dtype="int64", checkpoint=mode)
    plain = gpt2_fp32     # the same step without checkpointing
    assert any(f"--checkpoint {mode}" in n for n in mem.notes)
    for b, l in GPT_SIZES[:2]:
        got = mem.at({"B": b, "L": l})
        assert got["saved_activations"] == real_saved(wrapped, (b, l), torch.float32, ids=True)
        assert got["peak"] == tracker_peak(wrapped, (b, l), torch.float32, True, ids=True)
        assert got["saved_activations"] < plain.at({"B": b, "L": l})["saved_activations"]


def test_full_checkpointing_of_resnet18_blocks():
    import torchvision

    from symcost.footprint.checkpoint import checkpointed

    def wrapped():
        model = torchvision.models.resnet18()
        assert len(checkpointed(model, "full")) == 8   # 2 BasicBlocks in each of 4 stages
        return model

    mem = M.memory("torchvision:resnet18", "Bx3x64x64", backward=True, train=True, checkpoint="full")
    got = mem.at({"B": 3})
    assert got["saved_activations"] == real_saved(wrapped, (3, 3, 64, 64), torch.float32, train=True)
    assert got["peak"] == tracker_peak(wrapped, (3, 3, 64, 64), torch.float32, True, train=True)


def test_checkpointing_recompute_flops_equal_flop_counter_mode():
    """The trade beside the bytes: the step's FLOPs with checkpointing minus without, under symcost's ``torch``
    convention, equal FlopCounterMode's count of the real step with and without the wrapping."""
    from torch.utils.flop_counter import FlopCounterMode

    from symcost.footprint.checkpoint import checkpointed

    def step_flops(model, shape):
        with FlopCounterMode(display=False) as counter:
            out = model(torch.randn(*shape))
            out.backward(torch.ones_like(out))
        return counter.get_total_flops()

    mem = M.memory(SmallResNet(), "Bx3xHxW", backward=True, checkpoint="full")
    wrapped = SmallResNet()
    assert checkpointed(wrapped, "full") == ["blocks.0", "blocks.1"]
    for b, h, w in CNN_SIZES[:2]:
        got = mem.at({"B": b, "H": h, "W": w})
        shape = (b, 3, h, w)
        assert got["recompute_flops"] == step_flops(wrapped, shape) - step_flops(SmallResNet(), shape) > 0


class ResBlock(torch.nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = torch.nn.Conv2d(c, c, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(c)

    def forward(self, x):
        return torch.relu(x + self.bn(self.conv(x)))


class SmallResNet(torch.nn.Module):
    """A stem and two residual blocks in a Sequential: what --checkpoint full recomputes."""

    def __init__(self):
        super().__init__()
        self.stem = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.blocks = torch.nn.Sequential(ResBlock(8), ResBlock(8))
        self.head = torch.nn.Linear(8, 4)

    def forward(self, x):
        return self.head(self.blocks(self.stem(x)).mean((2, 3)))


def test_saved_activations_by_module_equal_torch(cnn_train):
    """Per module: the storages the real forward saves while that module is the innermost one running (module hooks
    on the real CNN), each once, under the module that saved it first."""
    model = SmallCNN().train()
    names = {id(m): n for n, m in model.named_modules()}
    own = {t.untyped_storage()._cdata for t in [*model.parameters(), *model.buffers()]}
    running, seen = [], {}

    def pack(t):
        st = t.untyped_storage()
        if st._cdata not in own and st._cdata not in seen:
            seen[st._cdata] = (st, running[-1], st.nbytes())
        return t

    def enter(module, args):
        running.append(names[id(module)])

    def leave(module, args, out):
        running.pop()

    hooks = [m.register_forward_pre_hook(enter) for m in model.modules()]
    hooks += [m.register_forward_hook(leave) for m in model.modules()]
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(torch.randn(3, 3, 32, 64))
    for h in hooks:
        h.remove()
    real = {}
    for _, module, nbytes in seen.values():
        real[module] = real.get(module, 0) + nbytes
    assert cnn_train.at({"B": 3, "H": 32, "W": 64})["saved_by_module"] == real
