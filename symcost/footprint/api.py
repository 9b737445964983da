"""``memory(target, input_shape, ...)``: the options checked, then one derivation (``build``) or formulas in config
fields too (``config``)."""
from __future__ import annotations

from ..errors import UsageError
from .result import DTYPES, OPTIMIZERS, Memory


def memory(target, input_shape, *, backward: bool = False, train: bool = False, dtype: str = "fp32",
           optimizer: str | None = None, momentum: bool = False, master_weights: bool = False,
           input_dtype: str | None = None, past=None, checkpoint: str | None = None,
           progress: bool = False, config=None, checks: int = 3, seed: int = 0) -> Memory:
    """The memory formulas of ``target`` (a target string such as ``"torchvision:resnet18"`` or an ``nn.Module``)
    on ``input_shape`` (``"Bx3xHxW"``, a tuple of ints and symbol names, or named shapes as ``symcost.trace``).

    ``backward``: a training step (forward under grad mode, backward seeded with ones of the output's shape, as
    ``symcost model --backward``); otherwise one forward under ``no_grad``.  ``train``: training mode (dropout
    masks, BatchNorm batch statistics).  ``dtype``: fp32, bf16 or fp16 (the model and its floating-point inputs
    cast to it), or mixed (bf16 with fp32 master weights).  ``optimizer``: sgd (no state; ``momentum``: one buffer
    per parameter), adam or adamw (two buffers per parameter, and a 4-byte step counter per parameter tensor);
    states in the parameters' dtype, or fp32 with ``master_weights``.  ``input_dtype``: "int64" for token ids
    into an ``nn.Module`` (a target string knows its own; floating-point inputs follow ``dtype``).  ``past``: one
    decode step of an ``hf:`` decoder on ``input_shape`` = B x L new ids with a ``DynamicCache`` of ``past`` tokens
    (a number or a symbol name), the cache's bytes under ``kv_cache``.  ``checkpoint``: "full" (each block
    recomputed in the backward) or "selective" (attention only), see ``footprint.checkpoint``.  ``config``
    (``"hidden_size=d,num_hidden_layers=n"`` or a dict, with an ``hf:`` or ``file.py:factory`` target): formulas in
    those configuration symbols too, fitted and verified at ``checks`` further configurations (``seed``), a
    ``footprint.config.ConfigMemory``.
    """
    from .build import derive_memory

    if dtype not in DTYPES:
        raise UsageError(f"dtype {dtype!r}: expected one of {', '.join(DTYPES)}")
    if optimizer is not None and optimizer not in OPTIMIZERS:
        raise UsageError(f"optimizer {optimizer!r}: expected one of {', '.join(OPTIMIZERS)}")
    if (optimizer or master_weights) and not backward:
        raise UsageError("optimizer states and master weights belong to a training step: add backward=True "
                         "(--backward)")
    if checkpoint and not backward:
        raise UsageError("checkpointing trades memory for recomputation in the backward: add backward=True "
                         "(--backward)")
    if past is not None and backward:
        raise UsageError("--past is one decode step (inference): it does not combine with --backward")
    if momentum and optimizer != "sgd":
        raise UsageError("momentum is SGD's option (adam and adamw always keep two states)")
    master = master_weights or dtype == "mixed"
    if master and dtype == "fp32":
        raise UsageError("master weights are an fp32 copy of bf16/fp16 parameters: use --dtype bf16, fp16 or mixed")
    options = dict(backward=backward, train=train, dtype=dtype, optimizer=optimizer, momentum=momentum,
                   master=master, input_dtype=input_dtype, past=past, checkpoint=checkpoint)
    if config is not None:
        from .config import memory_config

        return memory_config(target, input_shape, config, checks=checks, seed=seed, progress=progress, **options)
    return derive_memory(target, input_shape, progress=progress, **options)
