"""The fast paths of a trace change nothing: the recorder's own walk of op arguments equals pytree's, the layer-cost
memo tells apart arguments that only compare equal (1, 1.0, True; 0.0 and -0.0) and leaves a user's layer alone,
totals summed in Python integers equal sympy's sums, and the garbage collector is left as the trace found it."""
import gc
from collections import namedtuple

import pytest
import sympy
import torch
from torch import nn
from torch.utils._pytree import tree_flatten, tree_map

from symcost import layer
from symcost.cost import Cost
from symcost.layers.base import _memo_of, cost_memo
from symcost.tracing import TraceError, trace
from symcost.tracing.record import TensorRef, _Recorder

Pair = namedtuple("Pair", "a b")


def _structures():
    t = [torch.empty(2, 3, device="meta") for _ in range(5)]
    return [
        (t[0], 1, 2.0, None, torch.float32),
        ([t[0], t[1]], [3, 4], (t[2], [t[3], (t[4],)])),
        ({"x": t[1], "y": [t[0], 5], "z": "s"},),
        (Pair(t[3], [t[2], t[1]]), torch.Size([2, 3]), torch.device("meta")),
        ((), [], {}),
    ]


@pytest.mark.parametrize("args", _structures())
def test_recorder_walk_equals_tree_map(args):
    """Same TensorRefs in the same places and the same input order as ``tree_map`` (the recorder's old walk)."""
    fast, slow = _Recorder(), _Recorder()
    got_inputs, want_inputs = [], []

    def ref(x):
        if isinstance(x, torch.Tensor):
            n = slow.number(x)
            want_inputs.append(n)
            return TensorRef(n)
        return x

    got = fast._ref(args, got_inputs)
    want = tree_map(ref, args)
    assert got == want and type(got) is type(want)
    assert got_inputs == want_inputs
    tensors = [x for x in tree_flatten(args)[0] if isinstance(x, torch.Tensor)]
    assert [id(x) for x in fast._outputs(args, [])] == [id(x) for x in tensors]


def test_memo_keys_tell_apart_values_that_compare_equal():
    x = sympy.Symbol("x", positive=True, integer=True)
    with cost_memo():
        keys = {_memo_of(layer("pow", exponent=e), ((x,),))[1] for e in (2, 2.0)}
        assert len(keys) == 2
        zero, minus_zero = (layer("hardtanh", min_val=v, max_val=1.0) for v in (0.0, -0.0))
        assert _memo_of(zero, ((x,),))[1] != _memo_of(minus_zero, ((x,),))[1]
        # the same layer on another shape, or the same shape with a float size: other keys
        relu = layer("relu")
        assert _memo_of(relu, ((sympy.Integer(3),),))[1] != _memo_of(relu, ((3.0,),))[1]
    assert _memo_of(relu, ((x,),)) == (None, None)  # no memo outside a trace


def test_memo_returns_what_the_layer_computes():
    """At sizes of every residue: the memoised cost equals a fresh computation, and a second call hits the memo."""
    conv = layer("conv2d", symbolic=False, in_channels=3, out_channels=8, kernel_size=3, stride=2, padding=1)
    for h in (31, 32, 33, 64):
        fresh = conv.cost((1, 3, h, h))
        with cost_memo():
            first = conv.cost((1, 3, h, h))
            assert first == fresh
            assert conv.cost((1, 3, h, h)) is first
        # (h + 2 - 3) // 2 + 1 output rows; 8 x rows^2 outputs x 27 MACs each
        rows = (h - 1) // 2 + 1
        assert int(fresh.macs) == 8 * rows * rows * 27


def test_a_users_layer_is_not_memoised():
    from symcost.layers.base import Layer

    class Counting(Layer):  # defined outside symcost: its _cost need not be pure
        name, family, torch_name, summary = "counting", "custom", "", ""
        calls = 0

        def _cost(self, x):
            Counting.calls += 1
            return Cost(output_shape=x)

    with cost_memo():
        Counting().cost((2, 3))
        Counting().cost((2, 3))
    assert Counting.calls == 2


def test_integer_totals_equal_sympy_sums():
    """A concrete derivation's totals (summed in Python integers) equal the symbolic derivation's (sympy sums) at
    the same size, under every convention, as sympy Integers."""
    from symcost.conventions import CONVENTIONS

    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()).eval()
    concrete, symbolic = trace(net, (2, 3, 17, 17)), trace(net, (2, 3, "H", "W"))
    at = {s: sympy.Integer(17) for s in symbolic.symbols}
    for name in CONVENTIONS:
        got, want = concrete.total(name), symbolic.total(name)
        for metric in got:
            assert type(got[metric]) is type(want[metric].xreplace(at)) and got[metric] == want[metric].xreplace(at)
    # 2 x 4 x 15 x 15 outputs x 27 MACs = 48600
    assert concrete.total("flops")["macs"] == 48600


def test_trace_leaves_the_garbage_collector_as_it_found_it():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()).eval()
    assert gc.get_freeze_count() == 0
    trace(net, (1, 3, "H", "W"))
    assert gc.get_freeze_count() == 0
    with pytest.raises(TraceError):
        trace(net, (1, 5, "H", "W"))  # 5 channels into a 3-channel conv: refused
    assert gc.get_freeze_count() == 0
    gc.freeze()  # someone else's frozen objects stay frozen: trace never unfreezes them
    # (the count itself may drop: a frozen object freed by its reference count, as when a cache of sympy's evicts
    # an expression of an earlier trace, leaves the frozen generation without being unfrozen)
    unfrozen = []
    real_unfreeze = gc.unfreeze
    try:
        gc.unfreeze = lambda: unfrozen.append(True)
        trace(net, (1, 3, "H", "W"))
        assert gc.get_freeze_count() > 0 and not unfrozen
    finally:
        gc.unfreeze = real_unfreeze
        gc.unfreeze()


def test_a_command_run_in_process_leaves_the_collector_alone():
    """Only the program itself (``main()`` on the command line, about to exit) freezes what it made: a command run
    in process (``main([...])``) leaves the collector as it found it."""
    from symcost.cli import main

    assert gc.get_freeze_count() == 0
    threshold = gc.get_threshold()
    assert main(["formula", "conv2d", "--bias"]) == 0
    assert gc.get_freeze_count() == 0 and gc.get_threshold() == threshold


def test_the_program_exits_with_its_output_written():
    """``python -m symcost.cli`` freezes its objects before the exit: what it prints is all there."""
    import json
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "symcost.cli", "eval", "conv2d", "--input", "1x3x8x8", "--json",
                           "in_channels=3", "out_channels=4", "kernel_size=3"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)
