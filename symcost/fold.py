r"""BatchNorm folding: merge each eval-mode BatchNorm into the conv/linear that produces its input (seed 003).

In eval mode BatchNorm is a per-channel affine map with constants from its running statistics.  If its input
is exactly the output $z = W * x + b$ of a conv or linear layer, then with $a = \gamma / \sqrt{\sigma^2 + \epsilon}$

.. math::
    \gamma \frac{(W * x + b) - \mu}{\sqrt{\sigma^2 + \epsilon}} + \beta = (W a) * x + \big((b - \mu) a + \beta\big),

so the merged layer has $W' = W a$ (each output channel's filter scaled by its $a$) and $b' = (b - \mu) a + \beta$
($b = 0$ when the layer had no bias; it gains one).  ``fold_formula`` derives exactly this with sympy.

Which axis of the weight is the output channel:

* ``ConvNd``: weight $(C_{out}, C_{in}/g, k\ldots)$, axis 0, also grouped and depthwise.
* ``Linear``: weight $(C_{out}, C_{in})$, axis 0; BatchNorm1d normalises axis 1, which is the Linear's feature
  axis only for a rank-2 output $(N, C)$, so the rank is checked on an example input.
* ``ConvTransposeNd`` (the seed's open question): weight $(C_{in}, C_{out}/g, k\ldots)$.  Output channel
  $o = G \cdot C_{out}/g + j$ of group $G$ is $b_o + \sum_{i \in G} x_i \star W[i, j]$, so $a_o$ scales
  $W[i, j]$ for every input channel $i$ of group $G$: view the weight as $(g, C_{in}/g, C_{out}/g, k\ldots)$ and
  multiply by $a$ viewed as $(g, 1, C_{out}/g, 1\ldots)$.  With $g = 1$ that is simply axis 1.

Not folded, each reported with its reason: BN in training mode (it uses batch statistics), BN without running
statistics, BN whose input is not a conv/linear output, a producer whose output has other consumers (they would see
the normalised values), modules called more than once, weights shared with another module, subclasses that
override ``forward``.  A *pre-activation* BN (BN -> ReLU -> conv, or BN -> conv) is never folded into the following
conv: $\mathrm{conv}(a x + c)$ needs the shift $c$ at every tap, but zero padding feeds zeros, not $c$, at the
borders, so the merged bias would be wrong on the border (and a ReLU in between makes it non-linear anyway).

Pairs come from the data-flow graph, not module order: ``torch.fx`` where the model traces, otherwise one forward
pass on an example input with forward hooks and a ``TorchFunctionMode`` that sees every other use of a tensor.
"""
from __future__ import annotations

import contextlib
import copy
from collections import Counter
from dataclasses import dataclass, field

import sympy
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.lazy import LazyModuleMixin
from torch.overrides import TorchFunctionMode, resolve_name
from torch.utils._pytree import tree_leaves

#: layers a BatchNorm can be folded into, each with the torch class whose forward it must keep
PRODUCERS: tuple[type[nn.Module], ...] = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d,
                                          nn.ConvTranspose3d, nn.Linear)
_BN_FORWARDS = (_BatchNorm.forward, nn.SyncBatchNorm.forward)
PRE_ACTIVATION = ("BN is folded only into a conv/linear that directly produces its input; folding it into the "
                  "following conv (pre-activation) is not done: zero padding makes it inexact at the borders")


from .errors import SymcostError
from .model import Totals


class FoldError(SymcostError):
    """The model cannot be copied or run on the example input: one line."""


# --------------------------------------------------------------------------------------------------- the formula

