"""Every catalog layer's own gradients (``symcost formula LAYER --backward``), against two independent sources:
FlopCounterMode around the real module's forward + backward, and the whole-model backward trace of a one-layer model
(which costs the aten kernels autograd runs, one by one)."""
import argparse

import pytest
import sympy
import torch
from torch.utils.flop_counter import FlopCounterMode

from symcost import all_layers
from symcost.check import _plain
from symcost.commands.layers import _build
from symcost.conventions import CONVENTIONS
from symcost.empirical import _FORWARD, _NOT_TORCH, resolve
from symcost.errors import LayerError
from symcost.layers.layer_backward import fused, layer_backward
from symcost.tracing import trace
from tests.test_check_every_layer import SAMPLES
from tests.test_models import cli

TORCH = CONVENTIONS["torch"]
#: layers refused on purpose, with the word their reason must contain
REFUSED = {"argmax": "integers", "compare": "boolean", "logical": "boolean", "logical_not": "boolean",
           "copy": "data-movement", "clamp_tensor": "yet"}
#: each layer's torch constructor arguments the catalog keeps apart (check's module omits them)
_TORCH_EXTRA = {"upsample": {"mode"}}


def _variants(name: str, shape: str) -> list[str]:
    """The sample's input shapes and two more: the batch one larger (odd or even in turn), and for layers whose last
    dim is free, the last dim 5 larger (another residue mod 2, 4 and 32)."""
    shapes = [s.split("x") for s in shape.split(",")]
    out = [shape]
    top = max(len(s) for s in shapes)
    if name not in ("addmm",):   # addmm's bias is 1-D: its batch is the matrix rows
        out.append(",".join("x".join([str(int(s[0]) + 1), *s[1:]] if len(s) == top else s) for s in shapes))
    free_last = name not in {"linear", "layernorm", "fold", "matmul", "bmm", "addmm", "baddbmm", "add", "logical",
                             "minimum", "clamp_tensor", "addcmul", "multihead_attention", "prelu"}
    if free_last and len(shapes) == 1 or name == "scaled_dot_product_attention":
        out.append(",".join("x".join([*s[:-1], str(int(s[-1]) + 5)]) for s in shapes))
    return out


#: more settings than `symcost check`'s sample: (layer, input shapes, settings)
MORE = [("addcmul", "2x3x4,3x4,2x3x1", "value=0.5 divide=true"), ("addcmul", "3x4,3x4,3x4", "divide=true"),
        ("upsample", "1x2x5", "scale_factor=3 mode=linear"), ("upsample", "2x3x5x6", "scale_factor=1.5 mode=bicubic"),
        ("upsample", "1x2x4x5", "size=7,9 mode=bicubic align_corners=true"), ("upsample", "1x2x3x4x5", "size=5,4,3 mode=trilinear"),
        ("avgpool2d", "2x3x11x10", "kernel_size=3 stride=2 padding=1 count_include_pad=false"),
        ("embedding", "3x5", "num_embeddings=7 embedding_dim=3"),
        ("layernorm", "2x5x8", "normalized_shape=5,8 bias=false"), ("batchnorm2d", "3x4x5x5", "num_features=4 --mode train"),
        ("groupnorm", "3x6x5", "num_groups=2 num_channels=6 affine=false"),
        ("gelu", "3x7", ""), ("prelu", "2x5", "num_parameters=1"), ("pow", "3x4", "exponent=0.5"),
        ("adaptive_avgpool2d", "1x2x9x7", "output_size=4,3"), ("adaptive_maxpool3d", "1x2x5x6x7", "output_size=2,3,4"),
        ("sub", "2x3x4,4", ""), ("div", "2x1x4,3x1", ""), ("mul", "2x3x4,3x1", ""),
        ("scaled_dot_product_attention", "2x3x5x8,2x3x7x8,2x3x7x6", "is_causal=true"),
        ("multihead_attention", "3x5x12,3x7x12,3x7x12", "embed_dim=12 num_heads=3 batch_first=true"),
        ("multihead_attention", "2x4x8", "embed_dim=8 num_heads=2 batch_first=true bias=false"),
        ("multihead_attention", "5x3x12,7x3x12,7x3x12", "embed_dim=12 num_heads=4"),
        ("multihead_attention", "3x5x12,3x6x12,3x6x12", "embed_dim=12 num_heads=2 batch_first=true need_weights=false"),
        ("var", "2x3x4x5", "dim=1,2 with_mean=true"), ("std", "3x4x5", "dim=-1 keepdim=true with_mean=true")]


