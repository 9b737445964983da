"""The four peer FLOP counters as symcost conventions: ``fvcore``, ``thop``, ``ptflops``, ``torchprofile``.

Each tool's rule was read from its source (the file and version in ``Convention.source``) and written down as
weights on symcost's primitive counts, per catalog layer or family, plus two things plain weights cannot say:

* ``reads`` / ``writes`` (``conventions.ELEMENT_KINDS``): a rule "one per input element" (ptflops' pooling) or
  "one per output element" (torchprofile's average pooling) weighs the layer's elements read or written;
* ``sees_functional`` and ``functional_weights``: thop hooks modules only and sees no functional call; ptflops hooks
  modules *and* patches ``torch.nn.functional``, so ``nn.ReLU`` counts twice (hook + patched ``F.relu`` inside its
  forward) while a bare ``F.relu`` counts once.

So a model traced once gives every tool's number: ``ModelCost.total("thop")["flops"]`` is what ``thop.profile``
reports (``tests/test_peers.py`` checks that equality, exactly, against the real tools on six torchvision models).
The presets are for an eval-mode trace, as every tool here either forces eval mode (thop, ptflops) or is usually run
that way.

Each tool also has ``quirks``: where it is wrong or surprising, with the evidence (the source line, and a number the
tool really prints: "1x4x8x8" below means ``torch.randn(1, 4, 8, 8)``, 256 elements).  A quirk marked
``reproduced=False`` is one the preset does *not* copy (the preset then counts what symcost knows to be right, and
differs from the tool on that layer).  ``Peer.run`` runs the real tool, when it is installed.

Nothing here imports torch or a peer tool at import time.
"""
from __future__ import annotations

import copy
import importlib.metadata
import importlib.util
import io
import warnings
from dataclasses import dataclass
from typing import Callable

from .convention_base import Convention, weight_table
from .registry import check_names

_BN = ("batchnorm1d", "batchnorm2d", "batchnorm3d")
_MAXPOOL = ("maxpool1d", "maxpool2d", "maxpool3d")
_AVGPOOL = ("avgpool1d", "avgpool2d", "avgpool3d")
_ADAPTIVE_AVG = ("adaptive_avgpool1d", "adaptive_avgpool2d", "adaptive_avgpool3d")
_ADAPTIVE_MAX = ("adaptive_maxpool1d", "adaptive_maxpool2d", "adaptive_maxpool3d")
_POOLS = _MAXPOOL + _AVGPOOL + _ADAPTIVE_AVG + _ADAPTIVE_MAX
_CONV_T = ("conv_transpose1d", "conv_transpose2d", "conv_transpose3d")
_MATRIX = ("matmul", "bmm", "addmm", "baddbmm")


def _each(names, weights: dict) -> dict:
    return {n: weights for n in names}


@dataclass(frozen=True)
class Quirk:
    """Something a tool does that is wrong or surprising, and the evidence.

    layers: catalog layer names or families whose presence in a trace makes the quirk apply (empty: always);
    functional: only functional rows (True), only module rows (False), either (None);
    when: instead of ``layers``, a test on the whole ``ModelCost``;
    reproduced: whether the preset copies the tool here (False: the preset and the tool differ on those layers).
    """

    text: str
    evidence: str
    layers: tuple[str, ...] = ()
    functional: bool | None = None
    when: Callable | None = None
    reproduced: bool = True

    def __post_init__(self) -> None:
        check_names(self.layers, f"quirk {self.text[:40]!r}...")

    def applies(self, model_cost) -> bool:
        if self.when is not None:
            return bool(self.when(model_cost))
        if not self.layers:
            return True
        return any((r.layer in self.layers or r.cost.family in self.layers)
                   and (self.functional is None or r.functional == self.functional) for r in model_cost.rows)

    def as_dict(self) -> dict:
        return {"text": self.text, "evidence": self.evidence, "reproduced": self.reproduced}