def fold_formula() -> tuple[sympy.Expr, sympy.Expr]:
    r"""$(W', b')$ derived with sympy from $\gamma((Wx + b) - \mu)/\sqrt{\sigma^2+\epsilon} + \beta$.

    The BN output is expanded as a polynomial in $x$: its coefficient is $W'$, its constant term $b'$.
    """
    w, x, b, mu, gamma, beta = sympy.symbols("W x b mu gamma beta", real=True)
    var, eps = sympy.symbols("sigma2 epsilon", positive=True)
    y = gamma * ((w * x + b) - mu) / sympy.sqrt(var + eps) + beta
    poly = sympy.Poly(sympy.expand(y), x)
    return sympy.simplify(poly.coeff_monomial(x)), sympy.simplify(poly.coeff_monomial(1))


def verify_fold_formula() -> bool:
    """True if the derived (W', b') equal seed 003's $W a$ and $(b - \\mu) a + \\beta$, and BN(conv) == conv'."""
    w, x, b, mu, gamma, beta = sympy.symbols("W x b mu gamma beta", real=True)
    var, eps = sympy.symbols("sigma2 epsilon", positive=True)
    a = gamma / sympy.sqrt(var + eps)
    w_fold, b_fold = fold_formula()
    y = gamma * ((w * x + b) - mu) / sympy.sqrt(var + eps) + beta
    return all(sympy.simplify(e) == 0 for e in (w_fold - w * a, b_fold - ((b - mu) * a + beta),
                                                y - (w * a * x + (b - mu) * a + beta)))


# ----------------------------------------------------------------------------------------------------- result

@dataclass
class FoldResult:
    """What ``fold_batchnorm`` did.

    model:   the folded deep copy (folded BatchNorms are ``nn.Identity``); the input model is never modified.
    folded:  ``(producer_name, bn_name)`` pairs, in graph order.
    skipped: ``(bn_name, reason)`` for each BatchNorm left in place.
    method:  how pairs were found: ``"fx"``, ``"hooks"`` (data flow of one forward pass) or ``"none"``.
    notes:   anything worth saying, e.g. why fx was not used.
    """

    model: nn.Module
    folded: list[tuple[str, str]]
    skipped: list[tuple[str, str]]
    method: str
    notes: list[str] = field(default_factory=list)
    original: nn.Module | None = field(default=None, repr=False)
    example_input_shape: tuple[int, ...] | None = None

    @property
    def n_folded(self) -> int:
        return len(self.folded)

    @property
    def message(self) -> str:
        if not self.folded and not self.skipped:
            return "no BatchNorm layers found: the copy is unchanged"
        text = f"folded {self.n_folded} of {self.n_folded + len(self.skipped)} BatchNorm layers"
        if self.skipped and all("training mode" in r for _, r in self.skipped):
            text += " (all in training mode: call model.eval() first)"
        return text

    def compare(self, input_shape: tuple[int, ...] | None = None, seed: int = 0) -> tuple[float, float]:
        """(max |folded - original|, max |original|) over every output tensor, on one ``randn`` input.

        Both models run in eval mode under ``torch.no_grad()``; their train/eval flags are restored afterwards.
        """
        if self.original is None:
            raise FoldError("this FoldResult has no original model to compare with")
        shape = tuple(input_shape or self.example_input_shape or ())
        if not shape:
            raise FoldError("compare needs an input shape (none was given to fold_batchnorm either)")
        x = random_input(self.original, shape, seed)
        ref = _leaves(_run(self.original, x))
        out = _leaves(_run(self.model, x))
        if len(ref) != len(out) or any(r.shape != o.shape for r, o in zip(ref, out)):
            raise FoldError("the folded model's outputs differ in number or shape from the original's")
        diff = max((float((r.double() - o.double()).abs().max()) for r, o in zip(ref, out) if r.numel()), default=0.0)
        scale = max((float(r.double().abs().max()) for r in ref if r.numel()), default=0.0)
        return diff, scale

    def max_abs_diff(self, input_shape: tuple[int, ...] | None = None, seed: int = 0) -> float:
        """max |folded(x) - original(x)| for x = randn(input_shape), both in eval mode, no grad."""
        return self.compare(input_shape, seed)[0]

    def as_dict(self) -> dict:
        return {"folded": [list(p) for p in self.folded], "skipped": [list(s) for s in self.skipped],
                "n_folded": self.n_folded, "method": self.method, "notes": list(self.notes),
                "message": self.message}


