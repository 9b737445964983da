"""symcost's error types, importable without sympy or torch.

Every error a user can cause is a ``SymcostError``; the CLI catches that one type (one line, exit 2).  Callers that
fall back (per-size tracing) ask ``isinstance(e, NoSingleFormula)``, never what a message says.
"""


class SymcostError(ValueError):
    """Base of every error symcost raises on purpose: the message names what was given and what to do."""


class UsageError(SymcostError):
    """Bad command-line or API input."""


class UnknownConvention(UsageError):
    """A convention name that is not among the known ones (``unknown_convention`` writes the message)."""


class LayerError(SymcostError):
    """Bad layer arguments or input: the message names the layer and the problem."""


class TraceError(SymcostError):
    """A model could not be traced into formulas (its own error, or an op symcost cannot follow)."""


class NoSingleFormula(TraceError):
    """No one formula in the input's symbols holds for this model (its graph or an op's arguments change with the
    input size, or it runs at one size only); tracing each size on its own (``--at``) still gives exact numbers."""


class NeedsTensorValues(TraceError):
    """The model calls an op whose result depends on tensor values (``nonzero``, ``.item()``), which a trace on
    meta tensors cannot run at any size; the message names the op and where the model calls it."""


class OutsideProvenDomain(NoSingleFormula):
    """A size outside the guards the model's forward takes (``x[:, :512]`` needs L <= 512 for the formula of the
    path traced): the formula does not hold there; the model traced at that size on its own does."""


def did_you_mean(word: str, candidates) -> str:
    """``" (did you mean --json?)"`` for the closest candidate, or ``""`` when none is close."""
    from difflib import get_close_matches

    close = get_close_matches(word, list(candidates), 1, 0.75)
    return f" (did you mean {close[0]}?)" if close else ""


def unknown_convention(name, known) -> UnknownConvention:
    """The one refusal of a convention name: the closest of ``known`` (names) and all of them.  Here, not in
    ``conventions``, so that a cached summary (no sympy) refuses in the same words."""
    hint = did_you_mean(str(name).strip().lower(), known)
    return UnknownConvention(f"unknown convention {name!r}{hint}; choose one of: {', '.join(known)}")