@dataclass(frozen=True)
class Peer:
    """One peer tool: its convention, what it reports and in which unit, its quirks, and how to run it."""

    name: str
    package: str          # the name pip knows
    module: str           # the name Python imports
    reports: str          # the call whose number the convention reproduces
    unit: str
    convention: Convention
    quirks: tuple[Quirk, ...]
    runner: Callable

    @property
    def installed(self) -> bool:
        try:
            return importlib.util.find_spec(self.module) is not None
        except (ImportError, ValueError):
            return False

    @property
    def version(self) -> str | None:
        try:
            return importlib.metadata.version(self.package)
        except importlib.metadata.PackageNotFoundError:
            return None

    def applicable_quirks(self, model_cost) -> list[Quirk]:
        return [q for q in self.quirks if q.applies(model_cost)]

    def run(self, model, x) -> int:
        """The tool's own number for ``model(x)`` (``x`` a real tensor; put the model in eval mode first)."""
        import torch

        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            return self.runner(model, x)


def _exact(value) -> int:
    """An int from a tool's number (thop returns a float); refuses a fraction."""
    f = float(value)
    if f != int(f):
        raise ValueError(f"not a whole number: {value!r}")
    return int(f)


# ---- the runners: each imports its tool only when called ---------------------------------------------------

def _run_fvcore(model, x) -> int:
    import logging

    from fvcore.nn import FlopCountAnalysis

    analysis = FlopCountAnalysis(model, (x,)).unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    logger = logging.getLogger("fvcore")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        return _exact(analysis.total())
    finally:
        logger.setLevel(level)


def _run_thop(model, x) -> int:
    import thop

    # thop leaves total_ops/total_params buffers on every container module (see its quirks): work on a copy
    macs, _ = thop.profile(copy.deepcopy(model), inputs=(x,), verbose=False)
    return _exact(macs)


def _run_ptflops(model, x) -> int:
    from ptflops import get_model_complexity_info

    out = io.StringIO()
    macs, _ = get_model_complexity_info(copy.deepcopy(model), tuple(x.shape[1:]), as_strings=False,
                                        print_per_layer_stat=False, backend="pytorch", ost=out,
                                        input_constructor=None if x.shape[0] == 1 else (lambda _: x))
    if macs is None:  # ptflops prints the exception and returns None
        lines = [ln for ln in out.getvalue().splitlines() if ln.strip()]
        raise RuntimeError(lines[-1] if lines else "ptflops returned no count")
    return _exact(macs)


def _run_torchprofile(model, x) -> int:
    from torchprofile import profile_macs

    return _exact(profile_macs(model, x))


# ---- quirks shared by several tools -------------------------------------------------------------------------

def _non_affine_norm(mc) -> bool:
    return any(r.cost.family == "norm" and (r.args.get("affine") is False or r.args.get("elementwise_affine") is False)
               for r in mc.rows)


def _non_affine_quirk(tool_numbers: str) -> Quirk:
    return Quirk(f"A norm layer without affine parameters counts less ({tool_numbers}); the preset weighs every "
                 "norm as if affine, since a trace row does not carry the flag into the weights",
                 "BatchNorm2d(4, affine=False) on 1x4x8x8 in the tool", when=_non_affine_norm, reproduced=False)


# ---- fvcore ---------------------------------------------------------------------------------------------------

