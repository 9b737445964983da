r"""What a user must know about a traced training step's backward pass: the notes of a training step, and the
difference FlopCounterMode's count of grouped convolutions' weight gradients makes.

``trace(..., backward=True)`` records the forward pass and then ``out.backward(ones_like(out))`` (the gradient of the
model's first output, as any loss would seed it; the loss itself is not costed) under the same recorder.  The
gradients of matmuls are ``mm``/``bmm`` and elementwise gradients are ``mul``/``add``/``sum``: the forward catalog
costs those.  The fused backward kernels are costed beside their forward ops (``tracing/ops``), from shapes only,
each counting the algorithm written in its docstring (``layers.gradients``); their output shapes are those of the
tensors they are gradients of.

MACs are the multiply-accumulates done.  FlopCounterMode (the ``torch`` convention) counts 2 per MAC of
``convolution_backward`` and of the gradient matmuls, and nothing else -- except that it counts a *grouped*
convolution's weight gradient with all ``C_in`` input channels instead of ``C_in/g`` (``conv_backward_flop``), ``g``
times the work done; symcost counts the work and ``grouped_grad_weight_overcount`` states the difference.
"""
from __future__ import annotations

import sympy

from ..layers.gradients import ConvolutionBackward


def notes(mc) -> list[str]:
    """What a user must know about a traced training step."""
    out = ["backward: one training step's backward pass (no optimizer), from the gradient of the model's first "
           "output seeded with ones of its shape (the loss itself is not costed); torch skips gradients nothing "
           "needs (the input's, frozen parameters'), and so does this count"]
    extra = grouped_grad_weight_overcount(mc)
    if extra != 0:
        out.append(f"FlopCounterMode counts {sympy.sstr(2 * extra)} FLOPs more than the 'torch' total here: it "
                   "counts a grouped convolution's weight gradient as if groups were 1 (all C_in input channels "
                   "per output channel); symcost counts the multiply-accumulates done")
    return out


def grouped_grad_weight_overcount(mc) -> sympy.Expr:
    """How many MACs more than symcost FlopCounterMode counts for the backward of ``mc`` (0 without grouped
    convolutions): it counts a grouped convolution's weight gradient as if ``groups`` were 1."""
    extra = sympy.Integer(0)
    for r in mc.rows:
        if r.layer == ConvolutionBackward.name and r.args.get("groups", 1) != 1:
            extra += ConvolutionBackward(**{k: v for k, v in r.args.items()}).torch_overcount(*r.input_shapes)
    return extra
