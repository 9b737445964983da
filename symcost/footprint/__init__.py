"""Memory as formulas: ``symcost.memory("torchvision:resnet18", "Bx3xHxH", backward=True, optimizer="adam")``.

Bytes, as exact formulas in the input's symbols, of what a forward (inference, under ``no_grad``) or a training step
(forward and backward, as ``symcost model --backward`` records it) holds: parameters, buffers, inputs, gradients,
optimizer states, master weights, the activations autograd saves for the backward, and the peak of live tensor
bytes over the step with the op where it occurs.  The step is recorded on meta tensors at symcost's two trace sizes
(``footprint.record``), each storage's bytes derived from its op output's symbolic shape (``footprint.derive``), and
every formula checked against recordings at sizes of other residues before anything is returned.

The count is live tensor bytes: every storage torch holds, each once, from its allocation to the moment torch frees
it.  Not counted: the caching allocator's rounding and fragmentation, the CUDA context, cuDNN/cuBLAS workspaces,
and an op's internal scratch memory.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import UsageError

#: --dtype -> the dtype the model and its floating-point inputs are cast to; "mixed" keeps fp32 master weights
DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "mixed": "bfloat16"}
OPTIMIZERS = ("sgd", "adam", "adamw")


@dataclass
class Memory:
    """Formulas (sympy, bytes) of one forward or training step; ``at`` evaluates them, ``fit`` solves the peak."""

    target: str
    input_shape: tuple
    dtype: str
    backward: bool
    parts: dict                   # heading -> formula
    peaks: list                   # (op label, formula of the live bytes there): the peak is their Max
    resident: object              # optimizer states + master weights: held through the whole step
    domain: tuple = ()            # sizes that must be >= 1 where the formulas hold
    notes: list = field(default_factory=list)
    checked_at: list = field(default_factory=list)   # assignments the formulas were verified at
    flops: dict = field(default_factory=dict)   # with checkpointing: the step's FLOPs with and without, the extra
    #: a training step's saved activations by the innermost module running when autograd saved each storage
    saved_by_module: dict = field(default_factory=dict)
    #: the recorded step's ops and its live bytes after any of them (``derive.Positions``), not shown
    positions: object = field(default=None, repr=False, compare=False)

    @property
    def symbols(self) -> tuple:
        import sympy

        found = set().union(*(sympy.sympify(e).free_symbols for e in self.parts.values()),
                            *(e.free_symbols for _, e in self.peaks), *(d.free_symbols for d in self.domain))
        return tuple(sorted(found, key=str))

    @property
    def peak(self):
        """The peak of live bytes over the step, optimizer states and master weights included (they are held
        throughout); a ``Max`` where no one position holds the most at every size."""
        import sympy

        step = self.peaks[0][1] if len(self.peaks) == 1 else sympy.Max(*[e for _, e in self.peaks])
        return step + self.resident

    def at(self, values: dict) -> dict:
        """Every heading, the peak and the op where it occurs, as integers at ``values`` (symbol name -> int)."""
        import sympy

        subs = {s: sympy.Integer(int(values[str(s)])) for s in self.symbols}
        missing = [str(s) for s in self.symbols if str(s) not in values]
        if missing:
            raise UsageError(f"no value for {', '.join(missing)}")
        for d in self.domain:
            if int(d.xreplace(subs)) < 1:
                from ..export.formulas import text

                raise UsageError(f"{', '.join(f'{k}={v}' for k, v in values.items())} is outside the formulas' domain "
                                 f"({text(d)} >= 1); derive at that size with numbers in the input shape")
        out = {k: int(sympy.sympify(e).xreplace(subs)) for k, e in self.parts.items()}
        best = None
        for label, e in self.peaks:
            v = int(e.xreplace(subs))
            if best is None or v > best[0]:
                best = (v, label)
        out["peak"] = best[0] + int(sympy.sympify(self.resident).xreplace(subs))
        out["peak_op"] = best[1]
        for k, e in self.flops.items():
            out[k] = int(sympy.sympify(e).xreplace(subs))
        if self.saved_by_module:
            out["saved_by_module"] = {m: int(e.xreplace(subs)) for m, e in self.saved_by_module.items()}
        return out

    def fit(self, symbol: str, budget: int, values: dict) -> dict:
        from .fit import fit

        return fit(self, symbol, budget, values)

    def as_dict(self) -> dict:
        import sympy

        from ..export.formulas import text

        out = {"target": self.target, "input_shape": [str(d) for d in self.input_shape], "dtype": self.dtype,
               "step": "forward+backward" if self.backward else
               "decode step (no_grad)" if "kv_cache" in self.parts else "forward (no_grad)"}
        def shown(e):  # a number as a JSON integer, a formula as its text
            e = sympy.sympify(e)
            return int(e) if e.is_Integer else text(e)

        out["bytes"] = {k: shown(e) for k, e in self.parts.items()}
        out["bytes"]["peak"] = shown(self.peak)
        out["peak_candidates"] = [{"op": label, "live_bytes": shown(e)} for label, e in self.peaks]
        if self.flops:
            out["flops"] = {k: shown(e) for k, e in self.flops.items()}
        if self.saved_by_module:
            out["saved_by_module"] = {m or "(model)": shown(e) for m, e in self.saved_by_module.items()}
        out["domain"] = [f"{text(d)} >= 1" for d in self.domain]
        out["checked_at"] = [{str(k): int(v) for k, v in p.items()} for p in self.checked_at]
        out["notes"] = list(self.notes)
        return out


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