FVCORE = Convention(
    "fvcore",
    "fvcore FlopCountAnalysis(model, inputs).total(): one per multiply-accumulate of conv (transposed too), "
    "linear, matmul, mm, bmm and addmm, biases ignored; batch norm in eval 2 per element; layer and group norm 5 "
    "per element; adaptive_avg_pool2d 1 per input element; everything else (ReLU, max and average pooling, "
    "residual adds, SE multiplications, softmax, baddbmm) 0",
    "fvcore/nn/flop_count.py _DEFAULT_SUPPORTED_OPS and fvcore/nn/jit_handles.py (fvcore 0.1.5), jit-traced aten ops",
    weight_table(0, mac=1),
    {
        **_each(_BN, {"mul": 1, "add": 1}),              # batchnorm_flop_jit, eval, affine: numel * 2
        "layernorm": {"writes": 5}, "groupnorm": {"writes": 5},  # norm_flop_counter: numel * 5 ("rough estimate")
        "adaptive_avgpool2d": {"reads": 1},               # elementwise_flop_counter(1, 0): input numel
        # symcost's trace records F.adaptive_avg_pool2d(x, 1) as aten.mean, which fvcore sees as adaptive_avg_pool2d
        "mean": {"reads": 1},
        "baddbmm": {"mac": 0},                            # no handle for aten::baddbmm
    },
)

FVCORE_QUIRKS = (
    Quirk("Its 'flops' are multiply-accumulates: one fused multiply-add is one flop, so every number is half of the "
          "'a MAC is two FLOPs' reading (and equals the MACs, plus norms and adaptive pooling)",
          "FlopCountAnalysis docstring: 'We count one fused multiply-add as one flop'; Conv2d(4, 6, 3) on 1x4x8x8: "
          "7776 = 6*6*6 outputs x 36 MACs"),
    Quirk("Batch norm counts at inference although it folds into the convolution before it: 2 per element with "
          "affine, 1 without, and 5 per element in training mode",
          "jit_handles.batchnorm_flop_jit; BatchNorm2d(4) on 1x4x8x8: 512 in eval, 2560 on 2x4x8x8 in training "
          "(= 5 x 512); its own comment: 'You might want to ignore BN flops due to inference-time fusion'",
          layers=("norm",)),
    Quirk("LayerNorm and GroupNorm count a flat 5 per element with affine (4 without), whatever the arithmetic",
          "jit_handles.norm_flop_counter: '# 5 is just a rough estimate'; LayerNorm(8) on 1x4x8x8: 1280",
          layers=("layernorm", "groupnorm")),
    Quirk("Among poolings only aten::adaptive_avg_pool2d counts (1 per input element); max pooling, avg_pool2d "
          "and 1-D/3-D adaptive pools are unsupported ops, 0: densenet's three transition AvgPool2d layers vanish",
          "_DEFAULT_SUPPORTED_OPS; on 1x4x8x8: AdaptiveAvgPool2d(1) 256, AvgPool2d(2) 0, MaxPool2d(3, 2, 1) 0",
          layers=("pool", "mean")),
    Quirk("Biases, activations and every elementwise op (residual x + y, squeeze-excitation scale * x) are "
          "unsupported ops and count 0; the model's own count of them is only a warning",
          "Conv2d(4, 6, 3) with and without bias: 7776 both; x + x and x * x: 0 ('Unsupported operator aten::add_')",
          layers=("activation", "elementwise", "conv", "linear")),
    Quirk("aten::mean is unsupported (0) while aten::adaptive_avg_pool2d counts its input; symcost's trace records "
          "F.adaptive_avg_pool2d(x, 1) as a mean, so the preset weighs a mean row as that pool (right for "
          "mobilenet_v2 and densenet; a model calling x.mean((2, 3)) itself counts 0 in fvcore, not its input size)",
          "on 1x4x8x8: x.mean((2, 3)) 0, F.adaptive_avg_pool2d(x, 1) 256",
          layers=("mean",), functional=True),
    Quirk("No handle for aten::baddbmm (nor scaled_dot_product_attention): those products count 0",
          "fvcore/nn/flop_count.py _DEFAULT_SUPPORTED_OPS lists addmm, bmm, matmul, mm, linear, einsum only",
          layers=("baddbmm",)),
    _non_affine_quirk("fvcore 1 per element instead of 2"),
)

# ---- thop -----------------------------------------------------------------------------------------------------

