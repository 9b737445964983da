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

from .api import memory
from .result import DTYPES, OPTIMIZERS, Memory

__all__ = ["DTYPES", "OPTIMIZERS", "Memory", "memory"]