def _sample(name: str, shape: str, settings: str | None = None):
    settings = SAMPLES[name][1] if settings is None else settings
    layer, shapes = _build(argparse.Namespace(layer=name, settings=settings.split(), input=shape, options=()),
                           symbolic=False)
    flags = {a.name for a in layer.args if a.kind == "flag"}
    kwargs = {k: (bool(v) if k in flags else _plain(v)) for k, v in layer.values.items() if v is not None}
    ctor = {k: v for k, v in kwargs.items() if k not in (_NOT_TORCH - _TORCH_EXTRA.get(name, set())) | _FORWARD}
    fwd = {k: v for k, v in kwargs.items() if k in _FORWARD}
    shapes = [tuple(int(d) for d in s) for s in shapes]
    if layer.family == "attention" and len(shapes) < 3:
        shapes += [shapes[-1]] * (3 - len(shapes))   # value: a tensor of the key's shape, as `symcost check` runs it
    target = resolve(layer.torch_name)
    if ctor.pop("divide", False):   # the catalog's addcmul with divide is torch.addcdiv
        target = torch.addcdiv
    if ctor.pop("with_mean", False):   # var / std with the mean: torch.var_mean / torch.std_mean
        target = getattr(torch, f"{name}_mean")
    if isinstance(target, type):
        call = target(**ctor)
        call.train(kwargs.get("mode") == "train")
    else:
        def call(*xs, _t=target, _c=ctor, **kw):
            return _t(*xs, **_c, **kw)
    return layer, shapes, call, fwd


def _cases() -> list:
    return [pytest.param(name, shape, None, id=f"{name}-{shape}") for name in sorted(SAMPLES)
            for shape in _variants(name, SAMPLES[name][0])] + \
        [pytest.param(name, shape, settings, id=f"{name}-{shape}-{settings}") for name, shape, settings in MORE]


class _OneLayer(torch.nn.Module):
    """The layer on its inputs plus a scalar parameter each, so that the inputs' gradients are computed (the trace's
    model input needs none)."""

    def __init__(self, call, n: int, fwd: dict, shift: bool = True):
        super().__init__()
        self.call, self.fwd, self.shift = call, fwd, shift
        self.ps = torch.nn.ParameterList([torch.nn.Parameter(torch.zeros(())) for _ in range(n)])

    def forward(self, **xs):
        ins = [x + p for x, p in zip(xs.values(), self.ps)] if self.shift else list(xs.values())
        out = self.call(*ins, **self.fwd)
        return out[0] if isinstance(out, tuple) else out


def _backward_total(model, shapes, train=False, dtype="float32") -> dict:
    mc = trace(model, {f"x{i}": s for i, s in enumerate(shapes)}, backward=True, train=train, input_dtype=dtype)
    assert mc.uncovered == {}, mc.uncovered
    rows = [r for r in mc.rows if r.backward]
    ops: dict = {}
    for r in rows:
        for k, v in r.cost.ops.items():
            ops[k] = ops.get(k, 0) + v
    return {"ops": ops, "reads": sum(r.cost.reads for r in rows), "writes": sum(r.cost.writes for r in rows),
            "torch": sum(TORCH.count_row(r) for r in rows)}


def _minus(a: dict, b: dict) -> dict:
    ops = {k: a["ops"].get(k, 0) - b["ops"].get(k, 0) for k in set(a["ops"]) | set(b["ops"])}
    return {"ops": {k: v for k, v in ops.items() if v != 0}, "reads": a["reads"] - b["reads"],
            "writes": a["writes"] - b["writes"], "torch": a["torch"] - b["torch"]}


def _ours(parts) -> dict:
    total = sum(parts, start=type(next(iter(parts)))()) if parts else None
    ops = {k: v for k, v in total.ops.items() if v != 0}
    return {"ops": ops, "reads": total.reads, "writes": total.writes, "torch": sum(TORCH.count(c) for c in parts)}