THOP = Convention(
    "thop",
    "thop.profile(model, inputs)[0]: forward hooks on exact nn.Module types only, no functional call seen; one per "
    "multiply-accumulate of Conv and Linear (biases ignored); batch norm and layer norm 4 per element; AvgPool 1 "
    "per output element; adaptive average pooling 1 per input and 1 per output element; Softmax 3d-1 per row of d; "
    "PReLU 1 per element; ReLU, ReLU6, LeakyReLU, max pooling (zero_ops) and SiLU, sigmoid, GELU, GroupNorm "
    "(no hook) 0",
    "thop/profile.py register_hooks and profile(), thop/vision/basic_hooks.py, thop/vision/calc_func.py "
    "(thop 0.1.1.post2209072238)",
    weight_table(0, mac=1),
    {
        **_each(_BN, {"mul": 2, "add": 2}),              # calculate_norm: 2*numel, doubled again for affine
        "layernorm": {"writes": 4},
        "prelu": {"writes": 1},                           # calculate_relu(numel) in eval
        # calculate_softmax: d exp + (d - 1) add + d div per row; symcost's row has d fn, d div and d - 1 cmp
        "softmax": {"fn": 1, "div": 1, "cmp": 1},
        **_each(_AVGPOOL, {"writes": 1}),                 # calculate_avgpool(y.numel())
        # calculate_adaptive_avg: (prod(in/out) + 1) * y.numel() = input numel + output numel
        **_each(_ADAPTIVE_AVG, {"reads": 1, "writes": 1}),
    },
    sees_functional=False,
)

THOP_QUIRKS = (
    Quirk("Reports multiply-accumulates (its README calls them MACs); conv and linear biases are not counted",
          "basic_hooks.count_convNd -> calc_func.calculate_conv2d_flops ignores its bias argument; Conv2d(4, 6, 3) "
          "on 1x4x8x8 with and without bias: 7776 both"),
    Quirk("Batch norm counts 4 per element at inference: calculate_norm already returns 2*numel and "
          "count_normalization doubles it again for affine, although the same hook says BN 'is by default fused "
          "in inference'; LayerNorm likewise 4, GroupNorm has no hook (0)",
          "basic_hooks.count_normalization, calc_func.calculate_norm; BatchNorm2d(4) on 1x4x8x8: 1024 "
          "(512 without affine), LayerNorm(8): 1024, GroupNorm(2, 4): 0",
          layers=("norm",)),
    Quirk("Module hooks only: every functional call counts 0, including residual adds, squeeze-excitation "
          "scale * x, and the F.adaptive_avg_pool2d / F.relu that mobilenet_v2's and densenet's forward call",
          "profile() hooks leaf modules; x + x: 0; F.adaptive_avg_pool2d(x, 1) in a forward: 0, "
          "nn.AdaptiveAvgPool2d(1): 260 (1x4x8x8)",
          when=lambda mc: any(r.functional and r.cost.ops for r in mc.rows)),
    Quirk("Activations and max pooling count 0: ReLU, ReLU6, LeakyReLU and max pooling are registered as zero_ops "
          "(calculate_relu_flops returns 0), SiLU, Sigmoid, GELU, Hardswish have no hook; PReLU alone counts 1 per "
          "element",
          "register_hooks; on 1x4x8x8: ReLU 0, LeakyReLU 0, MaxPool2d(3, 2, 1) 0, SiLU 0, PReLU 256",
          layers=("activation",) + _MAXPOOL + _ADAPTIVE_MAX),
    Quirk("Average pooling: AvgPool counts 1 per output element (not the window sums); adaptive average pooling "
          "(input/output size ratio + 1) per output element, i.e. input + output elements, not the real windows",
          "count_avgpool, count_adap_avgpool; on 1x4x8x8: AvgPool2d(2) 64, AdaptiveAvgPool2d(1) 260, "
          "AdaptiveAvgPool2d(3) 292 = 256 + 36 (its overlapping windows sum to 400 elements)",
          layers=_AVGPOOL + _ADAPTIVE_AVG),
    Quirk("Transposed convolution is counted as output elements x C_in/g x kernel, not its MACs (input positions x "
          "C_in x C_out/g x kernel): the preset counts the true MACs and differs here",
          "calc_func.calculate_conv2d_flops; ConvTranspose2d(4, 6, 3, stride=2) on 1x4x8x8: thop 62424, MACs 13824",
          layers=_CONV_T, reproduced=False),
    Quirk("Hooks are looked up by exact type: a subclass of Linear or Conv2d (nn.MultiheadAttention's out_proj, "
          "NonDynamicallyQuantizableLinear) counts 0, and so do matrix products outside an nn.Linear",
          "profile(): `m_type in register_hooks` with m_type = type(m)",
          layers=_MATRIX, functional=True),
    Quirk("Side effect: profile() registers total_ops/total_params buffers on every module but removes them only "
          "from hooked ones, so the model's state_dict gains keys (symcost runs it on a copy)",
          "thop.profile(resnet18): 18 extra state_dict keys such as 'layer1.0.total_ops'"),
    _non_affine_quirk("thop 2 per element instead of 4"),
)

