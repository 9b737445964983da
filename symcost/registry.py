"""Layer name -> layer class.  Each class registers itself once."""
from __future__ import annotations

import difflib

REGISTRY: dict[str, type] = {}


def register(cls):
    """Class decorator: ``@register`` on a ``Layer`` subclass with a ``name``."""
    name = cls.name
    if name in REGISTRY:
        raise ValueError(f"layer name {name!r} registered twice: {REGISTRY[name].__qualname__} and {cls.__qualname__}")
    REGISTRY[name] = cls
    return cls


from .errors import LayerError


class UnknownLayer(LayerError):
    """No catalog layer of that name (the message suggests the closest)."""


def get_layer_class(name: str):
    from . import layers  # noqa: F401  (registers every family)

    key = name.lower()
    if key in REGISTRY:
        return REGISTRY[key]
    close = difflib.get_close_matches(key, REGISTRY, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else "; run `symcost list` to see them all"
    raise UnknownLayer(f"unknown layer {name!r}{hint}")


def all_layers() -> dict[str, type]:
    from . import layers  # noqa: F401

    return dict(sorted(REGISTRY.items()))


def families() -> set[str]:
    """Every layer family the catalog knows ("conv", "norm", ...)."""
    return {cls.family for cls in all_layers().values()}


def check_names(names, where: str) -> None:
    """Refuse a name that is neither a catalog layer nor a family: a misspelt key in a weight table would otherwise
    weigh nothing, silently.  ``where`` says which table, for the message."""
    layers = all_layers()
    known = set(layers) | families()
    for name in names:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise UnknownLayer(f"{where}: {name!r} is neither a catalog layer nor a layer family{hint}")
