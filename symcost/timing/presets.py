"""Named devices, each number's source in its ``source``.

``DATASHEET_PRESETS`` are plain rooflines from datasheets.  ``PRESETS`` holds what ``--device NAME`` gives: the
laptop CPU and the A100 as datasheet rooflines, ``h100-sxm`` fitted per kind to measured ResNet-50 and MobileNetV2
layer times (``symcost.timing.fit.h100_device``; rerun by ``bench/latency_h100_fit.py``), and ``h100-sxm-datasheet``,
the naive roofline it is compared against.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from .devices import Device, KindRate

#: memory capacities (``symcost memory --device``), from the datasheets: "GPU Memory 80GB" for the A100 80GB SXM
#: (HBM2e) and the H100 SXM (HBM3).  HBM capacities are binary, five 16 GiB stacks: 80 GiB = 85,899,345,920 bytes.
#: What torch can allocate is less (the driver's reservation and the CUDA context take part of it).
A100_80GB_MEMORY = 80 * 2**30
H100_SXM_MEMORY = 80 * 2**30

#: the plain datasheet rooflines (one peak, one bandwidth, one t0 per call), as before the per-kind model; the
#: seed-001 page is derived on these.  Dense (not 2:4-sparse) tensor-core figures.
DATASHEET_PRESETS: dict[str, Device] = {d.name: d for d in (
    Device(
        "laptop-cpu", peak_flops=384e9, bandwidth=51.2e9, overhead_s=10e-6,
        source="a nominal 4-core AVX2 laptop CPU, by arithmetic on its specification, not a measurement: "
               "4 cores x 3.0 GHz x 2 FMA units x 8 fp32 lanes x 2 FLOP per FMA = 384 GFLOP/s; dual-channel "
               "DDR4-3200 = 2 x 8 bytes x 3.2e9 transfers/s = 51.2 GB/s (JEDEC DDR4-3200); 10 us per layer call "
               "for PyTorch eager on a CPU (nn.Module call and operator dispatch, order of magnitude; "
               "`symcost calibrate` measures this machine's)"),
    Device(
        "a100-sxm4-80gb", peak_flops=19.5e12, bandwidth=2.039e12, overhead_s=5e-6, memory_bytes=A100_80GB_MEMORY,
        peak_flops_by_dtype={"fp32": 19.5e12, "tf32": 156e12, "fp16": 312e12, "bf16": 312e12, "int8": 624e12,
                             "fp64": 9.7e12},
        source="NVIDIA A100 Tensor Core GPU datasheet, A100 80GB SXM: FP32 19.5 TFLOPS, FP64 9.7 TFLOPS, tensor "
               "core TF32 156 / BF16 312 / FP16 312 TFLOPS, INT8 624 TOPS (dense; the datasheet's starred figures "
               "are twice these, with structured sparsity), HBM2e 2,039 GB/s; 5 us per layer call is an "
               "order-of-magnitude kernel launch plus eager dispatch cost, not a datasheet figure. fp32 matmuls "
               "run on tensor cores only with TF32 enabled: pass --dtype tf32 for that"),
    Device(
        "h100-sxm", peak_flops=66.9e12, bandwidth=3.35e12, overhead_s=5e-6, memory_bytes=H100_SXM_MEMORY,
        peak_flops_by_dtype={"fp32": 66.9e12, "tf32": 494.7e12, "fp16": 989.4e12, "bf16": 989.4e12,
                             "int8": 1978.9e12, "fp64": 33.5e12},
        source="NVIDIA H100 Tensor Core GPU datasheet, H100 SXM5: FP32 67 TFLOPS, FP64 34 TFLOPS, tensor core "
               "TF32 989 / BF16 1,979 / FP16 1,979 TFLOPS, INT8 3,958 TOPS with sparsity, half that dense "
               "(494.7 / 989.4 / 989.4 / 1,978.9), HBM3 3.35 TB/s; 5 us per layer call is an order-of-magnitude "
               "kernel launch plus eager dispatch cost, not a datasheet figure"),
)}

#: H100 SXM fitted per kind to measured ResNet-50 and MobileNetV2 layer times (``symcost.timing.fit.h100_device()``
#: gives these numbers, rounded here to 3 digits; tests/test_timing.py refits and compares)
H100_FITTED = Device(
    "h100-sxm", peak_flops=51.1e12, bandwidth=2927.3e9, overhead_s=10e-6, launch_s=8e-6, kernel_s=5e-6,
    asynchronous=True, return_s=5e-6, fuses=("depthwise_bias",), tf32_conv=True, tf32_matmul=False,
    memory_bytes=H100_SXM_MEMORY,
    peak_flops_by_dtype={"fp32": 51.1e12, "tf32": 375.6e12, "fp16": 737.3e12, "bf16": 763.2e12},
    kinds={
        "attention": KindRate(host_s=2.15e-05, latency_s=3.98e-05),
        "bias_add": KindRate(memory=0.885),
        "conv_1x1": KindRate(host_s=2.72e-05, compute=0.24, memory=0.835),
        "conv_depthwise": KindRate(host_s=2.22e-05, compute=0.946, memory=0.308),
        "conv_grouped": KindRate(host_s=3.89e-05, compute=0.574, memory=0.187),
        "conv_kxk": KindRate(host_s=3.89e-05, compute=0.574, memory=0.187),
        "conv_pooled": KindRate(host_s=2.72e-05, compute=0.24, memory=0.835),
        "elementwise": KindRate(host_s=1.73e-05, memory=1.07),
        "gemv": KindRate(host_s=2.15e-05),
        "linear": KindRate(host_s=2.15e-05, latency_s=3.98e-05),
        "matmul": KindRate(host_s=2.15e-05, latency_s=3.98e-05),
        "memory": KindRate(host_s=1.73e-05, memory=1.07),
        "norm": KindRate(host_s=2.64e-05, memory=0.395),
        "pool": KindRate(host_s=1.04e-05, memory=0.395),
        "reduction": KindRate(host_s=1.28e-05, memory=0.211),
        "softmax": KindRate(host_s=1.28e-05, memory=0.211),
        "transcendental": KindRate(host_s=1.73e-05, memory=1.07),
        "view": KindRate(host_s=1e-06),
    },
    kinds_by_dtype={
        "fp16": {
            "attention": KindRate(latency_s=3.55e-05),
            "bias_add": KindRate(memory=0.572),
            "conv_1x1": KindRate(compute=0.187, memory=0.447),
            "conv_depthwise": KindRate(compute=0.946, memory=0.271),
            "conv_grouped": KindRate(compute=0.447, memory=0.187),
            "conv_kxk": KindRate(compute=0.447, memory=0.187),
            "conv_pooled": KindRate(compute=0.187, memory=0.447),
            "elementwise": KindRate(memory=0.835),
            "linear": KindRate(latency_s=3.55e-05),
            "matmul": KindRate(latency_s=3.55e-05),
            "memory": KindRate(memory=0.835),
            "norm": KindRate(host_s=4.09e-05, memory=0.395, kernel_s=2.52e-05),
            "pool": KindRate(memory=0.187),
            "reduction": KindRate(memory=0.113),
            "softmax": KindRate(memory=0.113),
            "transcendental": KindRate(memory=0.835),
        },
        "fp32": {
            "attention": KindRate(latency_s=5.01e-05),
            "bias_add": KindRate(memory=0.885),
            "conv_1x1": KindRate(compute=0.271, memory=0.946),
            "conv_depthwise": KindRate(compute=0.0368, memory=0.65),
            "conv_grouped": KindRate(compute=0.574, memory=0.211),
            "conv_kxk": KindRate(compute=0.574, memory=0.211),
            "conv_pooled": KindRate(compute=0.271, memory=0.946),
            "elementwise": KindRate(memory=1.07),
            "linear": KindRate(latency_s=5.01e-05),
            "matmul": KindRate(latency_s=5.01e-05),
            "memory": KindRate(memory=1.07),
            "norm": KindRate(memory=0.737),
            "pool": KindRate(memory=0.395),
            "reduction": KindRate(memory=0.211),
            "softmax": KindRate(memory=0.211),
            "transcendental": KindRate(memory=1.07),
        },
    },
    source="fitted to the shared H100 calibration (tests/fixtures/h100: one H100 80GB HBM3, torch 2.11 cu130, eager, "
           "inference_mode, cudnn.benchmark, cuDNN TF32 on, matmul TF32 off; torchvision ResNet-50 and MobileNetV2, "
           "every leaf module timed alone at fp32 batch 1, fp32 batch 64 and fp16 batch 64): roofs are the attained "
           "8192^3 GEMM per dtype (fp32 51.1, tf32 375.6, fp16 737.3, bf16 763.2 TFLOP/s) and copy bandwidth "
           "(2927 GB/s read + write) of calib.json; host seconds per call per kind from both models' batch-1 fp32 "
           "layer times (median fit: every call there is host-bound); compute and memory fractions per kind and "
           "dtype from their batch-64 fp32 and fp16 layer times (absolute log error on a grid), the Linear as a "
           "start-up time on the full GEMM peak (ResNet-50's fc and MobileNetV2's classifier). Per kind: conv_kxk "
           "from ResNet-50's 3x3 and 7x7 convolutions and MobileNetV2's stem; conv_1x1 from both models' 1x1 "
           "convolutions (ResNet-50's bottlenecks, MobileNetV2's expansions and projections); conv_depthwise from "
           "MobileNetV2's 17 depthwise 3x3 convolutions (stride 1 and 2), at the strict fp32 peak (PyTorch's own "
           "depthwise kernel: no tensor cores); elementwise from ResNet-50's ReLUs and MobileNetV2's ReLU6s; norm "
           "from both models' BatchNorms; pool from ResNet-50's max pool; reduction from its global average pool; "
           "gemv from the batch-1 fc and classifier. fp16 BatchNorm's extra host time (14.5 us) from the batch-1 "
           "whole forwards, unfolded minus folded, fp16 against fp32, pooled over both models' 105 BatchNorms "
           "(ResNet-50 20.6, MobileNetV2 8.2 us each; *_e2e.csv, each scaled to its layer file's clock by its own "
           "whole-model row); fp16 BatchNorm's least kernel time (25.2 us) with its fraction from both models' "
           "batch-64 fp16 BatchNorms (PyTorch's own kernels, not cuDNN's: 50-97 us on maps where fp32 takes 27); "
           "the bias-add kernel's bandwidth fraction from the profiler total of the 53 bias adds of the folded "
           "ResNet-50 (fold_probe.txt). A depthwise convolution's bias is added inside its kernel "
           "outside fp16 (fuses depthwise_bias: eager PyTorch runs fp32 NCHW depthwise convolutions in its own "
           "kernel, which takes the bias, and fp16 ones in cuDNN). Not from the data: launch_s 8 us per extra kernel "
           "(a conv bias costs about 8 us more per layer), kernel_s 5 us least kernel time (of 2, 5 and 8 us tried, "
           "the one that ranks ResNet-50's batch-1 calls best), return_s 5 us of host time after a call's launches "
           "(its near-empty kernel runs meanwhile), overhead_s 10 us for a kind without its own host time, view calls "
           "1 us (an nn.Identity call takes 0.56 us on an AMD EPYC; the layer files' harness measured 11.7 us for "
           "MobileNetV2's eval Dropout, its own floor, which a forward does not pay). Kinds neither model has "
           "borrow a measured kind's rates, unchecked: conv_grouped (several channels per group) <- conv_kxk (a GEMM "
           "per group); conv_pooled (squeeze-excitation's 1x1 convolutions on a 1x1 map) <- conv_1x1 (the same "
           "cuDNN call; at that size the kernel floor and the host time decide); transcendental (sigmoid, SiLU, "
           "GELU) <- elementwise (ReLU/ReLU6: on this GPU an exp per element costs far less than the 8 bytes an fp32 "
           "element moves, so these kernels stream like ReLU); hardswish and hardsigmoid are elementwise, and so is "
           "squeeze-excitation's multiply (a broadcast mul); matmul and attention <- linear; softmax <- reduction; "
           "memory <- elementwise; a matrix-vector product (gemv) runs at the full roofs")

PRESETS: dict[str, Device] = {
    "laptop-cpu": DATASHEET_PRESETS["laptop-cpu"],
    "a100-sxm4-80gb": DATASHEET_PRESETS["a100-sxm4-80gb"],
    "h100-sxm": H100_FITTED,
    "h100-sxm-datasheet": replace(DATASHEET_PRESETS["h100-sxm"], name="h100-sxm-datasheet"),
}
PRESET_ALIASES = {"a100": "a100-sxm4-80gb", "h100": "h100-sxm", "laptop": "laptop-cpu", "cpu": "laptop-cpu"}


def get_device(spec: str) -> Device:
    """A preset by name (or alias), or a device JSON file (as written by ``symcost calibrate``)."""
    key = spec.strip()
    name = PRESET_ALIASES.get(key.lower(), key.lower())
    if name in PRESETS:
        return PRESETS[name]
    if Path(key).is_file():
        return Device.load(key)
    if key.endswith(".json") or "/" in key:
        raise ValueError(f"device file {key!r} not found")
    raise ValueError(f"unknown device {spec!r}: give a preset ({', '.join([*PRESETS, *PRESET_ALIASES])}) "
                     "or a JSON file written by `symcost calibrate`")
