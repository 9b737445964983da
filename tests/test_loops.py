"""Loops over a size become sums (``symcost.tracing.loops``): recurrences over T, Python loops over blocks, split
into chunks then attend per chunk.  Every expected number is torch's own count (``FlopCounterMode``) on the real
module, at lengths of every residue: odd, even, multiples of the block, just above and below a block boundary."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from symcost.errors import NoSingleFormula
from symcost.tracing import trace

LENGTHS = (1, 2, 3, 7, 15, 16, 17, 31, 32, 33, 47, 48, 49, 64, 65, 100)


def torch_flops(model, shape, device="cpu"):
    """FlopCounterMode's count.  Recurrent layers on meta tensors: on CPU tensors torch runs them as one fused
    kernel (``mkldnn_rnn``) that FlopCounterMode does not count (0 FLOPs), while on meta they run as the per-step
    ops (addmm per gate matrix) it counts, the same decomposition symcost records."""
    with torch.no_grad(), FlopCounterMode(display=False) as c:
        model.to(device)(torch.randn(*shape, device=device) if device == "cpu" else
                         torch.empty(*shape, device=device))
    return c.get_total_flops()


class Recurrent(nn.Module):
    def __init__(self, kind, layers):
        super().__init__()
        self.rnn = kind(8, 12, num_layers=layers, batch_first=True)

    def forward(self, x):
        return self.rnn(x)[0]


class Blocks(nn.Module):
    """A Python loop over blocks of 16 tokens, attention inside each block; the last block is partial."""

    def __init__(self, block=16):
        super().__init__()
        self.block = block
        self.qkv = nn.Linear(8, 24)

    def forward(self, x):
        out = []
        for i in range(0, x.shape[1], self.block):
            q, k, v = self.qkv(x[:, i:i + self.block]).chunk(3, dim=-1)
            out.append(torch.softmax(q @ k.transpose(1, 2), dim=-1) @ v)
        return torch.cat(out, dim=1)


class SplitAttend(nn.Module):
    """``torch.split`` into chunks of 32, then attention per chunk (the last chunk L - 32*(ceiling(L/32) - 1))."""

    def __init__(self, chunk=32):
        super().__init__()
        self.chunk = chunk
        self.proj = nn.Linear(8, 8)

    def forward(self, x):
        x = self.proj(x)
        outs = [F.scaled_dot_product_attention(c, c, c) for c in torch.split(x, self.chunk, dim=1)]
        return torch.cat(outs, dim=1)


@pytest.mark.parametrize("kind", [nn.LSTM, nn.GRU])
@pytest.mark.parametrize("layers", [1, 2])
def test_recurrence_over_t_is_a_sum(kind, layers):
    model = Recurrent(kind, layers)
    mc = trace(model, (2, "T", 8), sizes=({"T": 21}, {"T": 14}))
    assert mc.uncovered == {}
    assert any("runs the same" in n for n in mc.notes), mc.notes
    for t in LENGTHS:
        assert mc.evaluate({"T": t}, "torch")["flops"] == torch_flops(model, (2, t, 8), "meta"), (kind, layers, t)
        assert mc.evaluate({"T": t}, "torch")["params"] == sum(p.numel() for p in model.parameters())


def test_lstm_default_trace_sizes_and_symbolic_batch():
    model = Recurrent(nn.LSTM, 1)
    mc = trace(model, ("B", "T", 8))
    for b, t in ((1, 1), (2, 17), (3, 32), (5, 64), (4, 33)):
        assert mc.evaluate({"B": b, "T": t}, "torch")["flops"] == torch_flops(model, (b, t, 8), "meta"), (b, t)


# SDPA on CPU tensors of 3 dims runs a fused kernel FlopCounterMode counts as 0: on meta, the bmm's it counts
@pytest.mark.parametrize("build,block,device", [(Blocks, 16, "cpu"), (SplitAttend, 32, "meta")])
def test_blocks_and_chunks_sum_with_a_partial_last_one(build, block, device):
    model = build()
    mc = trace(model, (1, "L", 8), sizes=({"L": 5 * block + 3}, {"L": 3 * block + 5}))
    assert mc.uncovered == {}
    for t in (*LENGTHS, block - 1, block, block + 1, 2 * block - 1, 2 * block, 2 * block + 1, 5 * block + 7):
        assert mc.evaluate({"L": t}, "torch")["flops"] == torch_flops(model, (1, t, 8), device), \
            (build.__name__, t)


def test_trip_count_is_a_ceiling():
    mc = trace(Blocks(), (1, "L", 8), sizes=({"L": 83}, {"L": 53}))
    note = next(n for n in mc.notes if "runs the same" in n)
    assert "ceiling(L/16)" in note, note


class Branch(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(8, 8)
        self.b = nn.Linear(8, 8)

    def forward(self, x):
        x = self.a(x)
        if x.shape[1] > 100:
            x = torch.relu(self.b(x))
        return x


def test_a_branch_is_named_a_branch_not_a_loop():
    # one formula asked for (pieces=False): refused as a branch; with pieces, each side is a piece (test_pieces.py)
    with pytest.raises(NoSingleFormula, match="branch") as e:
        trace(Branch(), (1, "L", 8), sizes=({"L": 150}, {"L": 50}), pieces=False)
    assert "a loop" not in str(e.value) and "recurrence" not in str(e.value)
    mc = trace(Branch(), (1, "L", 8), sizes=({"L": 150}, {"L": 50}))
    for t in (1, 50, 100, 101, 150, 257):  # the branch's two sides, each from FlopCounterMode
        assert mc.evaluate({"L": t}, "torch")["flops"] == torch_flops(Branch(), (1, t, 8), "cpu"), t


def test_split_into_chunks_of_1024_at_the_issue_lengths():
    # torch.split(x, 1024) then attention per chunk, traced where it makes 3 and 4 chunks: ceiling(L/1024) chunks,
    # the last of L - 1024*(ceiling(L/1024) - 1) tokens
    model = SplitAttend(chunk=1024)
    mc = trace(model, (1, "L", 8), sizes=({"L": 2500}, {"L": 3600}))
    assert any("ceiling(L/1024) times" in n for n in mc.notes), mc.notes
    for t in (1, 1023, 1024, 1025, 2047, 2048, 2049, 2500, 3073):
        assert mc.evaluate({"L": t}, "torch")["flops"] == torch_flops(model, (1, t, 8), "meta"), t


def torch_step_flops(model, shape, device):
    """FlopCounterMode's count of a forward and backward (seeded with ones), as ``trace(..., backward=True)``."""
    model = model.to(device).train()
    x = torch.randn(*shape, device=device) if device == "cpu" else torch.empty(*shape, device=device)
    with FlopCounterMode(display=False) as c:
        out = model(x)
        out.backward(torch.ones_like(out))
    return c.get_total_flops()


