"""Hugging Face families beyond those of test_models.py / test_decode.py, found by a hunt for silent holes: small
configs on meta, symcost's ``torch`` totals against ``FlopCounterMode`` at lengths of every residue, parameters
against ``numel()``."""
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from symcost.tracing import trace
from helpers import at_point

transformers = pytest.importorskip("transformers")

LENGTHS = (7, 16, 33)  # odd, even, a multiple of 32 plus one


def small(model_type: str, **extra):
    """2 layers, width 64, 4 heads of 16, vocabulary 100; pad token 0 (the ids below are all 0: padding)."""
    cfg = transformers.AutoConfig.for_model(model_type, num_hidden_layers=2, hidden_size=64, num_attention_heads=4,
                                            intermediate_size=128, vocab_size=100, pad_token_id=0, **extra)
    with torch.device("meta"):
        model = transformers.AutoModel.from_config(cfg).eval()
    from symcost.moe import select_experts_implementation

    select_experts_implementation(model)  # a mixture of experts: an implementation that runs on meta (see README)
    return model


def ids(length: int):
    return torch.zeros(2, length, dtype=torch.long, device="meta")


def measured(model, length: int, backward: bool = False) -> int:
    # without a pad token, the model's padding warning (which reads token ids: Tensor.item()) checks nothing
    pad, model.config.pad_token_id = model.config.pad_token_id, None
    for p in model.parameters():
        p.grad = None
    try:
        with torch.enable_grad() if backward else torch.no_grad(), FlopCounterMode(display=False) as c:
            out = model(ids(length))[0]
            if backward:
                out.backward(torch.ones_like(out))
    finally:
        model.config.pad_token_id = pad
    return c.get_total_flops()


@pytest.mark.parametrize("model_type", ["deberta-v2", "deberta"])
def test_a_padding_warning_that_reads_token_ids_does_not_refuse_the_model(model_type):
    # was refused: warn_if_padding_and_no_attention_mask calls Tensor.item() on the ids, only to log a warning
    model = small(model_type)
    mc = trace(model, (2, "L"), input_dtype="int64")
    assert mc.uncovered == {}
    for length in LENGTHS:
        assert mc.evaluate({"L": length}, "torch")["flops"] == measured(model, length), (model_type, length)
    assert mc.evaluate({"L": 7}, "torch")["params"] == sum(p.numel() for p in model.parameters())
    bw = trace(model, (2, "L"), input_dtype="int64", backward=True)
    for length in LENGTHS:
        values = at_point(bw, {"L": length}, "torch",  # a sliding window's own path below it: traced there
                          lambda: trace(model, (2, length), input_dtype="int64", backward=True))
        assert values["flops"] == measured(model, length, True), (model_type, length)
    # the warning is back once the trace is over
    assert "warn_if_padding_and_no_attention_mask" not in vars(model)


@pytest.mark.parametrize(("model_type", "extra"), [
    ("gpt_oss", {"num_key_value_heads": 2, "head_dim": 16, "num_local_experts": 4, "num_experts_per_tok": 2}),
    ("roc_bert", {}),
])
def test_backward_through_an_in_place_op_on_a_view(model_type, extra):
    # was refused ("no symbolic formula for size 28800"): autograd's flat buffer of a view's base, new_zeros([numel])
    model = small(model_type, **extra)
    bw = trace(model, (2, "L"), input_dtype="int64", backward=True)
    for length in LENGTHS:
        values = at_point(bw, {"L": length}, "torch",  # a sliding window's own path below it: traced there
                          lambda: trace(model, (2, length), input_dtype="int64", backward=True))
        assert values["flops"] == measured(model, length, True), (model_type, length)


@pytest.mark.parametrize(("model_type", "extra"), [
    ("convbert", {}), ("roformer", {}), ("megatron-bert", {}), ("big_bird", {"attention_type": "original_full"}),
])
def test_an_encoder_that_builds_its_own_mask_of_ones_is_traced_unpadded(model_type, extra):
    # was refused: with no attention mask given, these build one of ones and ask transformers whether it masks any
    # token (padding_mask.all(): Tensor.item() on meta).  The reference runs on real CPU tensors, where it is asked
    cfg = transformers.AutoConfig.for_model(model_type, num_hidden_layers=2, hidden_size=64, num_attention_heads=4,
                                            intermediate_size=128, vocab_size=100, pad_token_id=None, **extra)
    torch.manual_seed(0)
    real = transformers.AutoModel.from_config(cfg).eval()
    with torch.device("meta"):
        model = transformers.AutoModel.from_config(cfg).eval()
    mc = trace(model, (2, "L"), input_dtype="int64")
    for length in LENGTHS:
        with torch.no_grad(), FlopCounterMode(display=False) as c:
            real(torch.zeros(2, length, dtype=torch.long))
        assert mc.evaluate({"L": length}, "torch")["flops"] == c.get_total_flops(), (model_type, length)
    assert mc.evaluate({"L": 7}, "torch")["params"] == sum(p.numel() for p in real.parameters())


def test_an_attention_mask_given_as_an_input_is_not_assumed_unpadded():
    from symcost.errors import NeedsTensorValues

    model = small("convbert")
    with pytest.raises(NeedsTensorValues, match="_ignore_bidirectional_mask_sdpa"):
        trace(model, {"input_ids": (2, "L"), "attention_mask": (2, "L")}, input_dtype="int64")


def test_xlnet_relative_positions_twice_the_length_less_one():
    # was refused ("no symbolic formula for size 449"): rel_shift slices XLNet's 2L relative positions to 2L - 1, a
    # size k*x - c; its forward builds position tensors on the CPU, so the reference runs on real CPU tensors
    cfg = transformers.AutoConfig.for_model("xlnet", n_layer=2, d_model=64, n_head=4, d_inner=128, vocab_size=100)
    with torch.device("meta"):
        meta = transformers.AutoModel.from_config(cfg).eval()
    mc = trace(meta, (2, "L"), input_dtype="int64")
    model = transformers.AutoModel.from_config(cfg).eval()
    for length in LENGTHS:
        with torch.no_grad(), FlopCounterMode(display=False) as c:
            model(torch.zeros(2, length, dtype=torch.long))
        assert mc.evaluate({"L": length}, "torch")["flops"] == c.get_total_flops(), length
    assert mc.evaluate({"L": 7}, "torch")["params"] == sum(p.numel() for p in model.parameters())
    bw = trace(meta, (2, "L"), input_dtype="int64", backward=True)
    for length in LENGTHS:
        for p in model.parameters():
            p.grad = None
        with FlopCounterMode(display=False) as c:
            out = model(torch.zeros(2, length, dtype=torch.long))[0]
            out.backward(torch.ones_like(out))
        assert bw.evaluate({"L": length}, "torch")["flops"] == c.get_total_flops(), length