# ------------------------------------------------------------------------------------------------ the transform

def fold_batchnorm(model: nn.Module, example_input_shape: tuple[int, ...] | None = None,
                   method: str = "auto") -> FoldResult:
    """Fold every foldable BatchNorm of a deep copy of ``model`` into the conv/linear producing its input.

    ``example_input_shape`` (e.g. ``(1, 3, 64, 64)``) lets the check see ranks (needed for Linear + BatchNorm1d),
    enables the forward-pass fallback when ``torch.fx`` cannot trace the model, and is the default input of
    ``FoldResult.compare``.  ``method``: ``"auto"`` (fx, else hooks), ``"fx"`` or ``"hooks"``.
    Call ``model.eval()`` first: a BatchNorm in training mode is skipped, as folding would change its output.
    """
    if method not in ("auto", "fx", "hooks"):
        raise ValueError(f"method must be 'auto', 'fx' or 'hooks', got {method!r}")
    if method == "hooks" and example_input_shape is None:
        raise ValueError("method='hooks' runs the model once: pass example_input_shape")
    shape = tuple(int(d) for d in example_input_shape) if example_input_shape is not None else None
    try:
        work = copy.deepcopy(model)
    except Exception as e:
        raise FoldError(f"cannot deep-copy the model: {type(e).__name__}: {_one_line(e)}") from None
    result = FoldResult(model=work, folded=[], skipped=[], method="none", original=model, example_input_shape=shape)
    bns = {name: m for name, m in work.named_modules() if isinstance(m, _BatchNorm) and name}
    if not bns:
        return result

    links, notes = None, []
    if method in ("auto", "fx"):
        try:
            links = _fx_links(work)
            result.method = "fx"
        except Exception as e:  # fx refuses data-dependent control flow, some builtins, ...
            notes.append(f"torch.fx could not trace the model ({type(e).__name__}: {_one_line(e)})")
            if method == "fx":
                raise FoldError(notes[-1]) from None
    if links is None:
        if shape is None:
            why = "no data-flow graph: torch.fx failed and no example_input_shape was given for a forward pass"
            result.notes = notes
            result.skipped = [(name, why) for name in bns]
            return result
        links = _hook_links(work, shape)
        result.method = "hooks"
        if notes:
            notes.append("pairs were found from one forward pass on the example input (forward hooks)")
    out_shapes = _output_shapes(work, shape, {p for _, p, r in links if p and not r}) if shape else {}
    if shape is None:
        notes.append("no example input: ranks were not checked (conv outputs assumed batched)")

    modules = dict(work.named_modules())
    shared = _shared_parameters(work)
    seen = set()
    for bn_name, prod_name, reason in links:
        if bn_name in seen:  # a BN called several times has one link per call, all with the same reason
            continue
        seen.add(bn_name)
        bn = modules[bn_name]
        reason = _bn_problem(bn) or reason or _producer_problem(modules[prod_name], prod_name, shared)
        if not reason:
            reason = _rank_problem(modules[prod_name], bn, out_shapes.get(prod_name), shape is not None)
        if reason:
            result.skipped.append((bn_name, reason))
            continue
        _fold_into(modules[prod_name], bn)
        result.folded.append((prod_name, bn_name))
    for name in bns:
        if name not in seen:
            result.skipped.append((name, "not called by forward (unused module), nothing to fold it into"))
    folded_bns = {id(modules[b]) for _, b in result.folded}
    for name, m in list(work.named_modules(remove_duplicate=False)):
        if id(m) in folded_bns:  # every alias of a folded BN
            parent, _, child = name.rpartition(".")
            setattr(work.get_submodule(parent), child, nn.Identity())
    result.notes = notes
    return result