# ---- ptflops --------------------------------------------------------------------------------------------------

_PT_TWICE = ("relu", "prelu", "elu", "gelu")      # hooked, and their forward calls a patched F.* function
_PT_PATCHED = ("relu", "prelu", "elu", "gelu", "relu6", "silu", "softmax")

PTFLOPS = Convention(
    "ptflops",
    "ptflops get_model_complexity_info(model, res, backend='pytorch')[0] (the default backend in 0.7.5): module "
    "hooks plus patched torch.nn.functional calls; one per multiply-accumulate and one per bias add of Conv and "
    "Linear; batch and group norm 2 per element, layer norm 1; ReLU, PReLU, ELU, GELU 2 per element (hook + "
    "patched F.*), ReLU6, LeakyReLU, SiLU, Softmax 1; every pooling module 2 per input element; a bare F.relu / "
    "F.*pool* call 1 per element; operators (x + y, scale * x) 0",
    "ptflops/pytorch_engine.py (patch_functional, patch_tensor_ops) and ptflops/pytorch_ops.py MODULES_MAPPING, "
    "FUNCTIONAL_MAPPING (ptflops 0.7.5)",
    weight_table(0, mac=1, bias=1),
    {
        **_each(_PT_TWICE, {"writes": 2}),                 # relu_flops_counter_hook + patched F.relu in forward
        "relu6": {"writes": 1}, "leaky_relu": {"writes": 1},  # hooked; F.hardtanh / F.leaky_relu not patched
        "silu": {"writes": 1}, "softmax": {"writes": 1},   # no hook; patched F.silu / F.softmax in forward
        **_each(_POOLS, {"reads": 2}),                     # pool_flops_counter_hook (input numel) + patched F.*pool*
        **_each(_BN, {"mul": 1, "add": 1}),               # bn_flops_counter_hook: numel * 2 for affine
        "groupnorm": {"writes": 2},
        "layernorm": {"writes": 1},                        # looks for `affine`; LayerNorm has `elementwise_affine`
    },
    functional_weights={
        **_each(_PT_PATCHED, {"writes": 1}),               # _numel_functional_flops_hook
        **_each(_POOLS + ("mean",), {"reads": 1}),         # (mean: F.adaptive_avg_pool2d(x, 1), traced as aten.mean)
    },
)

