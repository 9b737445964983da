"""symcost's error types, importable without sympy or torch.

Every error a user can cause is a ``SymcostError``; the CLI catches that one type (one line, exit 2).  Callers that
fall back (per-size tracing) ask ``isinstance(e, NoSingleFormula)``, never what a message says.
"""


class SymcostError(ValueError):
    """Base of every error symcost raises on purpose: the message names what was given and what to do."""


class UsageError(SymcostError):
    """Bad command-line or API input."""


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