def randomize_batchnorm(model: nn.Module, seed: int = 0) -> int:
    """Give every BatchNorm random, non-trivial running statistics and affine parameters, in place.

    A freshly built model has mean 0, var 1, gamma 1, beta 0, which makes folding look exact for free; this makes
    a fold test meaningful.  Returns how many BatchNorms were changed.
    """
    g = torch.Generator().manual_seed(seed)
    count = 0
    with torch.no_grad():
        for m in model.modules():
            if not isinstance(m, _BatchNorm):
                continue
            count += 1
            c = m.num_features
            for name, make in (("running_mean", lambda: 0.1 * torch.randn(c, generator=g)),
                               ("running_var", lambda: 0.5 + torch.rand(c, generator=g)),
                               ("weight", lambda: 0.5 + torch.rand(c, generator=g)),
                               ("bias", lambda: 0.1 * torch.randn(c, generator=g))):
                t = getattr(m, name, None)
                if isinstance(t, torch.Tensor) and not isinstance(t, nn.parameter.UninitializedTensorMixin):
                    t.copy_(make().to(t.dtype))
    return count


def random_input(model: nn.Module, shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    """``randn(shape)`` on the model's device, in its floating dtype."""
    ref = next((t for t in [*model.parameters(), *model.buffers()] if t.is_floating_point()), None)
    dtype, device = (ref.dtype, ref.device) if ref is not None else (torch.float32, torch.device("cpu"))
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float64).to(device=device, dtype=dtype)


# ------------------------------------------------------------------------------------------------- the maths

