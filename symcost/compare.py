"""What fvcore, thop, ptflops and torchprofile report for a model, and why: one trace, every tool's number derived.

The model is traced once (eval mode, a concrete input); every tool's number is then derived from that trace under
the tool's convention (``symcost/peers.py``), next to symcost's own ``macs``, ``flops`` and ``torch``, with the
per-family counts that show where the numbers part and each tool's quirks that apply to the model.  With
``run_peers`` the installed tools also run on a real random input.  ``symcost compare`` renders the result.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

#: symcost's own conventions shown beside the peers
OWN = ("macs", "flops", "torch")
#: the order families are listed in (any other family follows, in trace order)
FAMILY_ORDER = ("conv", "linear", "matmul", "attention", "norm", "activation", "pool", "reduction", "elementwise",
                "embedding", "memory", "reshape")
NOT_RUN = "not run (add --run-peers)"


@dataclass
class PeerCount:
    """One tool: the number symcost derives for it and, when it ran, the tool's own."""

    number: int                 # derived by symcost under the tool's convention
    unit: str                   # what the number counts (MACs, FLOPs)
    reports: str                # what the tool's number is, in words
    convention: str             # the preset's summary
    source: str                 # where the preset's rules were read
    installed: bool
    version: str | None
    gap_to_macs: dict           # family -> the tool's count minus symcost's MACs, where they differ
    quirks: list                # the tool's quirks that apply to this model (Quirk.as_dict())
    tool: int | None = None     # the tool's own number, when it ran
    match: bool | None = None   # tool == number, when it ran
    status: str = NOT_RUN       # "ran", "not installed (...)", "failed: ..." or NOT_RUN


@dataclass
class Comparison:
    target: str
    input_shape: list
    mode: str
    conventions: list                       # symcost's own, then each peer's
    totals: dict                            # convention -> total FLOPs under it (MACs for "macs")
    families: dict                          # family -> {"calls", "functional_calls", convention -> count}
    peers: dict[str, PeerCount] = field(default_factory=dict)
    notes: list = field(default_factory=list)

    @property
    def ran(self) -> bool:
        """Whether any tool was asked to run (``run_peers``)."""
        return any(p.status != NOT_RUN for p in self.peers.values())

    def as_dict(self) -> dict:
        """Plain data, in the order ``symcost compare --json`` prints it."""
        return asdict(self)


def compare_target(target: str, shape: tuple, run_peers: bool = False, seed: int = 0) -> Comparison:
    """Trace ``target`` once on the concrete ``shape`` (eval mode) and derive every tool's count from it."""
    import torch

    from .cost import to_int
    from .peers import PEERS
    from .targets import load_target
    from .tracing import trace

    model = load_target(target)
    model.eval()
    mc = trace(model, shape, target=target)  # TraceError / LayerError are SymcostErrors: the CLI says them

    names = [*OWN, *PEERS]
    totals = {n: to_int(mc.total(n)["flops"], f"{n} total") for n in names}
    by = {n: {f: to_int(v, f"{n} {f}") for f, v in mc.by_family(n).items()} for n in names}
    seen = [r.cost.family for r in mc.rows if r.is_call]
    families = [f for f in FAMILY_ORDER if f in seen] + [f for f in dict.fromkeys(seen) if f not in FAMILY_ORDER]
    table = {}
    for f in families:
        rows = [r for r in mc.rows if r.cost.family == f]
        table[f] = {"calls": len(rows), "functional_calls": sum(r.functional for r in rows),
                    **{n: by[n].get(f, 0) for n in names}}

    x = None
    if run_peers:
        torch.manual_seed(seed)
        x = torch.randn(*shape)
    peers = {}
    for name, peer in PEERS.items():
        gap = {f: table[f][name] - table[f]["macs"] for f in families if table[f][name] != table[f]["macs"]}
        entry = PeerCount(number=totals[name], unit=peer.unit, reports=peer.reports,
                          convention=peer.convention.summary, source=peer.convention.source,
                          installed=peer.installed, version=peer.version, gap_to_macs=gap,
                          quirks=[q.as_dict() for q in peer.applicable_quirks(mc)])
        if run_peers:
            _run_peer(entry, peer, model, x)
        peers[name] = entry
    notes = list(mc.notes)
    if mc.uncovered:
        notes.append("aten ops symcost could not cost (every convention misses them): "
                     + ", ".join(f"{op} x{n}" for op, n in sorted(mc.uncovered.items())))
    return Comparison(target, list(shape), "eval", names, totals, table, peers, notes)


def _run_peer(entry: PeerCount, peer, model, x) -> None:
    if not entry.installed:
        entry.status = f"not installed (pip install {peer.package})"
        return
    try:
        entry.tool = peer.run(model, x)
    except Exception as e:  # noqa: BLE001  the tool's own failure, in one line
        msg = (str(e).strip().splitlines() or [type(e).__name__])[0]
        entry.status = f"failed: {type(e).__name__}: {msg}"
    else:
        entry.match = entry.tool == entry.number
        entry.status = "ran"
