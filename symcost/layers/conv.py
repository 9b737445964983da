"""Convolutions: conv1d/2d/3d and conv_transpose1d/2d/3d."""
from __future__ import annotations

import sympy

from ..cost import Cost, numel
from ..registry import register
from ..symbols import SPATIAL, C_in, C_out, N, b, g, per_axis
from . import gradients
from .base import Arg, Layer, definitely, is_number
from .shapes import conv_output_size, conv_transpose_output_size


def _conv_args(dims: int, transposed: bool) -> tuple[Arg, ...]:
    args = [
        Arg("in_channels", "size", symbol=C_in, help="input channels"),
        Arg("out_channels", "size", symbol=C_out, help="output channels"),
        Arg("kernel_size", "tuple", symbol=per_axis("K", dims), help="kernel size, e.g. 3 or 4,10"),
        Arg("stride", "tuple", 1, per_axis("s", dims)),
        Arg("padding", "offsets", 0, per_axis("p", dims, nonnegative=True),
            choices=() if transposed else ("same", "valid")),
    ]
    if transposed:
        args.append(Arg("output_padding", "offsets", 0, per_axis("q", dims, nonnegative=True)))
    args += [
        Arg("groups", "size", 1, g),
        Arg("bias", "flag", True, b),
        Arg("dilation", "tuple", 1, per_axis("d", dims)),
        Arg("padding_mode", "choice", "zeros", choices=("zeros", "reflect", "replicate", "circular")),
    ]
    return tuple(args)


