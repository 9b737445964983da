"""Layer name -> layer class.  Each class registers itself once, when its module is imported.

The registry names no layer module: ``load_catalog`` imports every module of the ``symcost.layers`` package, found
by listing it, so a new layer family is one new file there (and the layers, which build on ``Cost``, never sit in an
import cycle with the conventions that check their names against this catalog).
"""
from __future__ import annotations

import difflib
import importlib
import pkgutil

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


def load_catalog() -> None:
    """Import every module of ``symcost.layers`` (once): each registers its layers."""
    global _loaded
    if _loaded:
        return
    from . import layers

    for module in pkgutil.iter_modules(layers.__path__):
        importlib.import_module(f"{layers.__name__}.{module.name}")
    _loaded = True


_loaded = False


#: the catalog's gradient rules (``symcost.layers.layer_backward``), registered when the catalog loads: so
#: ``Layer.backward`` reaches them without the base class importing the module built on it
_BACKWARD: list = []


def register_backward(fn):
    """Decorator: ``fn(layer, *input_shapes) -> {part: Cost}`` is what ``Layer.backward`` runs (once)."""
    if _BACKWARD and _BACKWARD[0] is not fn:
        raise ValueError(f"layer backward registered twice: {_BACKWARD[0].__qualname__} and {fn.__qualname__}")
    _BACKWARD[:] = [fn]
    return fn


def backward_of(layer, *input_shapes):
    load_catalog()
    return _BACKWARD[0](layer, *input_shapes)


def get_layer_class(name: str):
    load_catalog()
    key = name.lower()
    if key in REGISTRY:
        return REGISTRY[key]
    close = difflib.get_close_matches(key, REGISTRY, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else "; run `symcost list` to see them all"
    raise UnknownLayer(f"unknown layer {name!r}{hint}")


def all_layers() -> dict[str, type]:
    load_catalog()

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
