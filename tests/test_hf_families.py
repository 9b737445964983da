"""Hugging Face families beyond those of test_models.py / test_decode.py, found by a hunt for silent holes: small
configs on meta, symcost's ``torch`` totals against ``FlopCounterMode`` at lengths of every residue, parameters
against ``numel()``."""
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from symcost.tracing import trace

transformers = pytest.importorskip("transformers")

LENGTHS = (7, 16, 33)  # odd, even, a multiple of 32 plus one


def small(model_type: str, **extra):
    """2 layers, width 64, 4 heads of 16, vocabulary 100; pad token 0 (the ids below are all 0: padding)."""
    cfg = transformers.AutoConfig.for_model(model_type, num_hidden_layers=2, hidden_size=64, num_attention_heads=4,
                                            intermediate_size=128, vocab_size=100, pad_token_id=0, **extra)
    with torch.device("meta"):
        return transformers.AutoModel.from_config(cfg).eval()


def ids(length: int):
    return torch.zeros(2, length, dtype=torch.long, device="meta")


def measured(model, length: int, backward: bool = False) -> int:
    # an attention mask, so that the model's padding warning (which reads token ids) has nothing to check; the mask
    # of ones changes no count FlopCounterMode makes (matmuls only)
    mask = torch.ones(2, length, dtype=torch.long, device="meta")
    for p in model.parameters():
        p.grad = None
    with torch.enable_grad() if backward else torch.no_grad(), FlopCounterMode(display=False) as c:
        out = model(ids(length), attention_mask=mask)[0]
        if backward:
            out.backward(torch.ones_like(out))
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
        assert bw.evaluate({"L": length}, "torch")["flops"] == measured(model, length, True), (model_type, length)
    # the warning is back once the trace is over
    assert "warn_if_padding_and_no_attention_mask" not in vars(model)
