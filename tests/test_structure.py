"""Structure: the layer registry is unchanged by refactors (a snapshot), and the package has no import cycles.

The registry snapshot (``fixtures/registry.json``) was written from the code *before* the layer classes were
rewritten from ``type(...)`` loops into plain ``class`` statements; it proves the rewrite changed nothing a caller can
see.  Regenerate it only for a deliberate change: ``python tests/test_structure.py --write``.
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

FIXTURE = Path(__file__).parent / "fixtures" / "registry.json"

#: class attributes, besides the declared arguments, that steer a layer's cost
_STEERING = ("dims", "ranks", "transposed", "per_element", "has_dilation", "unpadded_must_cover_kernel")


def _plain(v):
    if isinstance(v, (tuple, list)):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in sorted(v.items())}
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    assumed = getattr(v, "_assumptions_orig", None)  # a symbol's declared assumptions (positive, integer, ...)
    if assumed:
        return f"{v} ({','.join(sorted(k for k, x in assumed.items() if x))})"
    return f"<{type(v).__name__}> {v}"


def _arg(a) -> dict:
    from symcost.layers.base import REQUIRED

    return {"name": a.name, "kind": a.kind, "default": "REQUIRED" if a.default is REQUIRED else _plain(a.default),
            "symbol": _plain(a.symbol), "help": a.help, "choices": list(a.choices)}


def registry_snapshot() -> dict:
    from symcost.registry import all_layers

    out = {}
    for name, cls in all_layers().items():
        low, high = cls.input_count()
        out[name] = {
            "class": cls.__name__,
            "module": cls.__module__,
            "bases": [c.__name__ for c in cls.__mro__],
            "torch_name": cls.torch_name,
            "family": cls.family,
            "summary": cls.summary,
            "doc_sha256": hashlib.sha256((cls.__doc__ or "").encode()).hexdigest(),
            "args": [_arg(a) for a in cls.args],
            "inputs": [low, "inf" if high == float("inf") else high],
            "default_inputs": _plain(cls.default_inputs),
            **{k: _plain(getattr(cls, k)) for k in _STEERING if hasattr(cls, k)},
        }
    return out


def test_registry_matches_snapshot():
    expected = json.loads(FIXTURE.read_text())
    actual = json.loads(json.dumps(registry_snapshot()))
    assert sorted(actual) == sorted(expected), "layers added or removed"
    for name in expected:
        assert actual[name] == expected[name], f"layer {name!r} changed"


def test_snapshot_covers_the_rewritten_families():
    # the snapshot must hold the layers the rewrite touched, or the test above proves nothing about them
    expected = json.loads(FIXTURE.read_text())
    for name in ("conv2d", "conv_transpose3d", "batchnorm1d", "maxpool3d", "adaptive_avgpool1d", "gelu", "relu"):
        assert name in expected


if __name__ == "__main__" and "--write" in sys.argv:
    rows = [f"{json.dumps(k)}: {json.dumps(v, sort_keys=True)}" for k, v in registry_snapshot().items()]
    FIXTURE.write_text("{\n" + ",\n".join(rows) + "\n}\n")  # one layer a line: a change shows as that line
    print(f"wrote {FIXTURE}")


# ---- weight tables name real layers and families ------------------------------------------------------------

def test_a_convention_naming_an_unknown_layer_is_refused():
    import pytest

    from symcost.convention_base import Convention, _weights
    from symcost.registry import UnknownLayer

    with pytest.raises(UnknownLayer, match="'conv2dd' is neither a catalog layer nor a layer family.*conv2d"):
        Convention("typo", "a deliberately wrong table", "this test", _weights(0, mac=1), {"conv2dd": {"mac": 2}})
    with pytest.raises(UnknownLayer, match="'activations' is neither"):  # a family misspelt, in functional calls
        Convention("typo", "s", "this test", _weights(0, mac=1), functional_weights={"activations": {"writes": 1}})
    # the right names load
    ok = Convention("fine", "s", "this test", _weights(0, mac=1), {"conv2d": {"mac": 2}, "activation": {"fn": 1}})
    assert ok.family_weights["conv2d"]["mac"] == 2


def test_a_peer_quirk_naming_an_unknown_layer_is_refused():
    import pytest

    from symcost.peers import Quirk
    from symcost.registry import UnknownLayer

    with pytest.raises(UnknownLayer, match="'max_pool2d' is neither.*maxpool2d"):  # torch's name, not the catalog's
        Quirk("pooling counts 0", "a deliberately wrong table", layers=("max_pool2d",))
    assert Quirk("pooling counts 0", "right names", layers=("maxpool2d", "pool")).layers == ("maxpool2d", "pool")


def test_every_shipped_table_names_known_layers():
    # loading them validates them; this walks them again so a table that bypassed the check would show here
    from symcost.conventions import CONVENTIONS
    from symcost.peers import PEERS
    from symcost.registry import all_layers, families

    known = set(all_layers()) | families()
    for c in CONVENTIONS.values():
        assert set(c.family_weights) <= known, c.name
        assert set(c.functional_weights) <= known, c.name
    for p in PEERS.values():
        for q in p.quirks:
            assert set(q.layers) <= known, q.text
    assert {"fvcore", "thop", "ptflops", "torchprofile", "fritz"} <= set(CONVENTIONS)
