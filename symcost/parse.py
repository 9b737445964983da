"""Parsing of user strings: shapes and layer settings.  Nothing here ever evaluates a string."""
from __future__ import annotations

from dataclasses import dataclass

from .errors import UsageError, did_you_mean
from .symbol_names import is_symbol_name

__all__ = ["InputSpec", "UsageError", "convention_arg", "did_you_mean", "input_symbols", "parse_dim",
           "parse_settings", "parse_shape", "parse_shapes", "rewrite_layer_options", "shape_key", "size_arg",
           "size_value"]


def parse_dim(text: str, allow_symbols: bool):
    text = text.strip()
    try:
        value = int(text)
    except ValueError:
        if not allow_symbols:
            raise UsageError(f"size {text!r} is not an integer (symbols are for `symcost formula`)") from None
        from .symbols import user_symbol

        try:
            return user_symbol(text)
        except ValueError as e:
            raise UsageError(str(e)) from None
    if value < 1:
        raise UsageError(f"sizes must be positive integers, got {value}")
    return value


def size_symbol(name: str):
    """A validated symbol name (``InputSpec``'s, ``size_arg``'s) as the sympy size symbol."""
    from .symbols import user_symbol

    return user_symbol(name)


def size_arg(value, what: str) -> int | str:
    """``--past T`` / ``--generate 16``: a positive integer or a symbol name, checked without sympy (an int, a
    sympy symbol and a digit string are taken too: the Python API's forms)."""
    import re

    if isinstance(value, bool):
        raise UsageError(f"{what} must be a positive integer or a symbol name, got {value!r}")
    text = str(value).strip()
    if re.fullmatch(r"[0-9]+", text):
        if int(text) < 1:
            raise UsageError(f"{what} must be a positive integer or a symbol name, got {value}")
        return int(text)
    if not is_symbol_name(text):
        raise UsageError(f"{what}: {text!r} is not a positive integer or a valid symbol name (letters, digits, '_', "
                         "starting with a letter)")
    return text


def size_value(value, what: str):
    """``size_arg``'s int, or its name as the sympy size symbol (a decode step's cached tokens, a generation's
    steps)."""
    d = size_arg(value, what)
    return d if isinstance(d, int) else size_symbol(d)


def _named_parts(text: str) -> list[tuple[str, str]]:
    """``"input_ids=1xL,decoder_input_ids=1xM"`` -> [("input_ids", "1xL"), ("decoder_input_ids", "1xM")]."""
    import re

    out: list[tuple[str, str]] = []
    for part in text.split(","):
        name, sep, shape = part.partition("=")
        name = name.strip()
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise UsageError(f"named input {part.strip()!r}: expected NAME=SHAPE (e.g. input_ids=1xL), "
                             "several separated by commas")
        if name in (n for n, _ in out):
            raise UsageError(f"input {name!r} given twice")
        out.append((name, shape))
    return out


def parse_shape(text: str, allow_symbols: bool = True) -> tuple:
    """``"1x3xHxW"`` -> (1, 3, H, W); lowercase x separates, the same letter twice is the same symbol."""
    if not text.strip():
        raise UsageError("empty input shape")
    return tuple(parse_dim(t, allow_symbols) for t in text.replace("×", "x").split("x"))


def input_symbols(text: str) -> list[str]:
    """The symbol names of a model's ``--input`` (one shape or named shapes), sorted, without sympy."""
    return InputSpec.of(text).symbols


def parse_shape_names(text: str) -> tuple:
    """``"1x3xHxW"`` -> (1, 3, "H", "W"), validated like ``parse_shape`` but without sympy (fast paths)."""
    import re

    if not text.strip():
        raise UsageError("empty input shape")
    if "=" in text:  # named inputs: all their dims, one input after another
        return tuple(d for _, shape in _named_parts(text) for d in parse_shape_names(shape))
    out = []
    for t in shape_key(text).split("x"):
        if re.fullmatch(r"[0-9]+", t):
            if int(t) < 1:
                raise UsageError(f"sizes must be positive integers, got {int(t)}")
            out.append(int(t))
        elif is_symbol_name(t):
            out.append(t)
        else:
            raise UsageError(f"{t!r} is not a valid symbol name (letters, digits, '_', starting with a letter)")
    return tuple(out)


