"""symcost memory's predicted peak beside torch.cuda.max_memory_allocated, on a CUDA GPU.

    python bench/memory_cuda.py            # a Markdown table for bench/RESULTS.md (needs a CUDA GPU)

Three steps, each predicted by ``symcost.memory`` at the same sizes and run for real on the GPU with the peak
statistics reset just before the step: a training step of a small Llama (eager attention, fp32 and bf16; forward,
then backward seeded with ones of the last hidden state, as ``symcost memory --backward``), a decode step of the same
Llama (one new token per sequence after a prefill of T tokens into a ``DynamicCache``, under ``no_grad``), and a
training step of torchvision's ResNet-50 (training mode, fp32).  The predicted peak is live tensor bytes; what
``max_memory_allocated`` reports also has the caching allocator's rounding (each block a multiple of 512 bytes),
cuBLAS/cuDNN workspaces taken from the same allocator, and whatever a CUDA kernel keeps that its meta counterpart
does not (a dropout mask of 1 byte per element, flash attention's log-sum-exp): the difference is printed, not
hidden.  Nothing here runs in tests; without CUDA it refuses.
"""
from __future__ import annotations

import sys

import torch

LLAMA = {"hidden_size": 256, "num_hidden_layers": 4, "num_attention_heads": 8, "num_key_value_heads": 4,
         "intermediate_size": 688, "vocab_size": 1000, "max_position_embeddings": 4096}


def llama(dtype, device):
    from transformers import LlamaConfig, LlamaModel

    cfg = LlamaConfig(**LLAMA, attn_implementation="eager")
    with torch.device(device):
        return LlamaModel(cfg).to(dtype)


class Hidden(torch.nn.Module):
    """The last hidden state, the whole output kept through the backward (as symcost's step keeps it)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, ids):
        self.out = self.model(ids)
        return self.out.last_hidden_state


def measured_training(make, x) -> int:
    model = make()
    x = x.cuda()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    out = model(x)
    out.backward(torch.ones_like(out))
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated()


def measured_decode(model, batch: int, past: int) -> int:
    from transformers import DynamicCache

    with torch.no_grad():
        cache = DynamicCache()
        model(torch.zeros(batch, past, dtype=torch.long, device="cuda"), past_key_values=cache, use_cache=True)
        ids = torch.zeros(batch, 1, dtype=torch.long, device="cuda")
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        model(ids, past_key_values=cache, use_cache=True)
        torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated()


def rows():
    import torchvision

    import symcost

    for dtype, name in ((torch.float32, "fp32"), (torch.bfloat16, "bf16")):
        b, l = 8, 512
        mem = symcost.memory(Hidden(llama(dtype, "meta")), "BxL", backward=True, input_dtype="int64", dtype=name)
        got = measured_training(lambda dtype=dtype: Hidden(llama(dtype, "cuda")), torch.zeros(b, l, dtype=torch.long))
        yield f"Llama {LLAMA['num_hidden_layers']}x{LLAMA['hidden_size']} training step, {name}, B={b} L={l}", \
            mem.at({"B": b, "L": l})["peak"], got
        torch.cuda.empty_cache()
    b, t = 8, 2048
    mem = symcost.memory(llama(torch.bfloat16, "meta"), "Bx1", past="T", dtype="bf16")
    got = measured_decode(llama(torch.bfloat16, "cuda").eval(), b, t)
    yield f"Llama decode step, bf16, B={b}, T={t} cached", mem.at({"B": b, "T": t})["peak"], got
    torch.cuda.empty_cache()
    b = 32
    mem = symcost.memory("torchvision:resnet50", "Bx3x224x224", backward=True, train=True)
    got = measured_training(lambda: torchvision.models.resnet50().cuda().train(), torch.randn(b, 3, 224, 224))
    yield f"ResNet-50 training step, fp32, B={b}", mem.at({"B": b})["peak"], got


def main() -> int:
    if not torch.cuda.is_available():
        print("bench/memory_cuda.py needs a CUDA GPU (torch.cuda.is_available() is False): it compares the predicted "
              "peak with torch.cuda.max_memory_allocated", file=sys.stderr)
        return 2
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, caching allocator defaults")
    print("| step | predicted peak (live tensor bytes) | max_memory_allocated | difference |\n|:--|--:|--:|--:|")
    for what, predicted, got in rows():
        print(f"| {what} | {predicted:,} | {got:,} | {got - predicted:+,} ({(got - predicted) / predicted:+.2%}) |",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