def _trace_of_layer(name, shape, freeze=False, settings=None) -> tuple[dict, dict]:
    """The layer's own backward in a one-layer model's trace: the model's backward less the inputs' shifts (the sum
    that is each shift's gradient)."""
    layer, shapes, call, fwd = _sample(name, shape, settings)
    train = isinstance(call, torch.nn.Module) and call.training
    if freeze:
        for p in call.parameters():
            p.requires_grad_(False)
    if name == "embedding":   # token ids: no gradient, no shift
        got = _backward_total(_OneLayer(call, 0, fwd, shift=False), shapes, train, dtype="int64")
    else:
        got = _backward_total(_OneLayer(call, len(shapes), fwd), shapes, train)
    for s in shapes if name != "embedding" else ():   # each input's shift alone: the backward of x + p
        got = _minus(got, _backward_total(_OneLayer(torch.nn.Identity(), 1, {}), [s]))
    return layer, got


def _recounted(layer, x) -> dict:
    """Work a fused kernel does once for all its outputs, which each part computed alone does again (the kernels'
    docstrings): counted (parts - 1) times too many in the parts' sum."""
    n, c = sympy.Mul(*x), x[1] if len(x) > 1 else 1
    if layer.name == "prelu":                                       # x > 0, once per element
        return {"cmp": n}
    if layer.name == "groupnorm" and layer.affine:                  # sum dy x and sum dy per (sample, channel)
        return {"mul": 2 * n, "add": 2 * 2 * (n - x[0] * c)}
    if layer.name.startswith("batchnorm") and layer.mode == "train" and layer.affine:
        # sum (x - mu) g (n add, n mul, n - C add) shared by grad input and grad weight; sum g (n - C add) by grad
        # input and grad bias
        return {"add": n + n - c + n - c, "mul": n}
    return {}


@pytest.mark.sampled(every=2)  # a slow corpus: see conftest.py
@pytest.mark.parametrize("name,shape,settings", _cases())
def test_parts_equal_the_one_layer_trace(name, shape, settings):
    if name in REFUSED:
        pytest.skip("refused: test_forward_plus_backward_equals_flop_counter checks the reason")
    layer, got = _trace_of_layer(name, shape, settings=settings)
    parts = layer_backward(layer, *[tuple(int(d) for d in s.split("x")) for s in shape.split(",")])
    ours = _ours(list(parts.values()))
    shared = fused(layer)
    x = tuple(int(d) for d in shape.split(",")[0].split("x"))
    recounted = _recounted(layer, x)
    assert ours["torch"] == got["torch"]
    assert {k: v - recounted.get(k, 0) for k, v in ours["ops"].items()} == got["ops"]
    if not shared:   # one kernel per part: reads and writes add up too
        assert (sympy.expand(ours["reads"]), sympy.expand(ours["writes"])) == (got["reads"], got["writes"])


@pytest.mark.parametrize("name", sorted(n for n in SAMPLES if n not in REFUSED and n != "embedding"))
def test_input_gradients_alone_equal_the_trace_with_frozen_parameters(name):
    layer, shapes, call, _ = _sample(name, SAMPLES[name][0])
    if not isinstance(call, torch.nn.Module) or not list(call.parameters()):
        pytest.skip("no parameters: the test above covers it")
    params = {f"grad_{n.replace('.', '_')}" for n, _ in call.named_parameters()}
    layer, got = _trace_of_layer(name, SAMPLES[name][0], freeze=True)
    parts = layer_backward(layer, *shapes)
    assert params <= set(parts)
    part = sum((c for p, c in parts.items() if p not in params), start=type(parts[next(iter(parts))])())
    if name == "prelu":   # torch's kernel has no output mask: the weight's per-element terms are computed anyway
        from symcost.layers.gradients import PreluBackward

        part = PreluBackward().cost(shapes[0], shapes[0], (3, 1, 1))
    assert {k: v for k, v in part.ops.items() if v != 0} == got["ops"]
    if name == "multihead_attention":
        # with frozen projections torch's matmul keeps the batch (bmm against the expanded weight, same MACs, the
        # weight read once per batch row) instead of folding it into the rows: other reads
        return
    assert (part.reads, part.writes) == (got["reads"], got["writes"])


def _flop_counter(name, shape, inputs_need_grad=True, settings=None) -> tuple:
    layer, shapes, call, fwd = _sample(name, shape, settings)
    gen = torch.Generator().manual_seed(0)
    if name == "embedding":
        xs = [torch.randint(0, int(layer.num_embeddings), s, generator=gen) for s in shapes]
    else:
        xs = [torch.randn(*s, generator=gen).requires_grad_(inputs_need_grad) for s in shapes]
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with FlopCounterMode(display=False) as counter, sdpa_kernel(SDPBackend.MATH):
        out = call(*xs, **fwd)
        out = out[0] if isinstance(out, tuple) else out
        if out.requires_grad:
            out.backward(torch.ones_like(out))
    return layer, shapes, counter.get_total_flops()


