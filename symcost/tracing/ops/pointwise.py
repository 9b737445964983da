"""Elementwise ops: arithmetic, comparisons, activations, softmax, transcendental functions, clamps, cumulative sums --
each op's cost handler (its output broadcasts its inputs) and its backward kernel's."""
from __future__ import annotations

from ...layers.gradients import (ACTIVATION_BACKWARDS, GELU_BACKWARD, GELU_TANH_BACKWARD, ElementwiseBackward,
                                 PreluBackward, Sign, SoftmaxBackward)
from ..handlers import handles, shapes
from ..op_args import arg, catalog_layer, grads_like, op_table
from ..record import TensorRef


_ELEMENTWISE = op_table(
    add=("aten.add", "aten.add_"), sub=("aten.sub", "aten.sub_", "aten.rsub"), mul=("aten.mul", "aten.mul_"),
    div=("aten.div", "aten.div_"),
    compare=("aten.eq", "aten.ne", "aten.lt", "aten.gt", "aten.le", "aten.ge", "aten.masked_fill",
             "aten.masked_fill_", "aten.where"))


@handles(*_ELEMENTWISE, output="inputs")
def _elementwise(ev, S, concrete, sym):
    b = ev.args[1] if len(ev.args) > 1 else ()
    return catalog_layer(_ELEMENTWISE[ev.op]), (S(ev.args[0]), S(b))


_ACTIVATIONS = op_table(
    relu=("aten.relu", "aten.relu_"), hardtanh=("aten.hardtanh", "aten.hardtanh_"),
    sigmoid=("aten.sigmoid", "aten.sigmoid_"), tanh=("aten.tanh", "aten.tanh_"), silu=("aten.silu", "aten.silu_"),
    hardswish=("aten.hardswish", "aten.hardswish_"), hardsigmoid=("aten.hardsigmoid", "aten.hardsigmoid_"),
    exp=("aten.exp", "aten.sqrt", "aten.rsqrt", "aten.log"))


@handles(*_ACTIVATIONS, output="inputs")
def _activation(ev, S, concrete, sym):
    name, args = _ACTIVATIONS[ev.op], ev.args
    kwargs = {}
    if name == "hardtanh":
        kwargs = {"min_val": args[1] if len(args) > 1 and args[1] is not None else float("-inf"),
                  "max_val": args[2] if len(args) > 2 and args[2] is not None else float("inf")}
    return catalog_layer(name, **kwargs), (S(args[0]),)


@handles("aten.gelu", output="inputs")
def _gelu(ev, S, concrete, sym):
    return catalog_layer("gelu", approximate=ev.kwargs.get("approximate", "none")), (S(ev.args[0]),)


@handles("aten._softmax", "aten._safe_softmax", "aten.softmax", "aten._log_softmax", output="inputs")
def _softmax(ev, S, concrete, sym):
    return catalog_layer("log_softmax" if "log" in ev.op else "softmax", dim=int(ev.args[1])), (S(ev.args[0]),)


@handles("aten.pow", output="inputs")
def _pow(ev, S, concrete, sym):
    x, e = ev.args[:2]
    if isinstance(x, TensorRef) and not isinstance(e, TensorRef):
        return catalog_layer("pow", exponent=float(e)), (S(x),)
    return catalog_layer("exp"), (sym[ev.outputs[0]],)  # a tensor exponent (or base): 1 fn per output element


@handles("aten.erf", "aten.erf_", output="inputs")
def _erf(ev, S, concrete, sym):
    """erf (the exact GELU written out, as Hugging Face's ``gelu_python``): 1 fn per element, as exp."""
    return catalog_layer("exp"), (S(ev.args[0]),)


_TRANSCENDENTAL = ("aten.log1p", "aten.log1p_", "aten.expm1", "aten.expm1_", "aten.exp2", "aten.exp2_", "aten.log2",
                   "aten.log2_", "aten.log10", "aten.log10_")


@handles(*_TRANSCENDENTAL, output="inputs")
def _transcendental(ev, S, concrete, sym):
    """log(1 + x), exp(x) - 1, 2^x, log2, log10: one library call per element each, as exp and log: 1 fn."""
    return catalog_layer("exp"), (S(ev.args[0]),)


_UNARY = op_table(neg=("aten.neg", "aten.neg_"), abs=("aten.abs", "aten.abs_"),
                sin=("aten.sin", "aten.sin_", "aten.cos", "aten.cos_"),
                logical_not=("aten.bitwise_not", "aten.logical_not"))


