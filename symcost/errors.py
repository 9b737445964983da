"""The two kinds of user error, importable without sympy or torch (the CLI catches both: one line, exit 2)."""


class UsageError(ValueError):
    """Bad command-line input."""


class LayerError(ValueError):
    """Bad layer arguments or input: the message names the layer and the problem."""