def _grouped_overcount(layer, parts) -> int:
    """FlopCounterMode counts a grouped convolution's weight gradient as if groups were 1 (``conv_backward_flop``):
    (groups - 1) times its MACs more, 2 FLOPs each."""
    if not layer.name.startswith("conv") or layer.groups == 1:
        return 0
    return 2 * (int(layer.groups) - 1) * int(parts["grad_weight"].macs)


@pytest.mark.sampled(every=2)  # a slow corpus: see conftest.py
@pytest.mark.parametrize("name,shape,settings", [c for c in _cases() if c.values[0] not in ("copy",)])
def test_forward_plus_backward_equals_flop_counter(name, shape, settings):
    layer, shapes, measured = _flop_counter(name, shape, settings=settings)
    if name in REFUSED:
        with pytest.raises(LayerError, match=REFUSED[name]):
            layer_backward(layer, *shapes)
        return
    parts = layer_backward(layer, *shapes)
    ours = TORCH.count(layer.cost(*shapes)) + sum(TORCH.count(c) for c in parts.values())
    assert ours + _grouped_overcount(layer, parts) == measured


#: the gradients of a layer's inputs (the rest: its parameters', and intermediate ones they need)
_INPUT_PARTS = {"grad_input", "grad_other", "grad_mat1", "grad_mat2", "grad_batch1", "grad_batch2", "grad_tensor1",
                "grad_tensor2", "grad_query", "grad_key", "grad_value"}


@pytest.mark.sampled(every=2)  # a slow corpus: see conftest.py
@pytest.mark.parametrize("name,shape,settings", [c for c in _cases() if c.values[0] not in REFUSED])
def test_no_input_gradient_when_the_input_needs_none(name, shape, settings):
    # torch skips the inputs' gradients (and the products only they need) when no input requires grad
    layer, shapes, measured = _flop_counter(name, shape, inputs_need_grad=False, settings=settings)
    parts = layer_backward(layer, *shapes)
    params = [p for p in parts if p not in _INPUT_PARTS and p.endswith(("weight", "bias"))]
    kept = [c for p, c in parts.items() if p not in _INPUT_PARTS] if params else []
    assert measured == TORCH.count(layer.cost(*shapes)) + sum(TORCH.count(c) for c in kept) + \
        _grouped_overcount(layer, parts) * bool(params)


def test_every_layer_has_backward_formulas_or_a_reason():
    # symbolic inputs (the layers' defaults), the check samples' settings
    for name in all_layers():
        layer, shapes = _build(argparse.Namespace(layer=name, settings=SAMPLES[name][1].split(), input=None,
                                                  options=()), symbolic=True)
        try:
            parts = layer_backward(layer, *shapes)
        except LayerError as e:
            assert name in REFUSED and REFUSED[name] in str(e), (name, e)
            continue
        assert name not in REFUSED
        assert parts and all(p.startswith("grad_") for p in parts), name
        assert all(c.free_symbols for c in parts.values() if c.ops), name   # formulas in the sizes


def test_embedding_gradient_is_a_scatter_add_of_the_output_gradient():
    from symcost import layer

    parts = layer_backward(layer("embedding", symbolic=False, num_embeddings=10, embedding_dim=4), (2, 7))
    # 2x7 tokens x 4 values each added into a zeroed 10x4 table
    assert parts["grad_weight"].ops == {"add": 56} and parts["grad_weight"].writes == 40
    with pytest.raises(LayerError, match="padding_idx"):
        layer_backward(layer("embedding", symbolic=False, num_embeddings=10, embedding_dim=4, padding_idx=0), (2, 7))


