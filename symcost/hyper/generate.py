"""A generation (prefill, then decode steps) in a model's config fields: ``symcost model --config … --generate N``.

Two derivations in the config symbols (``derive_config``): the prefill forward on the B x L prompt, and one decode
step of one new token with ``T_cached`` cached tokens.  The decode part is the step summed over
T = L … L + N - 1 in closed form, as ``symcost.decode.generation`` does at fixed sizes; both derivations are
verified at configurations they were not fitted to, and the sum is exact (a polynomial summed by sympy).
"""
from __future__ import annotations

import sympy

from ..errors import UsageError


def config_generation(target: str, input_spec, config, generate, convention: str, *, use_cache: bool = False,
                      progress: bool = True) -> dict:
    """``{"prefill", "decode", "total", "step"}`` (metric -> expression in the config symbols, the prompt length and
    the steps) of ids of ``input_spec`` (an ``InputSpec``, B x L), ``step_symbol``, ``derivations`` (the two
    ``ConfigCost``) and ``check`` (values -> raises ``UsageError`` where a condition of either derivation fails at the
    prefill, the first or the last step)."""
    from ..decode import tidy
    from ..parse import size_value
    from ..progress import status
    from .derivation import derive_config

    steps = size_value(generate, "--generate")
    prompt = input_spec.shape[1]
    with status(f"deriving {target}'s prefill in {config}", progress):
        prefill = derive_config(target, input_spec, config, use_cache=use_cache)
    with status(f"deriving {target}'s decode step in {config}", progress):
        step = derive_config(target, (input_spec.dims[0], 1), config, use_cache=use_cache, past="T_cached")
    t = step.past
    if any(t in e.free_symbols and sympy.expand(e).coeff(t) < 0 for e in step.domain):
        raise UsageError("--generate with --config: the model's sliding-window cache layers bound the cached tokens, "
                         "so the steps have one formula only up to the window; give --past T instead")
    first = sympy.sympify(prompt)
    last = first + sympy.sympify(steps) - 1
    pre = {m: tidy(e) for m, e in prefill.total(convention).items()}
    per_step = {m: tidy(e) for m, e in step.total(convention).items()}
    decode = {m: sympy.Integer(0) if m in ("params", "buffers") else
              sympy.factor_terms(sympy.expand(sympy.summation(sympy.expand(e), (t, first, last))))
              for m, e in per_step.items()}
    total = {m: sympy.expand(pre[m] + decode[m]) for m in pre}

    def check(values: dict) -> None:
        given = {str(k): v for k, v in values.items()}
        try:
            prefill.check_domain({str(s): given[str(s)] for s in prefill.symbols})
            sizes = {s: sympy.Integer(given[str(s)]) for s in first.free_symbols | last.free_symbols}
            ends = {int(first.xreplace(sizes)), int(last.xreplace(sizes))}
            if min(ends) < 1:
                raise ValueError(f"a generation of {steps} step(s) after a prompt of {prompt} tokens needs both >= 1")
            for cached in sorted(ends):
                step.check_domain({**{str(s): given[str(s)] for s in step.symbols if s != t}, str(t): cached})
        except KeyError as e:
            raise UsageError(f"--at: give a value for {e.args[0]}") from None
        except ValueError as e:
            raise UsageError(str(e)) from None

    return {"prefill": pre, "decode": decode, "total": total, "step": per_step, "step_symbol": t,
            "derivations": (prefill, step), "check": check}
