"""A user's own op: uncovered without a handler, exactly costed with one (``symcost.register_op`` or
``custom_mapping=``), duplicates refused naming both handlers, a failing handler named, the cache left alone."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import symcost
from symcost.cost import Cost, numel
from symcost.errors import LayerError, TraceError, UsageError
from symcost.layers.base import Layer


@torch.library.custom_op("symcost_test::softsign", mutates_args=())
def softsign(x: torch.Tensor) -> torch.Tensor:
    return x / (1 + x.abs())


@softsign.register_fake
def _(x):
    return torch.empty_like(x)


class Softsign(Layer):
    """x / (1 + |x|): per element 1 cmp (|x| as max(x, -x)), 1 add, 1 div."""

    name, family, torch_name, summary = "softsign", "activation", "symcost_test.softsign", "x / (1 + |x|)"

    def _cost(self, x) -> Cost:
        n = numel(x)
        return Cost(output_shape=x, ops={"cmp": n, "add": n, "div": n}, reads=n, writes=n)


def softsign_handler(ev, S, concrete, sym):
    return Softsign(), (S(ev.args[0]),)


class Net(nn.Module):
    """softsign, then the product that makes FlopCounterMode see its output size (2 * numel)."""

    def forward(self, x):
        y = softsign(x).reshape(1, -1)
        return y @ y.transpose(0, 1)


SIZES = [(17, 23), (32, 64), (30, 45), (64, 96), (41, 40)]  # odd, even, multiples of 32, non-square


def torch_flops(shape) -> int:
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        Net()(torch.zeros(*shape, device="meta"))
    return counter.get_total_flops()


def softsign_outputs(h, w) -> int:
    return softsign(torch.zeros(1, 3, h, w, device="meta")).numel()


@pytest.fixture
def registered():
    symcost.register_op("symcost_test::softsign", softsign_handler)
    yield
    symcost.unregister_op("symcost_test.softsign")


def test_without_a_handler_the_op_is_uncovered():
    mc = symcost.trace(Net(), (1, 3, "H", "W"))
    assert mc.uncovered == {"symcost_test.softsign": 1}
    assert [r.layer for r in mc.rows] == ["matmul"]


def check_exact(mc):
    assert mc.uncovered == {}
    row = next(r for r in mc.rows if r.layer == "softsign")
    assert row.functional
    for h, w in SIZES:
        at = {"H": h, "W": w}
        n = softsign_outputs(h, w)                     # torch's output: 3 * h * w elements
        assert n == 3 * h * w
        ops = {k: int(v.xreplace({s: at[str(s)] for s in v.free_symbols})) for k, v in row.cost.ops.items()}
        assert ops == {"cmp": n, "add": n, "div": n}
        # the product after it is 2 * n FLOPs under torch's count only if the op's output shape is right
        assert mc.evaluate(at, "torch")["flops"] == torch_flops((1, 3, h, w)) == 2 * n
        # flops convention: 3 ops per softsign output, then n MACs of the product counted 2 each
        assert mc.evaluate(at, "flops")["flops"] == 3 * n + 2 * n


def test_register_op_costs_it_exactly(registered):
    check_exact(symcost.trace(Net(), (1, 3, "H", "W")))


def test_custom_mapping_costs_it_for_one_trace_only():
    check_exact(symcost.trace(Net(), (1, 3, "H", "W"), custom_mapping={torch.ops.symcost_test.softsign:
                                                                           softsign_handler}))
    assert symcost.trace(Net(), (1, 3, 5, 6)).uncovered == {"symcost_test.softsign": 1}


def test_duplicate_registration_names_both_handlers(registered):
    with pytest.raises(UsageError, match=r"has a handler already: (tests\.)?test_register_op\.softsign_handler; "
                                         r"(tests\.)?test_register_op\..*other cannot"):
        def other(ev, S, concrete, sym):
            return None
        symcost.register_op(torch.ops.symcost_test.softsign.default, other)
    with pytest.raises(UsageError, match=r"aten\.add has a handler already: symcost\.tracing\.ops\.pointwise\._elementwise;"
                                         r" tests?\.?.*softsign_handler"):
        symcost.register_op("aten::add", softsign_handler)


def test_built_in_handlers_cannot_be_unregistered():
    with pytest.raises(UsageError, match="built in"):
        symcost.unregister_op("aten.convolution")


@pytest.mark.parametrize("handler, error, message", [
    (lambda ev, S, c, s: (_ for _ in ()).throw(RuntimeError("boom")), TraceError, "failed: RuntimeError: boom"),
    (lambda ev, S, c, s: Softsign(), TraceError, "expected \\(layer, input shapes\\)"),
    (lambda ev, S, c, s: symcost.layer("conv2d", symbolic=False, in_channels=5, out_channels=1, kernel_size=1),
     LayerError, None),
])
def test_a_failing_handler_is_refused_with_its_name(handler, error, message):
    def bad(ev, S, concrete, sym):
        found = handler(ev, S, concrete, sym)
        return (found, (S(ev.args[0]),)) if isinstance(found, Layer) and found.name == "conv2d" else found

    with pytest.raises(error, match=message or "in_channels|channels"):
        symcost.trace(Net(), (1, 3, 8, 8), custom_mapping={"symcost_test::softsign": bad})


def test_a_handler_returning_none_leaves_the_op_uncovered():
    mc = symcost.trace(Net(), (1, 3, 8, 8), custom_mapping={"symcost_test::softsign": lambda *a: None})
    assert mc.uncovered == {"symcost_test.softsign": 1}


def test_bad_op_names_and_outputs_are_usage_errors():
    with pytest.raises(UsageError, match="namespace.name"):
        symcost.register_op("softsign", softsign_handler)
    with pytest.raises(UsageError, match="output="):
        symcost.register_op("symcost_test::other", softsign_handler, output="same")


def test_the_cache_is_not_used_while_a_user_handler_is_registered(tmp_path, monkeypatch):
    from symcost import cache

    monkeypatch.setenv("SYMCOST_CACHE_DIR", str(tmp_path))
    symcost.register_op("symcost_test::softsign", softsign_handler)
    try:
        cache.store("k", {"value": 1})
        assert cache.load("k", "value") is None and not list(tmp_path.iterdir())
    finally:
        symcost.unregister_op("symcost_test::softsign")
    cache.store("k", {"value": 1})
    assert cache.load("k", "value") == 1


def test_the_readme_example_runs_and_says_what_it_shows():
    import subprocess
    import sys
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    code = text.split("## Adding an op", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    code += "\nprint(symcost.trace(net, (1, 3, 'H', 'W')).uncovered, mc.uncovered, mc.rows[-1].cost.ops['div'])\n"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    # registered for every later trace: costed without custom_mapping; a conv 3x3 leaves 8 x (H-2) x (W-2) outputs
    assert r.stdout.strip() == "{} {} 8*(H - 2)*(W - 2)"


def test_views_cannot_be_given_a_cost():
    with pytest.raises(UsageError, match="counted 0 on purpose"):
        symcost.register_op("aten.view", softsign_handler)
    with pytest.raises(UsageError, match="counted 0 on purpose"):
        symcost.trace(Net(), (1, 3, 4, 4), custom_mapping={"aten::permute": softsign_handler})


def test_each_op_is_decoded_in_one_place():
    """An op's output shape comes from a propagation rule or from its handler's layer, never both: the rules left
    are those of views, data movement (handlers that take the output's shape) and ops with no catalog layer."""
    from symcost.tracing.handlers import HANDLERS, ZERO_COST_OPS

    both = sorted(op for op, h in HANDLERS.items() if h.shape is not None and h.fn is not None and h.output == "layer")
    assert both == []
    assert not {op for op, h in HANDLERS.items() if h.fn is not None} & ZERO_COST_OPS
    assert {op for op, h in HANDLERS.items() if h.fn is None} <= ZERO_COST_OPS | {"aten.contiguous"}  # views
    # the ops the two tables once disagreed on are costed, their shapes their layers'
    for op in ("aten.amin", "aten.var", "aten.std", "aten.max_pool2d", "aten.adaptive_avg_pool1d",
               "aten.adaptive_max_pool1d"):
        assert HANDLERS[op].output == "layer" and HANDLERS[op].shape is None, op