_BINARY = op_table(minimum=("aten.minimum", "aten.maximum", "aten.fmin", "aten.fmax"),
                 logical=tuple(f"aten.{o}" for o in ("bitwise_and", "bitwise_or", "bitwise_xor", "logical_and",
                                                    "logical_or", "logical_xor", "__and__", "__or__", "__xor__",
                                                    "__lshift__", "__rshift__", "bitwise_left_shift",
                                                    "bitwise_right_shift")))


@handles(*_UNARY, output="inputs")
def _unary(ev, S, concrete, sym):
    return catalog_layer(_UNARY[ev.op]), (S(ev.args[0]),)


@handles(*_BINARY, output="inputs")
def _binary(ev, S, concrete, sym):
    return catalog_layer(_BINARY[ev.op]), (S(ev.args[0]), S(ev.args[1]))


@handles("aten.clamp", "aten.clamp_", "aten.clamp_min", "aten.clamp_min_", "aten.clamp_max", "aten.clamp_max_",
         output="inputs")
def _clamp(ev, S, concrete, sym):
    x = ev.args[0]
    if ev.op.startswith("aten.clamp_m"):
        bounds = [ev.args[1]]
    else:
        bounds = [arg(ev, 1, "min"), arg(ev, 2, "max")]
    given = [b for b in bounds if b is not None]
    if any(isinstance(b, TensorRef) for b in given):  # scalar bounds among them read one value each
        return catalog_layer("clamp_tensor"), (S(x), *[S(b) for b in given])
    if len(given) == 2:
        return catalog_layer("hardtanh", min_val=float(given[0]), max_val=float(given[1])), (S(x),)
    return catalog_layer("relu"), (S(x),)  # one bound: max(x, a) or min(x, b), 1 cmp per element as ReLU's


@handles("aten.softplus", output="inputs")
def _softplus(ev, S, concrete, sym):
    return catalog_layer("softplus", beta=float(arg(ev, 1, "beta", 1.0)), threshold=float(arg(ev, 2, "threshold", 20.0))), \
        (S(ev.args[0]),)


@handles("aten.addcmul", "aten.addcmul_", "aten.addcdiv", "aten.addcdiv_", output="inputs")
def _addcmul(ev, S, concrete, sym):
    a, b, c = ev.args[:3]
    return catalog_layer("addcmul", value=float(arg(ev, 3, "value", 1.0)), divide="div" in ev.op), (S(a), S(b), S(c))


@handles("aten.cumsum", "aten.cumsum_", "aten.cumprod", "aten.cumprod_", output="inputs")
def _cumsum(ev, S, concrete, sym):
    return catalog_layer("cumsum", dim=int(arg(ev, 1, "dim")), product="prod" in ev.op), (S(ev.args[0]),)


@handles("aten._softmax_backward_data", "aten._log_softmax_backward_data", output="inputs")
def _softmax_backward(ev, S, concrete, sym):
    go, y, dim = ev.args[:3]
    return SoftmaxBackward(dim=int(dim), log="log" in ev.op), (sym[go.index], sym[y.index])


@handles(*ACTIVATION_BACKWARDS, output="inputs")
def _activation_backward(ev, S, concrete, sym):
    return ElementwiseBackward(activation=ACTIVATION_BACKWARDS[ev.op][0]), (sym[ev.args[0].index],)


@handles("aten.gelu_backward", output="inputs")
def _gelu_backward(ev, S, concrete, sym):
    tanh = ev.kwargs.get("approximate", ev.args[2] if len(ev.args) > 2 else "none") == "tanh"
    return ElementwiseBackward(activation=(GELU_TANH_BACKWARD if tanh else GELU_BACKWARD)[0]), (sym[ev.args[0].index],)


@handles("aten.sgn", "aten.sign", output="inputs")
def _sign(ev, S, concrete, sym):
    return Sign(), (sym[ev.args[0].index],)


@handles("aten._prelu_kernel_backward", output="inputs")
def _prelu(ev, S, concrete, sym):
    go, x, w = ev.args[:3]
    return PreluBackward(), (sym[go.index], sym[x.index], sym[w.index])


@shapes("aten._softmax_backward_data", "aten._log_softmax_backward_data", *ACTIVATION_BACKWARDS, "aten.gelu_backward",
        "aten.sgn", "aten.sign")
def _grad_shaped(ev, p, concrete, sym):
    return grads_like(p, ev.args[0])


@shapes("aten._prelu_kernel_backward")
def _prelu_shapes(ev, p, concrete, sym):
    return grads_like(p, ev.args[1], ev.args[1])
