"""`symcost check` on every registered layer type: symcost and real PyTorch agree, as a user runs it."""
import pytest

from symcost import all_layers
from symcost.cli import main

# one invocation per layer type: input shape(s) and torch.nn constructor arguments
SAMPLES = {
    "conv1d": ("2x3x17", "in_channels=3 out_channels=4 kernel_size=3 stride=2 padding=1"),
    "conv2d": ("2x4x15x13", "in_channels=4 out_channels=6 kernel_size=3,5 stride=2 dilation=2 groups=2"),
    "conv3d": ("1x2x7x8x9", "in_channels=2 out_channels=3 kernel_size=3 stride=2"),
    "conv_transpose1d": ("2x3x9", "in_channels=3 out_channels=4 kernel_size=3 stride=2 output_padding=1"),
    "conv_transpose2d": ("1x4x6x5", "in_channels=4 out_channels=6 kernel_size=3 stride=2 padding=1 groups=2"),
    "conv_transpose3d": ("1x2x3x4x5", "in_channels=2 out_channels=2 kernel_size=2 stride=2"),
    "linear": ("2x5x7", "in_features=7 out_features=3"),
    "matmul": ("2x4x5,5x6", ""),
    "bmm": ("3x4x5,3x5x2", ""),
    "addmm": ("6,4x5,5x6", ""),
    "baddbmm": ("2x3x4,2x3x5,2x5x4", ""),
    "batchnorm1d": ("4x6x5", "num_features=6"),
    "batchnorm2d": ("2x8x5x5", "num_features=8 --mode train"),
    "batchnorm3d": ("2x3x2x3x4", "num_features=3"),
    "layernorm": ("2x5x8", "normalized_shape=8"),
    "groupnorm": ("2x6x5x5", "num_groups=3 num_channels=6"),
    "relu": ("2x3x4x4", ""), "relu6": ("2x3x4x4", ""), "hardtanh": ("2x3x4x4", "min_val=-2 max_val=2"),
    "leaky_relu": ("2x3x4x4", "negative_slope=0.2"), "sigmoid": ("2x3x4x4", ""), "tanh": ("2x3x4x4", ""),
    "gelu": ("2x3x4x4", "approximate=tanh"), "silu": ("2x3x4x4", ""), "hardswish": ("2x3x4x4", ""),
    "hardsigmoid": ("2x3x4x4", ""), "elu": ("2x3x4x4", ""), "softplus": ("2x3x4x4", ""), "mish": ("2x3x4x4", ""),
    "prelu": ("2x3x4x4", "num_parameters=3"), "softmax": ("2x3x7", "dim=-1"), "log_softmax": ("2x3x7", "dim=1"),
    "maxpool1d": ("2x3x11", "kernel_size=3 stride=2 ceil_mode=true"),
    "maxpool2d": ("2x3x11x10", "kernel_size=3 stride=2 padding=1"),
    "maxpool3d": ("1x2x5x6x7", "kernel_size=2"),
    "avgpool1d": ("2x3x11", "kernel_size=3 stride=2"),
    "avgpool2d": ("2x3x11x10", "kernel_size=3 stride=2 ceil_mode=true"),
    "avgpool3d": ("1x2x5x6x7", "kernel_size=2"),
    "adaptive_avgpool1d": ("2x3x11", "output_size=4"),
    "adaptive_avgpool2d": ("2x3x11x10", "output_size=3,4"),
    "adaptive_avgpool3d": ("1x2x5x6x7", "output_size=2"),
    "adaptive_maxpool1d": ("2x3x11", "output_size=4"),
    "adaptive_maxpool2d": ("2x3x11x10", "output_size=3"),
    "adaptive_maxpool3d": ("1x2x5x6x7", "output_size=2"),
    "add": ("2x3x4,3x4", ""), "mul": ("2x3x4", ""), "sub": ("2x3x4", ""), "div": ("2x3x4", ""),
    "compare": ("2x3x4", ""), "exp": ("2x3x4", ""),
    "flatten": ("2x3x4x5", ""), "dropout": ("2x3x4", "p=0.5"), "identity": ("2x3x4", ""),
    "embedding": ("2x7", "num_embeddings=10 embedding_dim=4"),
    "scaled_dot_product_attention": ("2x4x5x8,2x4x6x8", ""),
    "multihead_attention": ("2x5x16", "embed_dim=16 num_heads=4 batch_first=true"),
    "mean": ("2x3x4x5", "dim=2,3"), "sum": ("2x3x4x5", "dim=-1"), "amax": ("2x3x4x5", "dim=1 keepdim=true"),
    "vector_norm": ("2x3x4x5", "dim=-1"), "copy": ("2x3x4", ""), "pow": ("2x3x4", "exponent=3"),
    "upsample": ("1x2x5x7", "scale_factor=2.5 mode=bilinear"),
    "neg": ("2x3x4", ""), "abs": ("2x3x4", ""), "sin": ("2x3x4", ""), "logical_not": ("2x3x4", ""),
    "logical": ("2x3x4,3x4", ""), "minimum": ("2x3x4,2x1x4", ""), "clamp_tensor": ("2x3x4,3x4,2x3x1", ""),
    "addcmul": ("2x3x4,3x4,2x3x1", "value=0.5"), "cumsum": ("2x3x4", "dim=1"),
    "var": ("2x3x4x5", "dim=1,2"), "std": ("2x3x4x5", "dim=-1 keepdim=true"), "amin": ("2x3x4x5", "dim=1"),
    "argmax": ("2x3x4x5", "dim=2"), "topk": ("2x3x7", "k=3 dim=-1"),
    "unfold": ("2x3x9x8", "kernel_size=3,2 padding=1 stride=2"),
    "fold": ("2x12x12", "output_size=7,8 kernel_size=2 stride=2"),
}
#: layer types whose torch counterpart is not a plain module or function call with these inputs
NO_TORCH_TWIN = {"copy": "data movement recorded from aten ops (cat, pad, clone); no single torch callable"}


def test_every_layer_has_a_sample():
    missing = sorted(set(all_layers()) - set(SAMPLES))
    assert not missing, f"add a `symcost check` sample for {missing}"


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_check_agrees_with_pytorch(name, capsys):
    if name in NO_TORCH_TWIN:
        pytest.skip(NO_TORCH_TWIN[name])
    shape, settings = SAMPLES[name]
    # the CLI's own entry point, in process (a subprocess per layer would import torch 60 times)
    code = main(["check", name, "--input", shape, *settings.split()])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "all equal" in out


def test_check_exit_code_1_on_a_difference(monkeypatch, capsys):
    # make symcost's conv formula wrong on purpose: check must notice and exit 1
    from symcost.layers import conv

    real = conv._ConvBase._cost
    monkeypatch.setattr(conv._ConvBase, "_cost", lambda self, shape: real(self, shape) * 2)
    assert main(["check", "conv2d", "--input", "1x3x8x8", "in_channels=3", "out_channels=4", "kernel_size=3"]) == 1
    assert "MISMATCH" in capsys.readouterr().out
