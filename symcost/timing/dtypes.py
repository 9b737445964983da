"""Dtype names and sizes: the bytes a tensor element moves."""
from __future__ import annotations

#: bytes per element, by the dtype names the command line accepts
DTYPE_BYTES: dict[str, int] = {"fp64": 8, "fp32": 4, "tf32": 4, "fp16": 2, "bf16": 2, "int8": 1}
_ALIASES = {"float64": "fp64", "double": "fp64", "float32": "fp32", "float": "fp32", "float16": "fp16",
            "half": "fp16", "bfloat16": "bf16", "qint8": "int8", "uint8": "int8"}
#: the torch dtype that runs a model stored in each of our dtypes (tf32 is fp32 storage; int8 needs quantisation)
TORCH_DTYPES = {"fp64": "float64", "fp32": "float32", "tf32": "float32", "fp16": "float16", "bf16": "bfloat16"}


def dtype_name(dtype: str) -> str:
    """The canonical name (``fp32``, ``fp16``, ``bf16``, ``int8`` …) of a dtype spelled either way."""
    key = str(dtype).strip().lower().removeprefix("torch.")
    key = _ALIASES.get(key, key)
    if key not in DTYPE_BYTES:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of: {', '.join(DTYPE_BYTES)}")
    return key


def itemsize(dtype: str) -> int:
    """Bytes per element: fp32 4, fp16/bf16 2, int8 1."""
    return DTYPE_BYTES[dtype_name(dtype)]


def torch_dtype(dtype: str):
    import torch

    name = dtype_name(dtype)
    if name not in TORCH_DTYPES:
        raise ValueError(f"{name} cannot be measured by running the model in that dtype (it needs a quantised "
                         "model); predictions for it need no measurement")
    return getattr(torch, TORCH_DTYPES[name])
