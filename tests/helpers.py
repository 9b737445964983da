"""Shared test helpers: exact numbers from a layer, and the torch side of a check."""
from __future__ import annotations

from symcost import CONVENTIONS, layer
from symcost.cost import to_int
from symcost.empirical import measure


def numbers(name: str, shapes, convention: str = "torch", **kwargs) -> dict:
    lay = layer(name, symbolic=False, **kwargs)
    cost = lay.cost(*shapes)
    return {
        "shape": tuple(to_int(d) for d in cost.output_shape),
        "params": to_int(cost.params),
        "buffers": to_int(cost.buffers),
        "flops": to_int(CONVENTIONS[convention].count(cost)),
        "macs": to_int(cost.macs),
    }


def assert_matches_torch(name: str, shapes, torch_kwargs: dict | None = None, train: bool = False, **kwargs) -> None:
    """symcost's shape, params, buffers and torch-convention FLOPs equal what torch does, exactly."""
    ours = numbers(name, shapes, "torch", **kwargs)
    lay = layer(name, symbolic=False, **kwargs)
    real = measure(lay.torch_name, torch_kwargs if torch_kwargs is not None else kwargs, shapes, train=train)
    assert ours["shape"] == real.output_shape, (name, kwargs, shapes)
    assert ours["params"] == real.params, (name, kwargs)
    assert ours["buffers"] == real.buffers, (name, kwargs)
    assert ours["flops"] == real.flops, (name, kwargs, shapes, real.flops_by_op)


def at_point(mc, values: dict, convention: str, concrete):
    """``mc``'s totals at ``values``, as `symcost model --at` gives them: from the formula inside its proven
    domain, else from ``concrete()`` (the model derived at that size on its own) where the point breaks a size
    guard of the traced path (a branch the model takes only there)."""
    from symcost.errors import OutsideProvenDomain

    try:
        return mc.evaluate(values, convention)
    except OutsideProvenDomain:
        return concrete().total(convention)


def cached_call_outputs(args: list[str], env: dict | None = None) -> tuple[str, str]:
    """``symcost ARGS`` in two fresh processes: the first fills the derivation cache, the second must answer from
    it without importing torch or transformers (checked in that process, after the call).  Both stdouts."""
    import os
    import subprocess
    import sys

    env = dict(os.environ) if env is None else env
    first = subprocess.run([sys.executable, "-m", "symcost.cli", *args], capture_output=True, text=True, env=env)
    assert first.returncode == 0, first.stderr
    code = ("import sys; from symcost.cli import main; main(sys.argv[1:]); "
            "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'imported'")
    again = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env)
    assert again.returncode == 0, again.stderr
    return first.stdout, again.stdout
