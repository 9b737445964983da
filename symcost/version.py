"""symcost's version (one place: the package and the derivation cache read it)."""

__version__ = "0.1.0"
