"""Kinds of layer call, and the kernels eager PyTorch launches for one call.

A kind groups calls that attain about the same fraction of the roofline and cost about the same host time: a 1x1
convolution is a GEMM on a reshaped tensor, a kxk one an implicit GEMM with a halo, a depthwise one a memory-bound
stencil, so one peak cannot tell them apart.  ``kernels_of`` says which kernels a call runs: eager PyTorch on
CUDA adds a convolution's bias in a separate elementwise kernel (``fold_probe.txt`` of the H100 calibration: 53
such kernels in a folded ResNet-50), unless the device says its backend fuses that epilogue (oneDNN on a CPU).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

#: kind -> what it covers
KINDS: dict[str, str] = {
    "conv_kxk": "dense convolution with a kernel larger than 1 (implicit GEMM)",
    "conv_1x1": "dense 1x1 convolution (a GEMM on the channels)",
    "conv_grouped": "grouped or depthwise convolution (memory-bound stencil)",
    "linear": "nn.Linear, addmm (bias in the GEMM epilogue)",
    "matmul": "matmul, bmm, baddbmm",
    "gemv": "a linear or matmul whose output has one row per matrix (a decode step, batch 1): streams its weight",
    "attention": "scaled_dot_product_attention, multi-head attention (fused kernel)",
    "norm": "BatchNorm (eval: one scale-and-shift kernel), LayerNorm, GroupNorm",
    "elementwise": "activations and elementwise arithmetic (relu, add, mul, hardswish …)",
    "transcendental": "elementwise with exp, tanh, erf or sin per element (sigmoid, silu, gelu, softplus, mish, elu, "
                      "exp): a CPU's vector units bound them, not its memory",
    "softmax": "softmax, log_softmax",
    "pool": "max, average and adaptive pooling over windows",
    "reduction": "mean, sum, amax, norms over dimensions; global (adaptive to 1) pooling",
    "memory": "copies, embeddings, resizes",
    "bias_add": "a separate bias-add kernel after an unfused convolution",
    "view": "flatten, identity, eval-mode dropout: no kernel, host time only",
}

#: epilogues a backend may fuse into the main kernel
EPILOGUES: tuple[str, ...] = ("conv_bias",)

_FAMILY_KIND = {"norm": "norm", "pool": "pool", "reduction": "reduction", "memory": "memory",
                "embedding": "memory", "resize": "memory", "elementwise": "elementwise", "activation": "elementwise",
                "attention": "attention", "matmul": "matmul", "linear": "linear", "reshape": "view"}
_LAYER_KIND = {"softmax": "softmax", "log_softmax": "softmax", "dropout": "view",
               **{name: "transcendental" for name in ("elu", "gelu", "mish", "sigmoid", "silu", "softplus", "tanh",
                                                      "exp", "sin")}}
#: kernels per call where it is not one: GroupNorm computes statistics then applies them; multi-head attention
#: runs its input projection, the fused attention kernel and its output projection
_KERNELS = {"groupnorm": 2, "multihead_attention": 3}


def _rows(family: str, output_shape) -> int | None:
    """Rows of a GEMM's output per weight matrix: M of (..., M, N) for a matmul, every leading dim for a linear."""
    try:
        dims = [int(d) for d in output_shape]
    except (TypeError, ValueError):
        return None
    if family == "linear" and dims:
        return math.prod(dims[:-1])
    return dims[-2] if len(dims) >= 2 else 1


def _is_global(output_shape) -> bool:
    """An adaptive pooling's output is 1 in every pooled dimension (N, C and then the pooled ones)."""
    try:
        dims = [int(d) for d in output_shape]
    except (TypeError, ValueError):
        return False
    return len(dims) > 2 and all(d == 1 for d in dims[2:])


def kind_of(layer: str, family: str, args: dict | None = None, output_shape=None) -> str:
    """The kind of one call of catalog layer ``layer`` (of ``family``) with arguments ``args`` and output shape
    ``output_shape`` (a GEMM with one output row is a matrix-vector product, another kind)."""
    args = args or {}
    if family in ("linear", "matmul") and output_shape is not None and _rows(family, output_shape) == 1:
        return "gemv"
    if family == "conv":
        groups = int(args.get("groups", 1) or 1)
        if groups > 1:
            return "conv_grouped"
        k = args.get("kernel_size", 1)
        ks = [int(v) for v in (k if isinstance(k, (list, tuple)) else [k])]
        return "conv_1x1" if all(v == 1 for v in ks) else "conv_kxk"
    if layer in _LAYER_KIND:
        return _LAYER_KIND[layer]
    if layer.startswith("adaptive_") and _is_global(output_shape):
        return "reduction"      # a mean (or max) over the whole map, not a window
    return _FAMILY_KIND.get(family, "elementwise")


def is_conv(kind: str) -> bool:
    return kind.startswith("conv_")


@dataclass(frozen=True)
class Kernel:
    """One kernel of a layer call: its kind (which rate it runs at), FLOPs and bytes moved."""

    kind: str
    what: str
    flops: int
    bytes: int


def kernels_of(kind: str, layer: str, flops: int, nbytes: int, bias_flops: int, bias_bytes: int, out_bytes: int,
               fuses: tuple[str, ...]) -> list[Kernel]:
    """The kernels of one call of ``kind``: ``flops`` and ``nbytes`` are the whole call's; ``bias_flops`` and
    ``bias_bytes`` the part that is a convolution's bias (its adds, its parameter's bytes); ``out_bytes`` the
    output's bytes, which a separate bias-add kernel reads and writes again."""
    if kind == "view":
        return []
    if is_conv(kind) and bias_flops and "conv_bias" not in fuses:
        return [Kernel(kind, "convolution", flops - bias_flops, nbytes - bias_bytes),
                Kernel("bias_add", "bias add", bias_flops, 2 * out_bytes + bias_bytes)]
    n = _KERNELS.get(layer, 1)
    if n == 1:
        return [Kernel(kind, layer, flops, nbytes)]
    return [Kernel(kind, f"{layer} ({i + 1} of {n})", flops // n + (i < flops % n), nbytes // n + (i < nbytes % n))
            for i in range(n)]
