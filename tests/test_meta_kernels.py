"""The memo of meta kernels while recording (``tracing.meta_kernels``) changes nothing: a model recorded again from the
memo gives the same ops, arguments, tensor numbers and shapes as a recording without it; views, writes, ops off
meta and ops under another dispatch mode (the memory tracker's) run their kernels."""
import pytest
import torch
import transformers
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

import symcost.tracing.meta_kernels as memo_module
from symcost.tracing import trace
from symcost.tracing.meta_kernels import _Unkeyed, _key, _pure, meta_memo
from symcost.tracing.record import record

aten = torch.ops.aten


def _fields(rec) -> tuple:
    modules = [(m.name, m.inputs, m.outputs, m.first_op, m.end_op) for m in rec.modules]
    return rec.ops, rec.shapes, rec.produced, rec.parameters, rec.input_index, rec.backward_start, rec.inputs, modules


def _cnn():
    return nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Dropout(0.1),
                         nn.MaxPool2d(2, ceil_mode=True), nn.Conv2d(8, 16, 3, groups=2), nn.GELU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10)).to("meta")


def _hf(model_type: str):
    cfg = transformers.AutoConfig.for_model(model_type, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                            num_key_value_heads=2, intermediate_size=96, vocab_size=50, n_layer=2,
                                            n_embd=64, n_head=4, bos_token_id=0, eos_token_id=0)
    with torch.device("meta"):
        return transformers.AutoModel.from_config(cfg)


class _Upsample(nn.Module):
    def __init__(self):
        super().__init__()
        self.down, self.up = nn.Conv2d(3, 4, 3, stride=2), nn.ConvTranspose2d(4, 3, 3, stride=2)

    def forward(self, x):
        return self.up(self.down(x), output_size=x.shape[-2:]) * x


CASES = [(_cnn, (2, 3, 33, 31), torch.float32, True), (_cnn, (2, 3, 33, 31), torch.float32, False),
         (lambda: _hf("llama"), (2, 9), torch.int64, False), (lambda: _hf("gpt2"), (1, 7), torch.int64, True),
         (lambda: _Upsample().to("meta"), (1, 3, 17, 16), torch.float32, False)]


@pytest.mark.parametrize("make, shape, dtype, train", CASES)
def test_a_recording_from_the_memo_equals_one_without(make, shape, dtype, train, monkeypatch):
    model = make().train(train)
    served = []
    rebuilt = memo_module._rebuilt
    monkeypatch.setattr(memo_module, "_rebuilt", lambda spec: served.append(spec) or rebuilt(spec))

    def step():
        return record(model, torch.zeros(shape, dtype=dtype, device="meta"), backward=True)

    with torch.enable_grad():
        plain = step()
        assert not served  # no memo outside ``meta_memo``
        with meta_memo():
            first = step()
            again = step()
    assert _fields(first) == _fields(plain)
    assert _fields(again) == _fields(plain)
    assert len(served) > len(plain.ops) // 3  # the second recording's kernels came from the memo


def test_a_trace_with_the_memo_equals_one_without(monkeypatch):
    model = _hf("llama")
    with_memo = trace(model, (1, "L"), input_dtype="int64", backward=True)
    monkeypatch.setattr(memo_module, "_pure", lambda func: False)  # every kernel runs
    without = trace(model, (1, "L"), input_dtype="int64", backward=True)
    for name in ("flops", "torch", "megatron"):
        assert with_memo.total(name) == without.total(name)


def test_views_writes_and_value_dependent_ops_run_their_kernels():
    assert _pure(aten.add.Tensor) and _pure(aten.mm.default)
    for op in (aten.view.default, aten.transpose.int, aten.split.Tensor, aten._unsafe_view.default, aten.add_.Tensor,
               aten.copy_.default, aten.nonzero.default, aten.bernoulli.default, aten.add.out):
        assert not _pure(op), op


def test_keys_tell_apart_what_compares_equal():
    a = torch.empty(2, 3, device="meta")
    keys = {_key((a, v), []) for v in (1, 1.0, True, 0.0, -0.0)}
    assert len(keys) == 5  # an int and a float promote differently; 0.0 == -0.0
    strided = torch.empty(3, 2, device="meta").t()  # same shape, other strides
    assert _key((a,), []) != _key((strided,), [])
    assert _key((a,), []) != _key((a.to(torch.float16),), [])
    for other in (torch.empty(2, 3), torch.empty(2, 3, dtype=torch.complex64, device="meta")):
        with pytest.raises(_Unkeyed):
            _key((other,), [])


