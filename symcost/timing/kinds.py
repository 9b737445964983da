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
    "conv_grouped": "grouped convolution with several input channels per group (ResNeXt): a GEMM per group",
    "conv_depthwise": "depthwise convolution, one input channel per group (MobileNet, EfficientNet): a "
                      "memory-bound stencil in kernels of its own",
    "conv_pooled": "dense 1x1 convolution on a 1x1 map (squeeze-excitation's squeeze and excite): a small GEMM of "
                   "one row per image, launched as a convolution",
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

#: epilogues a backend may fuse into the main kernel: every convolution's bias (oneDNN on a CPU), or a depthwise
#: convolution's outside half precision: eager CUDA runs an fp32 or bf16 NCHW depthwise convolution in PyTorch's
#: own depthwise kernel, which adds the bias, and an fp16 one (``use_cudnn_depthwise``: at stride 1 always), a
#: transposed one and every dense one in cuDNN, followed by a separate bias add
EPILOGUES: tuple[str, ...] = ("conv_bias", "depthwise_bias")

#: kind -> the kind whose rate it takes on a device that has none of its own (a device file written before the
#: kind existed: its grouped-convolution rate was measured on a depthwise call, ``symcost calibrate``'s case)
FALLBACK: dict[str, str] = {"conv_depthwise": "conv_grouped", "conv_grouped": "conv_kxk", "conv_pooled": "conv_1x1"}

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


def kind_chain(kind: str) -> list[str]:
    """``kind`` and the kinds whose rates it falls back to, in order (``FALLBACK``)."""
    chain = [kind]
    while chain[-1] in FALLBACK:
        chain.append(FALLBACK[chain[-1]])
    return chain


def _conv_kind(args: dict, output_shape) -> str:
    groups = int(args.get("groups", 1) or 1)
    if groups > 1:
        # depthwise: each group sees one input channel; without in_channels the call is only known to be grouped
        return "conv_depthwise" if int(args.get("in_channels", 0) or 0) == groups else "conv_grouped"
    k = args.get("kernel_size", 1)
    ks = [int(v) for v in (k if isinstance(k, (list, tuple)) else [k])]
    if not all(v == 1 for v in ks):
        return "conv_kxk"
    return "conv_pooled" if _is_global(output_shape) else "conv_1x1"


def kind_of(layer: str, family: str, args: dict | None = None, output_shape=None) -> str:
    """The kind of one call of catalog layer ``layer`` (of ``family``) with arguments ``args`` and output shape
    ``output_shape`` (a GEMM with one output row is a matrix-vector product, another kind).  A family with no
    kind here is refused (``LayerError``): a new layer family must say which rate it runs at, rather than be timed
    as an elementwise kernel without anyone deciding so."""
    args = args or {}
    from ..registry import REGISTRY

    own = getattr(REGISTRY.get(layer), "time_kind", "")   # a layer class that names its kind (a user's layer)
    if own:
        if own not in KINDS:
            from ..errors import LayerError

            raise LayerError(f"layer {layer!r}: time_kind {own!r} is not a kind of the time model: one of "
                             f"{', '.join(KINDS)}")
        return own
    if family in ("linear", "matmul") and output_shape is not None and _rows(family, output_shape) == 1:
        return "gemv"
    if family == "conv":
        return _conv_kind(args, output_shape)
    if layer in _LAYER_KIND:
        return _LAYER_KIND[layer]
    if layer.startswith("adaptive_") and _is_global(output_shape):
        return "reduction"      # a mean (or max) over the whole map, not a window
    if family not in _FAMILY_KIND:
        from ..errors import LayerError

        raise LayerError(f"layer {layer!r} is of family {family!r}, which has no time-model kind: map the family to "
                         f"one of {', '.join(KINDS)} in symcost.timing.kinds (_FAMILY_KIND)")
    return _FAMILY_KIND[family]


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
               fuses: tuple[str, ...], dtype: str = "fp32") -> list[Kernel]:
    """The kernels of one call of ``kind``: ``flops`` and ``nbytes`` are the whole call's; ``bias_flops`` and
    ``bias_bytes`` the part that is a convolution's bias (its adds, its parameter's bytes); ``out_bytes`` the
    output's bytes, which a separate bias-add kernel reads and writes again; ``dtype`` decides whether a depthwise
    convolution's bias is fused (``EPILOGUES``)."""
    if kind == "view":
        return []
    own_depthwise = kind == "conv_depthwise" and not layer.startswith("conv_transpose")    # cuDNN transposes
    fused = "conv_bias" in fuses or (own_depthwise and "depthwise_bias" in fuses and dtype != "fp16")
    if is_conv(kind) and bias_flops and not fused:
        return [Kernel(kind, "convolution", flops - bias_flops, nbytes - bias_bytes),
                Kernel("bias_add", "bias add", bias_flops, 2 * out_bytes + bias_bytes)]
    n = _KERNELS.get(layer, 1)
    if n == 1:
        return [Kernel(kind, layer, flops, nbytes)]
    return [Kernel(kind, f"{layer} ({i + 1} of {n})", flops // n + (i < flops % n), nbytes // n + (i < nbytes % n))
            for i in range(n)]