@pytest.mark.parametrize("build,shape,sizes,device,lengths", [
    (lambda: Recurrent(nn.LSTM, 1), (2, "T", 8), ({"T": 21}, {"T": 14}), "meta", (2, 3, 16, 17, 33)),
    (lambda: Recurrent(nn.GRU, 2), (2, "T", 8), ({"T": 21}, {"T": 14}), "meta", (2, 3, 16, 17, 32)),
    (Blocks, (1, "T", 8), ({"T": 83}, {"T": 53}), "cpu", (17, 31, 32, 33, 48, 49, 100)),
])
def test_backward_of_a_loop_is_a_sum(build, shape, sizes, device, lengths):
    model = build()
    mc = trace(model, shape, sizes=sizes, backward=True, train=True)
    for t in lengths:
        real = torch_step_flops(model, tuple(t if d == "T" else d for d in shape), device)
        assert mc.evaluate({"T": t}, "torch")["flops"] == real, t


def test_backward_refuses_lengths_its_recordings_did_not_show():
    # the backward pass of blocks of 16 runs its first two blocks apart from the rest: the sum is claimed from two
    # blocks on (a size below is refused, naming the size; never a number the recordings did not check)
    from symcost.errors import UsageError

    mc = trace(Blocks(), (1, "T", 8), sizes=({"T": 83}, {"T": 53}), backward=True, train=True)
    with pytest.raises(UsageError, match="ceiling"):
        mc.evaluate({"T": 16}, "torch")


class CellLoop(nn.Module):
    """A recurrence written in Python: an LSTMCell stepped over T."""

    def __init__(self):
        super().__init__()
        self.cell = nn.LSTMCell(8, 12)

    def forward(self, x):
        h = c = torch.zeros(x.shape[0], 12, device=x.device)
        outs = []
        for t in range(x.shape[1]):
            h, c = self.cell(x[:, t], (h, c))
            outs.append(h)
        return torch.stack(outs, dim=1)


def test_python_recurrence_over_a_cell_and_nn_rnn():
    for model in (CellLoop(), Recurrent(nn.RNN, 1)):
        mc = trace(model, (2, "T", 8), sizes=({"T": 21}, {"T": 14}))
        for t in (1, 2, 16, 17, 33):
            assert mc.evaluate({"T": t}, "torch")["flops"] == torch_flops(model, (2, t, 8), "meta"), (model, t)


class Growing(nn.Module):
    """Attention of each new token over all the tokens before it: the body grows with the iteration."""

    def forward(self, x):
        return torch.cat([x[:, :t + 1].transpose(1, 2) @ x[:, :t + 1] for t in range(x.shape[1])], dim=1)


def test_a_body_that_grows_each_iteration_is_refused_naming_it():
    with pytest.raises(NoSingleFormula, match="sizes change from one iteration to the next"):
        trace(Growing(), (1, "T", 4), sizes=({"T": 21}, {"T": 14}))


class Twice(nn.Module):
    """The same layer once more above 200 tokens: a repetition at one trace size, yet a branch, not a loop."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(8, 8)

    def forward(self, x):
        x = self.a(x)
        if x.shape[1] > 200:
            x = self.a(x)
        return x


def test_a_branch_that_repeats_a_layer_is_still_a_branch():
    with pytest.raises(NoSingleFormula, match="branch") as e:
        trace(Twice(), (1, "L", 8), pieces=False)
    assert "a loop in" not in str(e.value)