def test_cli_formula_backward_every_layer_text_and_json():
    import json

    r = cli("formula", "gelu", "approximate=tanh", "--backward", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    # t = tanh(...) 1 fn, 5 add, 12 mul per element (the kernel's algorithm in the docstring) under 'flops'
    assert d["backward"]["grad_input"]["ops"] == {"fn": "C*H*N*W", "add": "5*C*H*N*W", "mul": "12*C*H*N*W"}
    r = cli("formula", "maxpool2d", "kernel_size=2", "--backward", "--input", "1x3x8x8", "--convention", "torch")
    assert r.returncode == 0 and "grad_input" in r.stdout and "forward + backward" in r.stdout
    r = cli("formula", "compare", "--backward")
    assert r.returncode == 2 and "boolean" in r.stderr and "Traceback" not in r.stderr
    r = cli("formula", "linear", "--backward", "--convention", "fvcore")
    assert r.returncode == 2 and "peer tool" in r.stderr


@pytest.mark.parametrize("name", sorted(set(SAMPLES) - set(REFUSED)))
def test_formulas_in_a_batch_symbol_evaluate_to_the_concrete_counts(name):
    # the inputs' batch size a symbol B (as `symcost formula` takes it), then B = the sample's batch
    from symcost.symbols import user_symbol

    layer, shapes, _, _ = _sample(name, SAMPLES[name][0])
    top = max(len(s) for s in shapes)
    b = user_symbol("B")
    symbolic = [(b, *s[1:]) if len(s) == top and name != "addmm" else s for s in shapes]
    ours, want = layer_backward(layer, *symbolic), layer_backward(layer, *shapes)
    assert set(ours) == set(want)
    for part, c in ours.items():
        assert c.free_symbols <= {b}
        at = c.subs({b: shapes[0][0]})
        assert {k: v for k, v in at.ops.items() if v != 0} == want[part].ops, part
        assert (at.reads, at.writes) == (want[part].reads, want[part].writes), part


def test_backward_is_a_method_of_the_layer_and_a_class_may_write_its_own(monkeypatch):
    from symcost import layer
    from symcost.cost import Cost, numel
    from symcost.errors import LayerError
    from symcost.layers.base import Layer
    from symcost.registry import REGISTRY
    from symcost.timing import kind_of

    conv = layer("conv2d", in_channels=3, out_channels=8, kernel_size=3, symbolic=False)
    # grad_weight of a 3x3 conv, 3 -> 8 channels, on 1x3x10x10: one MAC per weight per output position,
    # 8*3*9 weights x 8*8 positions = 13824
    assert conv.backward((1, 3, 10, 10))["grad_weight"].macs == 8 * 3 * 9 * 8 * 8

    class Twice(Layer):   # y = 2x: its gradient 2g, one mul per element
        name, family, torch_name, summary = "twice_test", "mystery", "x.mul(2)", "2x"
        time_kind = "no-such-kind"

        def _cost(self, x):
            return Cost(output_shape=x, ops={"mul": numel(x)}, reads=numel(x), writes=numel(x))

        def _backward(self, x):
            return {"grad_input": Cost(output_shape=x, ops={"mul": numel(x)})}

    monkeypatch.setitem(REGISTRY, "twice_test", Twice)
    assert Twice().backward((4, 5))["grad_input"].ops == {"mul": 20}
    with pytest.raises(LayerError, match="time_kind 'no-such-kind' is not a kind"):
        kind_of("twice_test", "mystery")
    monkeypatch.setattr(Twice, "time_kind", "elementwise")
    assert kind_of("twice_test", "mystery") == "elementwise"


def test_each_layer_s_gradient_rule_is_on_its_class():
    """A catalog layer's backward is its class's ``_backward``, written in its family module beside its forward (or
    one of the shared rules of ``layer_backward``): no table of rules keyed by layer names."""
    from symcost.layers import layer_backward
    from symcost.registry import REGISTRY, load_catalog

    load_catalog()
    assert not hasattr(layer_backward, "_RULES")
    ruled = {name: cls for name, cls in REGISTRY.items() if getattr(cls, "_backward", None) is not None}
    assert len(ruled) > 60
    for name, cls in ruled.items():
        assert cls._backward.__module__ in (cls.__module__, layer_backward.__name__), name


def test_a_users_subclass_inherits_no_gradient_rule():
    from symcost.errors import LayerError
    from symcost.layers.conv import Conv2d

    class Gated(Conv2d):   # a user's layer built on conv2d: its forward may differ, so its backward is its own
        pass

    layer = Gated(in_channels=3, out_channels=4, kernel_size=3)
    assert set(Conv2d(in_channels=3, out_channels=4, kernel_size=3).backward((1, 3, 9, 9))) >= {"grad_input"}
    with pytest.raises(LayerError, match="define _backward on its class"):
        layer.backward((1, 3, 9, 9))