@dataclass(frozen=True)
class InputSpec:
    """A model's ``--input`` parsed once, at the edge (the command line, the Python API), without sympy: ``text`` as
    written (derivations and cache keys take it), ``dims`` one shape or named shapes of sizes (ints) and symbol
    names (str).  The report layer below takes it and parses nothing."""

    text: str
    dims: tuple | dict

    @classmethod
    def of(cls, spec: "str | tuple | list | InputSpec") -> "InputSpec":
        """``"1x3xHxW"``, ``"input_ids=1xL,…"``, or a tuple of sizes and symbol names (the Python API's form, checked
        as the string would be); an ``InputSpec`` is returned as it is."""
        if isinstance(spec, InputSpec):
            return spec
        if isinstance(spec, (tuple, list)):
            spec = [str(d) if getattr(d, "is_Symbol", False) else d for d in spec]   # a sympy size symbol by name
            if not all(isinstance(d, str) or (isinstance(d, int) and not isinstance(d, bool)) for d in spec):
                raise UsageError(f"an input shape is sizes (ints) and symbol names (str), got {spec!r}")
            spec = "x".join(map(str, spec))
        if not isinstance(spec, str):
            raise UsageError(f"an input shape is a string such as '1x3xHxW' or a tuple, not {spec!r}")
        if "=" in spec:
            return cls(spec, {name: parse_shape_names(shape) for name, shape in _named_parts(spec)})
        return cls(spec, parse_shape_names(spec))

    @property
    def symbols(self) -> list[str]:
        """The symbol names, sorted (as ``input_symbols``)."""
        shapes = self.dims.values() if isinstance(self.dims, dict) else [self.dims]
        return sorted({d for s in shapes for d in s if isinstance(d, str)})

    @property
    def shape(self) -> tuple | dict:
        """The dims as the tracer takes them: ints and sympy size symbols (one shape, or named shapes)."""
        def symbolic(dims):
            return tuple(d if isinstance(d, int) else size_symbol(d) for d in dims)

        return {n: symbolic(s) for n, s in self.dims.items()} if isinstance(self.dims, dict) else symbolic(self.dims)

    @property
    def key(self) -> str:
        """The text normalised (``"1X3xH x W"`` -> ``"1x3xHxW"``), for cache keys."""
        return shape_key(self.text)

    def at(self, values: dict) -> tuple | dict:
        """The input with its symbols replaced by ``values`` (name -> int): a concrete shape, or named shapes."""
        def at(shape):
            return tuple(int(values[d]) if isinstance(d, str) else d for d in shape)

        return {n: at(s) for n, s in self.dims.items()} if isinstance(self.dims, dict) else at(self.dims)

    def __str__(self) -> str:
        return self.text


def parse_shapes(text: str, allow_symbols: bool = True) -> tuple[tuple, ...]:
    """Several inputs separated by commas: ``"8x64x32,8x32x16"``."""
    return tuple(parse_shape(part, allow_symbols) for part in text.split(","))


def parse_settings(tokens: list[str], layer_cls, allow_symbols: bool, options: tuple[str, ...] = ()) -> dict:
    """``["in_channels=3", "kernel_size=4,10", "bias=false"]`` -> typed values per the layer's ``args``.

    ``options``: the command's own option strings, suggested for a mistyped ``--option``."""
    from .errors import LayerError
    from .layers.base import unknown_argument

    args = {a.name: a for a in layer_cls.args}
    out: dict = {}
    given: dict[str, str] = {}
    for tok in tokens:
        if tok.startswith("-"):  # an option neither the command nor the layer knows (flags became NAME=VALUE)
            spellings = [f"--{a.name.replace('_', '-')}" for a in layer_cls.args]
            spellings += [f"--no-{a.name.replace('_', '-')}" for a in layer_cls.args if a.kind == "flag"]
            word = tok.split("=", 1)[0]
            raise UsageError(f"{layer_cls.name}: unknown option {word!r}{did_you_mean(word, [*options, *spellings])}")
        if "=" not in tok:
            raise UsageError(f"{layer_cls.name}: expected name=value, got {tok!r} (arguments: {', '.join(args)})")
        key, value = tok.split("=", 1)
        key = key.strip().replace("-", "_")
        if key not in args:
            raise UsageError(unknown_argument(layer_cls.name, key, list(args)))
        if key in given:  # a contradiction (in_channels=3 in_channels=4, --bias --no-bias) is not settled silently
            raise UsageError(f"{layer_cls.name}: {key} is given twice ({given[key]}, {tok}); give it once")
        given[key] = tok
        try:
            out[key] = args[key].parse(value, allow_symbols)
        except LayerError as e:
            raise UsageError(f"{layer_cls.name}: {e}") from None
    return out


def rewrite_layer_options(tokens: list[str], layer_cls) -> list[str]:
    """Turn ``--mode eval``, ``--bias``, ``--no-bias`` into ``mode=eval``, ``bias=true``, ``bias=false``."""
    kinds = {a.name: a.kind for a in layer_cls.args}
    out: list[str] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        name = tok[2:].replace("-", "_") if tok.startswith("--") else None
        if name and "=" in name:
            key, value = name.split("=", 1)
            if key in kinds:
                out.append(f"{key}={value}")
                i += 1
                continue
        if name in kinds:
            if kinds[name] == "flag":
                out.append(f"{name}=true")
                i += 1
            elif i + 1 < len(tokens):
                out.append(f"{name}={tokens[i + 1]}")
                i += 2
            else:
                raise UsageError(f"--{name} needs a value")
            continue
        if name and name.startswith("no_") and kinds.get(name[3:]) == "flag":
            out.append(f"{name[3:]}=false")
            i += 1
            continue
        out.append(tok)
        i += 1
    return out


def convention_arg(name: str):
    """The convention named on the command line, or a one-line ``UnknownConvention`` (a ``UsageError``) naming the
    closest and listing the known ones."""
    from .conventions import get_convention

    return get_convention(name)


def shape_key(text: str) -> str:
    """A shape spec normalised without sympy ("1X3xH x W" -> "1x3xHxW"), for cache keys."""
    if "=" in text:
        return ",".join(f"{name.strip()}={shape_key(shape)}" for name, _, shape in
                        (part.partition("=") for part in text.split(",")))
    return "x".join(part.strip() for part in text.replace("×", "x").split("x"))


def json_once(text: str):
    """``json.loads``, refusing an object that gives one key twice (JSON would keep the last silently):
    ``ValueError`` naming the key."""
    import json

    def pairs(items):
        out = {}
        for k, v in items:
            if k in out:
                raise ValueError(f"key {k!r} is given twice")
            out[k] = v
        return out

    return json.loads(text, object_pairs_hook=pairs)