class _Log(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(str(func))
        return func(*args, **(kwargs or {}))


def test_a_dispatch_mode_below_the_recorder_sees_every_kernel():
    """The memory tracker records under the recorder: every op still reaches it, none made by the memo."""
    model = _cnn().eval()
    logs = []
    for memo in (False, True):
        with torch.no_grad(), _Log() as log:
            if memo:
                with meta_memo():
                    record(model, torch.zeros(1, 3, 16, 16, device="meta"))
                    log.ops.clear()
                    record(model, torch.zeros(1, 3, 16, 16, device="meta"))
            else:
                record(model, torch.zeros(1, 3, 16, 16, device="meta"))
        logs.append(log.ops)
    assert logs[0] == logs[1] and logs[0]


def _guarded(name):
    from test_proven_domains import build

    return build(name).to("meta")


def _proof_run(model, shape: tuple, sizes: tuple, dtype: str, backward: bool) -> tuple:
    """Everything a symbolic run leaves in its shape environment: each guard (in order), the sizes tied or fixed."""
    import sympy

    from symcost.tracing.guards import _proof, _run

    symbols = {d: sympy.Symbol(d, integer=True, positive=True) for d in shape if isinstance(d, str)}
    hints = dict(zip(symbols.values(), sizes))
    dims = tuple(symbols.get(d, d) for d in shape)
    env, names = _run(model, dims, hints, dtype, backward)
    proof = _proof(env, names)
    return ([str(g.expr) for g in env.guards], {str(k): str(v) for k, v in env.replacements.items()},
            proof.proven, proof.reason, [str(g.condition) for g in proof.guards])


# (model, input, the sizes its symbols take in the run, dtype, backward)
SYMBOLIC_CASES = [(_cnn, (2, 3, "H", "W"), (33, 31), "float32", True),
                  (lambda: _hf("llama"), (1, "L"), (13,), "int64", True),
                  (lambda: _hf("gpt2"), (2, "L"), (17,), "int64", True),
                  (lambda: _guarded("truncate"), (1, "L", 16), (37,), "float32", False),
                  (lambda: _guarded("chunks"), (1, "L", 16), (2100,), "float32", True),
                  (lambda: _guarded("threshold"), (1, 3, "H", "W"), (21, 613), "float32", False),
                  (lambda: _guarded("own_size"), (1, 3, "H", "W"), (21, 35), "float32", True),
                  (lambda: _guarded("topk"), (2, "N", 8), (19,), "float32", False),
                  (lambda: _guarded("divisible"), (1, 3, "H", "W"), (16, 40), "float32", True)]


@pytest.mark.parametrize("make, shape, sizes, dtype, backward", SYMBOLIC_CASES)
def test_a_symbolic_run_with_the_memo_leaves_the_same_guards(make, shape, sizes, dtype, backward, monkeypatch):
    """The memo of fake kernels (a proof's run) answers repeated ops and views, and the shape environment ends with
    the same guards, in the same order, and the same tied sizes as a run where every kernel runs."""
    model = make().train(backward)
    served = []
    rebuilt, view = memo_module._rebuilt, memo_module._view
    monkeypatch.setattr(memo_module, "_rebuilt", lambda spec, mode: served.append(spec) or rebuilt(spec, mode))
    monkeypatch.setattr(memo_module, "_view", lambda *a: served.append(a) or view(*a))
    with_memo = _proof_run(model, shape, sizes, dtype, backward)
    repeats = len(served)
    monkeypatch.setattr(memo_module, "_pure", lambda func: False)
    monkeypatch.setattr(memo_module, "_plain_view", lambda func: False)
    served.clear()
    plain = _proof_run(model, shape, sizes, dtype, backward)
    assert not served
    assert with_memo == plain
    assert with_memo[0] or with_memo[1]  # a run that asked nothing would show nothing here
    if make is not SYMBOLIC_CASES[1][0]:
        return
    with torch.device("meta"):  # the Llama's second block repeats its first: the memo answers most of it
        ops = len(_proof_ops(model, shape, sizes))
    assert repeats > ops // 3


def _proof_ops(model, shape, sizes) -> list:
    class Count(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            seen.append(func)
            return func(*args, **(kwargs or {}))

    seen: list = []
    x = torch.zeros([sizes[0] if isinstance(d, str) else d for d in shape], dtype=torch.int64)
    with torch.enable_grad(), Count():
        model(x)[0].sum().backward()
    return seen


def test_a_view_as_another_dtype_is_not_rebuilt_as_a_strided_view():
    import sympy  # noqa: F401  (the shape environment's sizes)
    from torch._dynamo.source import ConstantSource
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.fx.experimental.symbolic_shapes import DimDynamic, ShapeEnv

    env = ShapeEnv(specialize_zero_one=False)
    mode = FakeTensorMode(shape_env=env, allow_non_fake_inputs=True)
    length = env.create_symintnode(env.create_symbol(13, ConstantSource("L"), dynamic_dim=DimDynamic.DYNAMIC), hint=13)
    with mode, memo_module.fake_kernel_memo(mode):
        x = torch.zeros([2, length], device="meta")
        views = [x.view(torch.int32), x.view(torch.int32), x.t(), x.t()]   # each asked twice: the second from the memo
    assert [v.dtype for v in views] == [torch.int32, torch.int32, torch.float32, torch.float32]
    assert views[3].shape == (length, 2) and views[3].stride() == (1, length)