class _ConvBase(Layer):
    """What every convolution shares (input check, output size, cost); a subclass sets name, dims and args."""

    family = "conv"
    transposed = False

    def default_input_shapes(self):
        return ((N, self.in_channels, *SPATIAL[self.dims]),)

    def check_args(self) -> None:
        for what in ("in_channels", "out_channels"):
            ch = self.values[what]
            if is_number(ch) and is_number(self.groups) and ch % self.groups:
                self.fail(f"{what}={ch} is not divisible by groups={self.groups}")
        if self.padding == "same" and any(is_number(s) and s != 1 for s in self.stride):
            self.fail("padding='same' needs stride 1 (as in torch)")

    def _split_input(self, shape):
        if len(shape) not in (self.dims + 1, self.dims + 2):
            axes = "x".join("LHW" if self.dims == 1 else "DHW"[-self.dims:])
            self.fail(f"expected an input of rank {self.dims + 2} (N, C, {axes}) "
                      f"or {self.dims + 1} without batch, got rank {len(shape)}: {tuple(shape)}")
        batch = shape[:-self.dims - 1]
        channels, spatial = shape[-self.dims - 1], shape[-self.dims:]
        if definitely(sympy.Ne(channels, self.in_channels)):
            if not batch:  # rank dims + 1: torch reads it unbatched, so its first size is the channels
                axes = "L" if self.dims == 1 else ", ".join("DHW"[-self.dims:])
                shown = "x".join(map(str, shape))
                self.fail(f"input {shown} has rank {len(shape)}, so it was read as unbatched (C, {axes}) with "
                          f"C = {channels} channels, but in_channels={self.in_channels}; a batched input has rank "
                          f"{self.dims + 2} (N, C, {axes})")
            self.fail(f"input has {channels} channels but in_channels={self.in_channels}")
        return batch, spatial

    def _paddings(self):
        if self.padding == "valid":
            return (0,) * self.dims
        return self.padding

    def _sides(self):
        """(left, right) padding per spatial axis, as torch pads it (padding='same': d(k-1) split, the extra one
        on the right)."""
        if self.padding == "same":
            return [(d * (k - 1) // 2, d * (k - 1) - d * (k - 1) // 2) for k, d in zip(self.kernel_size, self.dilation)]
        return [(p, p) for p in self._paddings()]

    def _check_padding_mode(self, spatial) -> None:
        """torch pads with F.pad before a non-zeros padding mode: reflect needs each side below the input size
        (a reflection repeats no edge), circular at most the input size (it wraps around once)."""
        if self.padding_mode not in ("reflect", "circular"):
            return
        for axis, (i, sides) in enumerate(zip(spatial, self._sides())):
            for p in sides:
                too_large = sympy.Ge(p, i) if self.padding_mode == "reflect" else sympy.Gt(p, i)
                if definitely(too_large):
                    bound = "smaller than" if self.padding_mode == "reflect" else "at most"
                    self.fail(f"padding_mode={self.padding_mode!r} pads {p} on spatial axis {axis} of size {i}; "
                              f"torch needs the padding {bound} the input size")

    def _cost(self, shape) -> Cost:
        batch, spatial = self._split_input(shape)
        self._check_padding_mode(spatial)
        per_group_in = self.in_channels / self.groups
        kernel = numel(self.kernel_size)
        weight = self.out_channels * per_group_in * kernel
        params = weight + self.bias * self.out_channels
        out_spatial = self._output_spatial(spatial)
        out_shape = (*batch, self.out_channels, *out_spatial)
        outputs = numel(out_shape)
        if self.transposed:
            # every input element is scattered into C_out/g * prod(k) outputs
            macs = numel(shape) * (self.out_channels / self.groups) * kernel
        else:
            macs = outputs * per_group_in * kernel
        return Cost(
            output_shape=out_shape,
            params=params,
            ops={"mac": macs, "dot": outputs, "bias": self.bias * outputs},
            reads=numel(shape) + params,
            writes=outputs,
        )

    def _output_spatial(self, spatial):
        if self.padding == "same":
            return tuple(spatial)
        out = []
        for i, k, s, p, d in zip(spatial, self.kernel_size, self.stride, self._paddings(), self.dilation):
            span = i + 2 * p - d * (k - 1)
            if definitely(sympy.Lt(span, 1)):
                self.fail(f"the dilated kernel ({d * (k - 1) + 1}) is larger than the padded input ({i + 2 * p})")
            out.append(conv_output_size(i, k, s, p, d))
        return tuple(out)

    def _backward(self, x):
        transposed = self.name.startswith("conv_transpose")
        go = self.cost(x).output_shape
        per_group = (self.out_channels if transposed else self.in_channels) / self.groups
        w = (self.in_channels if transposed else self.out_channels, per_group, *self.kernel_size)

        def part(**flags):
            return gradients.ConvolutionBackward(transposed=transposed, groups=self.groups,
                                                 **{"grad_input": False, "grad_weight": False,
                                                    "grad_bias": False, **flags}).cost(go, x, w)
        out = {"grad_input": part(grad_input=True), "grad_weight": part(grad_weight=True)}
        if self.bias != 0:
            out["grad_bias"] = part(grad_bias=gradients.flag(self.bias))
        return out


class _ConvTransposeBase(_ConvBase):
    """A convolution run backwards: its own output size and the output_padding check."""

    transposed = True

    def check_args(self) -> None:
        super().check_args()
        if self.padding_mode != "zeros":
            self.fail(f"padding_mode={self.padding_mode!r}: torch's transposed convolutions support only 'zeros'")
        for q, s, d in zip(self.output_padding, self.stride, self.dilation):
            if all(map(is_number, (q, s, d))) and q >= s and q >= d:
                self.fail(f"output_padding ({q}) must be smaller than either stride ({s}) or dilation ({d})")

    def _output_spatial(self, spatial):
        out = []
        for i, k, s, p, d, q in zip(spatial, self.kernel_size, self.stride, self.padding, self.dilation,
                                    self.output_padding):
            o = conv_transpose_output_size(i, k, s, p, d, q)
            if definitely(sympy.Lt(o, 1)):
                self.fail(f"output size would be {o}: padding {p} is too large for input {i}")
            out.append(o)
        return tuple(out)


_CONV_DOC = r"Convolution: MACs $= N C_{out} \prod O \cdot \frac{C_{in}}{g} \prod K$; one dot product per output."
_CONV_TRANSPOSE_DOC = (
    r"Transposed convolution: MACs $= N C_{in} \prod I \cdot \frac{C_{out}}{g} \prod K$ (each input scattered). "
    r"The 'exact' convention takes its additions as MACs minus outputs, i.e. assumes every output receives "
    r"at least one product; rows added by output_padding, or gaps left when stride and dilation skip "
    r"positions, receive none, so there it counts one addition too few per such output.")


@register
class Conv1d(_ConvBase):
    __doc__ = _CONV_DOC
    name = "conv1d"
    torch_name = "torch.nn.Conv1d"
    summary = "1-D convolution (stride, padding, dilation, groups, bias)"
    dims = 1
    args = _conv_args(1, transposed=False)


@register
class Conv2d(_ConvBase):
    __doc__ = _CONV_DOC
    name = "conv2d"
    torch_name = "torch.nn.Conv2d"
    summary = "2-D convolution (stride, padding, dilation, groups, bias)"
    dims = 2
    args = _conv_args(2, transposed=False)


@register
class Conv3d(_ConvBase):
    __doc__ = _CONV_DOC
    name = "conv3d"
    torch_name = "torch.nn.Conv3d"
    summary = "3-D convolution (stride, padding, dilation, groups, bias)"
    dims = 3
    args = _conv_args(3, transposed=False)


@register
class ConvTranspose1d(_ConvTransposeBase):
    __doc__ = _CONV_TRANSPOSE_DOC
    name = "conv_transpose1d"
    torch_name = "torch.nn.ConvTranspose1d"
    summary = "1-D transposed convolution (stride, padding, dilation, groups, bias)"
    dims = 1
    args = _conv_args(1, transposed=True)


@register
class ConvTranspose2d(_ConvTransposeBase):
    __doc__ = _CONV_TRANSPOSE_DOC
    name = "conv_transpose2d"
    torch_name = "torch.nn.ConvTranspose2d"
    summary = "2-D transposed convolution (stride, padding, dilation, groups, bias)"
    dims = 2
    args = _conv_args(2, transposed=True)


@register
class ConvTranspose3d(_ConvTransposeBase):
    __doc__ = _CONV_TRANSPOSE_DOC
    name = "conv_transpose3d"
    torch_name = "torch.nn.ConvTranspose3d"
    summary = "3-D transposed convolution (stride, padding, dilation, groups, bias)"
    dims = 3
    args = _conv_args(3, transposed=True)