def _fold_into(prod: nn.Module, bn: _BatchNorm) -> None:
    """W' = W a, b' = (b - mu) a + beta, computed in float64 and stored in the producer's dtype."""
    w = prod.weight
    f64 = {"dtype": torch.float64, "device": "cpu"}
    with torch.no_grad():
        mu, var = bn.running_mean.to(**f64), bn.running_var.to(**f64)
        c = mu.numel()
        gamma = bn.weight.to(**f64) if bn.weight is not None else torch.ones(c, **f64)
        beta = bn.bias.to(**f64) if bn.bias is not None else torch.zeros(c, **f64)
        b = prod.bias.to(**f64) if prod.bias is not None else torch.zeros(c, **f64)
        a = gamma / torch.sqrt(var + bn.eps)
        w64 = w.to(**f64)
        extra = (1,) * (w.dim() - 2)
        if isinstance(prod, nn.modules.conv._ConvTransposeNd):
            g = prod.groups  # weight (C_in, C_out/g, k...): scale axis 1 within each group
            w_new = (w64.view(g, w.shape[0] // g, w.shape[1], *w.shape[2:])
                     * a.view(g, 1, c // g, *extra)).view(w.shape)
        else:
            w_new = w64 * a.view(c, 1, *extra)
        b_new = (b - mu) * a + beta
        w.copy_(w_new.to(device=w.device, dtype=w.dtype))
        if prod.bias is None:
            prod.bias = nn.Parameter(b_new.to(device=w.device, dtype=w.dtype), requires_grad=w.requires_grad)
        else:
            prod.bias.copy_(b_new.to(device=w.device, dtype=prod.bias.dtype))


# ------------------------------------------------------------------------------------------ what may be folded

def _bn_problem(bn: nn.Module) -> str | None:
    if type(bn).forward not in _BN_FORWARDS:
        return f"{type(bn).__name__} overrides BatchNorm.forward, so its maths is unknown"
    if isinstance(bn, LazyModuleMixin) and bn.has_uninitialized_params():
        return "lazy BatchNorm not initialised yet (run the model once)"
    if bn.training:
        return "in training mode: it normalises with batch statistics, which folding cannot reproduce"
    if bn.running_mean is None or bn.running_var is None:
        return "no running statistics (track_running_stats=False): it normalises with batch statistics"
    if bn._forward_hooks or bn._forward_pre_hooks:
        return "has forward hooks, which would stop firing if it became nn.Identity"
    return None


def _producer_problem(prod: nn.Module, name: str, shared: set[int]) -> str | None:
    base = next((cls for cls in PRODUCERS if isinstance(prod, cls)), None)
    if base is None:
        return (f"its input comes from {name} ({type(prod).__name__}), not from a conv/linear; "
                + PRE_ACTIVATION)
    if type(prod).forward is not base.forward or getattr(type(prod), "_conv_forward", None) is not getattr(
            base, "_conv_forward", None):
        return f"producer {name} ({type(prod).__name__}) overrides forward, so scaling its weight may not be exact"
    if isinstance(prod, LazyModuleMixin) and prod.has_uninitialized_params():
        return f"producer {name} is a lazy module not initialised yet (run the model once)"
    if torch.nn.utils.parametrize.is_parametrized(prod):
        return f"producer {name} has a parametrized weight (e.g. weight_norm): its stored weight is not W"
    if prod._forward_hooks or prod._forward_pre_hooks:
        return f"producer {name} has forward hooks, which would see the folded weights and output"
    if any(id(p) in shared for p in prod.parameters(recurse=False)):
        return f"producer {name} shares its weight or bias with another module"
    return None


def _rank_problem(prod: nn.Module, bn: _BatchNorm, out_shape, have_shapes: bool) -> str | None:
    """BatchNorm normalises axis 1, which must be the producer's output-channel axis."""
    c = prod.out_features if isinstance(prod, nn.Linear) else prod.out_channels
    if c != bn.num_features:
        return f"num_features={bn.num_features} but its producer has {c} output channels"
    want = 2 if isinstance(prod, nn.Linear) else len(prod.kernel_size) + 2
    if out_shape is None:
        if isinstance(prod, nn.Linear):
            return ("Linear output rank unknown: BatchNorm1d normalises axis 1, the Linear's features only for an "
                    "(N, C) output; pass example_input_shape" if not have_shapes
                    else "Linear output rank unknown (producer not reached by the example input)")
        return None
    if len(out_shape) != want:
        return (f"producer output has shape {tuple(out_shape)}: axis 1 is not its channel axis (an unbatched or "
                "(N, L, C) input), so BatchNorm's channels are not the producer's")
    return None


def _shared_parameters(model: nn.Module) -> set[int]:
    """ids of parameters registered in more than one module (tied weights)."""
    owners = Counter(id(p) for m in model.modules() for p in m.parameters(recurse=False))
    return {i for i, n in owners.items() if n > 1}


# --------------------------------------------------------------------------------------------- finding pairs

class _LeafTracer(torch.fx.Tracer):
    """fx tracer that keeps every conv/linear/BatchNorm (subclasses too) a single call_module node."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, PRODUCERS + (_BatchNorm,)) or super().is_leaf_module(m, qualname)


def _describe(node) -> str:
    if node.op == "placeholder":
        return "the model's input"
    if node.op == "call_module":
        return str(node.target)
    if node.op == "get_attr":
        return f"the attribute {node.target}"
    target = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", str(node.target))
    return f"the operation {target}"


def _fx_links(model: nn.Module) -> list[tuple[str, str | None, str | None]]:
    """(bn_name, producer_name or None, reason or None) for every BatchNorm call in the fx graph."""
    graph = _LeafTracer().trace(model)
    modules = dict(model.named_modules())
    calls = Counter(n.target for n in graph.nodes if n.op == "call_module")
    attrs = [str(n.target) for n in graph.nodes if n.op == "get_attr"]
    links = []
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(modules.get(node.target), _BatchNorm):
            continue
        bn_name = str(node.target)
        src = node.args[0] if node.args else node.kwargs.get("input")
        prod_name = str(src.target) if isinstance(src, torch.fx.Node) and src.op == "call_module" else None
        if calls[bn_name] > 1:
            reason = f"called {calls[bn_name]} times in forward; one module cannot be folded into several layers"
        elif len(node.args) + len(node.kwargs) != 1:
            reason = "called with extra arguments"
        elif prod_name is None:
            what = _describe(src) if isinstance(src, torch.fx.Node) else repr(src)
            reason = f"its input comes from {what}, not from a conv/linear; " + PRE_ACTIVATION
        elif not isinstance(modules[prod_name], PRODUCERS):
            reason = None  # _producer_problem names the producer's type
        elif calls[prod_name] > 1:
            reason = f"producer {prod_name} is called {calls[prod_name]} times in forward (shared module)"
        elif len(src.users) > 1:
            others = ", ".join(_describe(u) for u in src.users if u is not node)
            reason = f"the output of {prod_name} also feeds {others}, which must not see normalised values"
        elif any(a.startswith(p + ".") for a in attrs for p in (prod_name, bn_name)):
            reason = "forward reads its parameters directly, which would see the folded values"
        else:
            reason = None
        links.append((bn_name, prod_name, reason))
    return links


_METADATA = {"dim", "size", "numel", "ndimension", "nelement", "stride", "is_contiguous", "is_floating_point",
             "is_complex", "element_size", "get_device", "__len__", "data_ptr", "storage_offset",
             *(f"{p}.__get__" for p in ("shape", "ndim", "dtype", "device", "layout", "is_cuda", "requires_grad",
                                        "names", "is_sparse", "is_quantized", "is_meta", "grad_fn", "is_leaf",
                                        "itemsize", "nbytes"))}


class _UseCounter(TorchFunctionMode):
    """Counts, per tracked tensor, the torch calls that use it as an argument outside BatchNorm forwards.

    Only tensors in ``tracked`` (module outputs, kept alive) are counted: a freed temporary's id may be reused.
    """

    def __init__(self, tracked: dict[int, str]) -> None:
        super().__init__()
        self.tracked = tracked
        self.uses: dict[int, list[str]] = {}
        self.inside_bn = 0
        self.stack: list[str] = []  # names of the modules whose forward is running

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if not self.inside_bn:
            name = resolve_name(func) or getattr(func, "__name__", "")
            if name.removeprefix("torch.Tensor.").removeprefix("torch.") not in _METADATA:
                for t in tree_leaves((args, kwargs)):
                    if isinstance(t, torch.Tensor) and id(t) in self.tracked:
                        where = f" in {self.stack[-1]}" if self.stack else ""
                        self.uses.setdefault(id(t), []).append((name.rpartition(".")[2] or "?") + where)
        return func(*args, **kwargs)


def _hook_links(model: nn.Module, shape: tuple[int, ...]) -> list[tuple[str, str | None, str | None]]:
    """Pairs from one forward pass: the BN input must be the very tensor object a conv/linear returned, used by
    nothing else (no other call, no in-place change, not a model output)."""
    made_by: dict[int, str] = {}     # tensor id -> innermost module that returned it
    keep: list = []                  # keeps tensors alive so ids stay unique during the pass
    bn_inputs: list[tuple[str, torch.Tensor]] = []
    calls: Counter = Counter()
    counter = _UseCounter(made_by)
    handles = []

    def pre(name, m):
        def hook(mod, args):
            calls[name] += 1
            counter.stack.append(name)
            if isinstance(mod, _BatchNorm):
                counter.inside_bn += 1
                if args and isinstance(args[0], torch.Tensor):
                    keep.append(args[0])
                    bn_inputs.append((name, args[0]))
        return hook

    def post(name, m):
        def hook(mod, args, out):
            counter.stack.pop()
            if isinstance(mod, _BatchNorm):
                counter.inside_bn -= 1
            for t in tree_leaves(out):
                if isinstance(t, torch.Tensor) and id(t) not in made_by:
                    keep.append(t)
                    made_by[id(t)] = name
        return hook

    for name, m in model.named_modules():
        if name:
            handles += [m.register_forward_pre_hook(pre(name, m)), m.register_forward_hook(post(name, m))]
    x = random_input(model, shape)
    try:
        with counter:
            out = _run(model, x)
    finally:
        for h in handles:
            h.remove()
    outputs = {id(t) for t in _leaves(out)}
    fed = Counter(id(t) for _, t in bn_inputs)
    modules = dict(model.named_modules())
    links = []
    for bn_name, t in bn_inputs:
        prod_name = made_by.get(id(t))
        if calls[bn_name] > 1:
            reason = f"called {calls[bn_name]} times in forward; one module cannot be folded into several layers"
        elif prod_name is None:
            reason = ("its input is the model's input or comes from a function (not a module), not from a "
                      "conv/linear; " + PRE_ACTIVATION)
        elif not isinstance(modules[prod_name], PRODUCERS):
            reason = None
        elif calls[prod_name] > 1:
            reason = f"producer {prod_name} is called {calls[prod_name]} times in forward (shared module)"
        elif id(t) in counter.uses or fed[id(t)] > 1 or id(t) in outputs:
            others = counter.uses.get(id(t), []) + ["another BatchNorm"] * (fed[id(t)] - 1) + [
                "the model's output"] * (id(t) in outputs)
            reason = (f"the output of {prod_name} also feeds {', '.join(dict.fromkeys(others))}, which must not "
                      "see normalised values")
        else:
            reason = None
        links.append((bn_name, prod_name, reason))
    return links


def _output_shapes(model: nn.Module, shape: tuple[int, ...], names: set[str]) -> dict[str, torch.Size]:
    """Output shape of each named module on the example input (its first call)."""
    shapes: dict[str, torch.Size] = {}

    def record(name):
        def hook(mod, args, out):
            shapes.setdefault(name, out.shape)  # returns None: a hook's return value would replace the output
        return hook

    handles = [m.register_forward_hook(record(name)) for name, m in model.named_modules() if name in names]
    try:
        _run(model, random_input(model, shape))
    finally:
        for h in handles:
            h.remove()
    return shapes


# ------------------------------------------------------------------------------------------------- running

@contextlib.contextmanager
def _eval_mode(model: nn.Module):
    """model.eval() for the duration, then every module's own train/eval flag back."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, flag in flags:
            m.training = flag


def _run(model: nn.Module, x: torch.Tensor):
    with _eval_mode(model), torch.no_grad():
        try:
            return model(x)
        except Exception as e:
            raise FoldError(f"the model does not run on an input of shape {tuple(x.shape)}: "
                            f"{type(e).__name__}: {_one_line(e)}") from None


def _leaves(out) -> list[torch.Tensor]:
    return [t for t in tree_leaves(out) if isinstance(t, torch.Tensor)]


def _one_line(e: BaseException, limit: int = 200) -> str:
    text = str(e).strip().splitlines()
    line = text[0] if text else type(e).__name__
    return line if len(line) <= limit else line[:limit - 3] + "..."


# ---- the cost of folding ----------------------------------------------------------------------------------------

#: the totals compared before and after folding
COST_KEYS = Totals.KEYS


@dataclass
class FoldCost:
    """The traced cost of a model before and after folding, under one convention; ``predicted`` (forward time on a
    device) when one was given; only ``error`` when either model could not be traced."""

    convention: str = ""
    before: dict = field(default_factory=dict)
    after: dict = field(default_factory=dict)
    uncovered: dict | None = None
    predicted: dict | None = None
    error: str | None = None

    @property
    def saved(self) -> dict:
        return {k: self.before[k] - self.after[k] for k in COST_KEYS}

    def as_dict(self) -> dict:
        """Plain data, as ``symcost fold --json`` prints it under ``cost``."""
        if self.error:
            return {"error": self.error}
        out = {"convention": self.convention,
               "units": {"params": "parameters", "buffers": "elements", "macs": "multiply-accumulates",
                         "flops": f"operations under '{self.convention}'", "reads": "elements", "writes": "elements"},
               "before": self.before, "after": self.after, "saved": self.saved}
        if self.uncovered is not None:
            out["uncovered"] = self.uncovered
        if self.predicted is not None:
            out["predicted"] = self.predicted
        return out


def fold_costs(original: nn.Module, folded: nn.Module, shape: tuple, convention: str = "flops", device=None,
               dtype: str = "fp32") -> FoldCost:
    """The traced cost of ``original`` and ``folded`` on ``shape``: before, after and saved (before - after).

    With a ``device`` (``symcost.timing.Device``) also the predicted forward time of each (host and device time
    overlapped on an asynchronous device; a folded conv's bias is a separate kernel where the device does not fuse
    it) and the fraction of the forward time folding saves (``predicted["saving"]``)."""
    from .parse import convention_arg
    from .timing import forward_time, predict
    from .tracing import TraceError, trace

    conv = convention_arg(convention)
    try:
        before = trace(original, shape)
        after = trace(folded, shape)
    except TraceError as e:
        return FoldCost(error=f"could not trace the model: {e}")

    def totals(mc) -> dict:
        total = mc.total(conv)
        return {k: int(total[k]) for k in COST_KEYS}

    cost = FoldCost(conv.name, totals(before), totals(after))
    if before.uncovered or after.uncovered:
        cost.uncovered = {"before": before.uncovered, "after": after.uncovered}
    if device is not None:
        eb, ea = predict(before, device, dtype, conv), predict(after, device, dtype, conv)
        tb, ta = forward_time(eb).seconds, forward_time(ea).seconds
        cost.predicted = {"device": device.name, "dtype": dtype, "before_s": tb, "after_s": ta,
                          "saving": (tb - ta) / tb if tb else 0.0,
                          "kernels_before": sum(len(e.kernels) for e in eb),
                          "kernels_after": sum(len(e.kernels) for e in ea)}
    return cost


@dataclass
class FoldReport:
    """``symcost fold`` as data: the fold, its numerical check on one random input, the cost before and after."""

    target: str
    input_shape: list
    result: FoldResult
    max_abs_diff: float
    max_abs_output: float
    cost: FoldCost

    def as_dict(self) -> dict:
        saving = self.cost.predicted["saving"] if self.cost.predicted else None
        return {"target": self.target, "input_shape": self.input_shape, **self.result.as_dict(),
                "max_abs_diff": self.max_abs_diff, "max_abs_output": self.max_abs_output,
                "cost": self.cost.as_dict(), "predicted_saving": saving}


def fold_target(target: str, shape: tuple[int, ...], seed: int = 0, convention: str = "flops", device=None,
                dtype: str = "fp32", on_step=None) -> FoldReport:
    """Load ``target`` (a torchvision model's BatchNorm statistics randomised: weights=None leaves them at mean 0,
    var 1, which would make the check vacuous), fold it, compare on one ``randn`` input and trace both.
    ``seed`` reproduces weights, statistics and input; ``on_step(text)`` is told when the tracing starts."""
    from .targets import Target, load_target

    torch.manual_seed(seed)  # the weights of a torchvision or file target
    model = load_target(target)
    if Target.of(target).is_torchvision:
        randomize_batchnorm(model, seed=seed)
    model.eval()  # folding is an inference transform; a BN in training mode would be skipped
    result = fold_batchnorm(model, shape)
    diff, scale = result.compare(shape, seed=seed)
    if on_step:
        on_step("tracing the model before and after folding")
    cost = fold_costs(model, result.model, shape, convention, device, dtype)
    return FoldReport(target, list(shape), result, diff, scale, cost)