PTFLOPS_QUIRKS = (
    Quirk("Reports MACs ('GMac') and, alone among these four, adds one per bias element of Conv and Linear",
          "conv_flops_counter_hook, linear_flops_counter_hook; Conv2d(4, 6, 3) on 1x4x8x8: 7992 = 7776 + 216"),
    Quirk("Counted twice: nn.ReLU, nn.PReLU, nn.ELU, nn.GELU and every pooling module add their hook's count and "
          "again the count of the F.relu / F.max_pool2d / F.adaptive_avg_pool2d their forward calls, which "
          "get_flops_pytorch patches (backend_specific_config count_functional=True by default)",
          "on 1x4x8x8: nn.ReLU 512, nn.MaxPool2d(3, 2, 1) 512, nn.AdaptiveAvgPool2d(1) 512, 256 elements each; a "
          "bare F.max_pool2d call 256",
          layers=_PT_TWICE + _POOLS, functional=False),
    Quirk("Pooling counts 1 per input element whatever the kind (max, average, adaptive); activations 1 per output "
          "element: a max over a 3x3 window is as cheap as a copy",
          "pool_flops_counter_hook, _numel_functional_flops_hook",
          layers=_POOLS + ("mean",)),
    Quirk("nn.SiLU and nn.Softmax have no hook yet count 1 per element through the patched F.silu / F.softmax; "
          "Sigmoid, Hardswish, Hardsigmoid, Tanh count 0; ReLU6 and LeakyReLU once (F.hardtanh and F.leaky_relu "
          "are not patched)",
          "on 1x4x8x8: SiLU 256, Sigmoid 0, ReLU6 256, LeakyReLU 256",
          layers=("activation",)),
    Quirk("Operators are invisible: x + y, out += identity, scale * x and a @ b count 0, while torch.add, "
          "Tensor.add, torch.mul, Tensor.mul and torch.matmul calls count; symcost's trace cannot tell the two "
          "apart and the preset assumes operators for add and mul (what torchvision writes) and torch.matmul for "
          "matrix products; likewise F.relu is patched but torch.relu and x.relu() are not",
          "patch_tensor_ops; on 1x4x8x8: x + x 0, torch.add(x, x) 256, x.mul(x) 256, x @ x 0, torch.matmul 2048",
          layers=("elementwise",) + _MATRIX, functional=True),
    Quirk("LayerNorm counts 1 per element even with affine parameters: the hook tests `module.affine`, and "
          "LayerNorm's flag is `elementwise_affine`; BatchNorm and GroupNorm count 2",
          "bn_flops_counter_hook; LayerNorm(8) on 1x4x8x8: 256, GroupNorm(2, 4): 512",
          layers=("layernorm",)),
    Quirk("Module counts are divided by the batch size (a per-image mean) but functional counts are not; "
          "get_model_complexity_info builds a batch of 1 unless given an input_constructor, and then the two "
          "halves disagree: the preset counts the whole batch",
          "compute_average_flops_cost divides by __batch_counter__, torch_functional_flops is added after; a "
          "Conv2d(4, 6, 3, bias=False) then F.relu on 2x4x8x8: 15552/2 + 432 = 8208",
          when=lambda mc: bool(mc.input_shape) and mc.input_shape[0] != 1, reproduced=False),
    Quirk("The backend changes the number: backend='pytorch' (the default of 0.7.5, used here) is the module-hook "
          "rule above; backend='aten' counts only aten convolution, mm, addmm and bmm (MACs plus conv/addmm bias)",
          "flops_counter.get_model_complexity_info(backend=FLOPS_BACKEND.PYTORCH); resnet18: pytorch 1825313768, "
          "aten 1814074344 = 1814073344 MACs + 1000 fc bias"),
    _non_affine_quirk("ptflops 1 per element instead of 2"),
)

# ---- torchprofile ---------------------------------------------------------------------------------------------

TORCHPROFILE = Convention(
    "torchprofile",
    "torchprofile.profile_macs(model, x): jit-traced aten ops; one per multiply-accumulate of convolution, linear, "
    "matmul, mm, bmm, addmm, baddbmm and attention (biases ignored); 1 per output element of batch/layer/group "
    "norm (affine), average and adaptive average pooling, mean, elementwise multiplication (aten::mul) and leaky "
    "ReLU; additions, ReLU, SiLU, sigmoid, softmax and max pooling 0",
    "torchprofile/handlers.py HANDLER_MAP (torchprofile 0.1.0)",
    weight_table(0, mac=1),
    {
        **_each(_BN + ("layernorm", "groupnorm"), {"writes": 1}),   # _norm: output numel if affine
        **_each(_AVGPOOL + _ADAPTIVE_AVG + ("mean",), {"writes": 1}),  # _avg_pool_or_mean: output numel
        "mul": {"writes": 1},                                        # _mul: output numel
        "leaky_relu": {"writes": 1},                                 # _leaky_relu: output numel
    },
)

TORCHPROFILE_QUIRKS = (
    Quirk("Reports multiply-accumulates; biases are not counted",
          "handlers._convolution: prod(output_shape) * in_channels * prod(kernel_size); Conv2d(4, 6, 3) on "
          "1x4x8x8 with and without bias: 7776 both"),
    Quirk("Every aten::mul counts 1 per output element (squeeze-excitation scale * x, any scalar multiply) but no "
          "addition (residuals), no ReLU, SiLU, sigmoid, GELU or softmax",
          "HANDLER_MAP: aten::mul -> _mul, aten::add/relu/silu/sigmoid/gelu/softmax in _ZERO_COST_OPS; on 1x4x8x8: "
          "x * x 256, x + x 0",
          layers=("elementwise", "activation")),
    Quirk("Norms count 1 per output element when affine and 0 without, in eval and training alike (no statistics)",
          "handlers._norm; BatchNorm2d(4) on 1x4x8x8: 256, affine=False: 0",
          layers=("norm",)),
    Quirk("Average pooling, adaptive average pooling and mean count 1 per *output* element, not the elements "
          "summed: a global pool of 1280x7x7 counts 1280",
          "handlers._avg_pool_or_mean; on 1x4x8x8: AdaptiveAvgPool2d(1) 4, AvgPool2d(2) 64; max pooling 0",
          layers=_AVGPOOL + _ADAPTIVE_AVG + ("mean",) + _MAXPOOL),
    Quirk("Transposed convolution counts output elements x weight.shape[0] x kernel (its in_channels test picks "
          "the wrong axis), not the MACs: the preset counts the true MACs and differs here",
          "handlers._convolution; ConvTranspose2d(4, 6, 3, stride=2) on 1x4x8x8: 62424 (MACs 13824); "
          "ConvTranspose2d(4, 4, 3, stride=2): 41616 (MACs 9216)",
          layers=_CONV_T, reproduced=False),
    Quirk("LeakyReLU counts 1 per element although ReLU counts 0",
          "HANDLER_MAP: aten::leaky_relu -> _leaky_relu, aten::relu in _ZERO_COST_OPS",
          layers=("leaky_relu",)),
    _non_affine_quirk("torchprofile 0"),
)

#: name -> the tool, in the order reports list them
PEERS: dict[str, Peer] = {
    p.name: p
    for p in (
        Peer("fvcore", "fvcore", "fvcore", "FlopCountAnalysis(model, (x,)).total()",
             "MACs (fvcore calls them flops)", FVCORE, FVCORE_QUIRKS, _run_fvcore),
        Peer("thop", "thop", "thop", "thop.profile(model, inputs=(x,))[0]", "MACs", THOP, THOP_QUIRKS, _run_thop),
        Peer("ptflops", "ptflops", "ptflops",
             "get_model_complexity_info(model, x.shape[1:], as_strings=False, backend='pytorch')[0]", "MACs",
             PTFLOPS, PTFLOPS_QUIRKS, _run_ptflops),
        Peer("torchprofile", "torchprofile", "torchprofile", "torchprofile.profile_macs(model, x)", "MACs",
             TORCHPROFILE, TORCHPROFILE_QUIRKS, _run_torchprofile),
    )
}

PEER_CONVENTIONS: dict[str, Convention] = {name: p.convention for name, p in PEERS.items()}
