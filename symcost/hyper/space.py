"""A target's configuration space: which fields are symbols, which are fixed, what divides what, how to build.

``hf:TYPE`` fields are attributes of ``AutoConfig.for_model(TYPE)``; ``file.py:factory`` fields are integer
arguments of the factory.  Divisibility relations (``head_dim = hidden_size / num_attention_heads``) are known per
field name for Hugging Face configurations; sample configurations always satisfy them, and they are the formula's
conditions.
"""
from __future__ import annotations

import difflib
import hashlib
import inspect
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import sympy

from ..errors import UsageError
from ..symbols import user_symbol

#: (numerator field, denominator field, the derived quantity) for Hugging Face configurations
HF_RELATIONS = (
    ("hidden_size", "num_attention_heads", "head_dim"),
    ("n_embd", "n_head", "head_dim"),
    ("dim", "n_heads", "head_dim"),
    ("num_attention_heads", "num_key_value_heads", "query heads per key/value head"),
)


#: (smaller field, larger field): a mixture of experts routes each token to at most as many experts as it has
HF_BOUNDS = (
    ("num_experts_per_tok", "num_local_experts"),
    ("num_experts_per_tok", "num_experts"),
    ("num_experts_per_tok", "n_routed_experts"),
)


#: the smallest value a symbol is fitted and verified at: a size of 1 changes torch's graph (gpt2 with one head
#: skips a copy, so its reads differ by d*L), so the formulas hold from 2 up; fix a field to 1 to derive that case
MIN_VALUE = 2


@dataclass(frozen=True)
class Relation:
    """``num`` must be a multiple of ``factor * den`` (so ``num / den`` is an integer, even when factor is 2);
    without ``den``, a multiple of ``factor`` (an explicit head_dim that rotary embeddings split in halves)."""

    num: str
    den: str | None
    factor: int
    quantity: str
    names_quotient: bool = True     # ``quantity`` is what num / den is (head_dim), not only why it must divide

    def divisor(self, values: dict) -> int:
        return self.factor * (values[self.den] if self.den else 1)

    def holds(self, values: dict) -> bool:
        return values[self.num] % self.divisor(values) == 0

    def quotient(self, values: dict) -> int:
        """num / (factor * den): fitted and verified from MIN_VALUE up, like every symbol (at 1 a model can take
        another path: Llama's repeat_kv returns early when h = k, skipping a copy)."""
        return values[self.num] // self.divisor(values)

    def text(self, symbols: dict, fixed: dict) -> str:
        """``d divisible by 2*h (head_dim = d/h must be even)``, with fixed fields as their numbers."""
        if not self.den:
            num = str(symbols[self.num]) if self.num in symbols else str(fixed[self.num])
            return f"{num} divisible by {self.factor}, {num} >= {MIN_VALUE * self.factor} ({self.quantity})"
        num, den = (str(symbols[f]) if f in symbols else str(fixed[f]) for f in (self.num, self.den))
        if self.den in symbols:
            divisor = f"{self.factor}*{den}" if self.factor > 1 else den
            least = f"{MIN_VALUE * self.factor}*{den}"
        else:
            divisor, least = str(self.factor * fixed[self.den]), str(MIN_VALUE * self.factor * fixed[self.den])
        why = (f"{self.quantity} = {num}/{den}" if self.names_quotient else self.quantity) \
            + (" must be even" if self.factor > 1 else "")
        return f"{num} divisible by {divisor}, {num} >= {least} ({why})"


@dataclass(frozen=True)
class Bound:
    """``small <= large`` (top-k routing among the experts)."""

    small: str
    large: str

    def holds(self, values: dict) -> bool:
        return values[self.small] <= values[self.large]

    def text(self, symbols: dict, fixed: dict) -> str:
        small, large = (str(symbols[f]) if f in symbols else str(fixed[f]) for f in (self.small, self.large))
        return f"{small} <= {large} ({self.small} <= {self.large})"


@dataclass
class ConfigSpace:
    target: str
    symbols: dict[str, sympy.Symbol]     # field -> its symbol
    fixed: dict[str, int]                # fields given a number, and every field a relation mentions
    relations: list[Relation]
    build: Callable[[dict], object]      # every field's value -> nn.Module on meta
    source: str = ""                     # a hash of a user's file (cache keys)
    notes: list[str] = field(default_factory=list)
    bounds: list[Bound] = field(default_factory=list)
    refusal_hint: str = ""               # appended to a builder's refusal of a sampled configuration

    def admissible(self, values: dict) -> bool:
        """Every divisibility relation (with a quotient >= MIN_VALUE) and every bound holds at ``values``."""
        every = {**self.fixed, **values}
        return all(r.holds(every) and r.quotient(every) >= MIN_VALUE for r in self.relations) \
            and all(b.holds(every) for b in self.bounds)

    def order(self) -> list[str]:
        """Symbolic fields, divisors before the fields they divide (values are chosen in this order)."""
        out: list[str] = []
        pending = list(self.symbols)
        while pending:
            for f in pending:
                if all(r.den not in pending or r.den == f for r in self.relations if r.num == f) \
                        and all(b.small not in pending or b.small == f for b in self.bounds if b.large == f):
                    out.append(f)
                    pending.remove(f)
                    break
            else:
                raise UsageError("the divisibility relations between the --config fields form a cycle")
        return out

    def candidates(self, f: str, chosen: dict[str, list[int]], count: int, multipliers) -> list[int]:
        """``count`` values for field ``f`` compatible with every value already chosen for its divisors and with
        the fixed fields it must divide."""
        step, limit, least = 1, 0, MIN_VALUE
        for r in self.relations:
            if r.num == f:
                dens = (chosen.get(r.den) or [self.fixed[r.den]]) if r.den else [1]
                step = math.lcm(step, r.factor * math.lcm(*dens))
                least = max(least, MIN_VALUE * r.factor * max(dens))  # every quotient >= MIN_VALUE
            if r.den == f and r.num in self.fixed:
                if self.fixed[r.num] % r.factor:
                    raise UsageError(f"{r.num}={self.fixed[r.num]} is not divisible by {r.factor} "
                                     f"({r.quantity} must be even)")
                limit = math.gcd(limit, self.fixed[r.num] // r.factor)
        most = None
        for b in self.bounds:
            if b.large == f:  # at least every value of the smaller field: least grows by the bound
                least = max(least, *(chosen.get(b.small) or [self.fixed[b.small]]))
            if b.small == f and b.large in self.fixed:
                most = self.fixed[b.large] if most is None else min(most, self.fixed[b.large])
        out = []
        for m in multipliers:
            v = step * m
            if (limit and v * MIN_VALUE > limit) or (most is not None and v > most):
                break
            if v >= least and (not limit or limit % v == 0):
                out.append(v)
            if len(out) == count:
                return out
        return out


#: the symbol a field gets when named without one (``--config hidden_size,num_hidden_layers``)
READABLE = {"hidden_size": "d", "n_embd": "d", "d_model": "d", "dim": "d", "num_hidden_layers": "n", "n_layer": "n",
            "num_layers": "n", "n_layers": "n", "intermediate_size": "f", "d_ff": "f", "hidden_dim": "f",
            "num_attention_heads": "h", "n_head": "h", "num_heads": "h", "n_heads": "h", "num_key_value_heads": "k",
            "vocab_size": "V", "num_local_experts": "E", "num_experts_per_tok": "top_k"}


def parse_config(text: str | dict) -> dict[str, str | int]:
    """``"hidden_size=d,num_hidden_layers=2"`` (or a dict) -> {field: symbol name or fixed value}; a bare field
    gets a readable symbol (``READABLE``, else its own name).  Nothing is evaluated: names are validated, numbers
    parsed as integers."""
    items = text.items() if isinstance(text, dict) else \
        [(k, v if sep else READABLE.get(k.strip(), k.strip())) for k, sep, v in
         (p.partition("=") for p in text.split(",") if p.strip())]
    out: dict[str, str | int] = {}
    for key, value in items:
        key, value = key.strip(), str(value).strip()
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise UsageError(f"--config: {key!r} is not a field name")
        if key in out:
            raise UsageError(f"--config: {key} is given twice ({key}={out[key]}, {key}={value}); give it once")
        if re.fullmatch(r"-?[0-9]+", value):
            if int(value) < 1:
                raise UsageError(f"--config {key}={value}: values must be positive integers")
            out[key] = int(value)
        else:
            try:
                user_symbol(value)
            except ValueError as e:
                raise UsageError(f"--config {key}: {e}") from None
            out[key] = value
    if not out:
        raise UsageError("--config: expected FIELD=SYMBOL[,FIELD=SYMBOL…], e.g. hidden_size=d,num_hidden_layers=n")
    return out


def config_space(target, config: dict[str, str | int]) -> ConfigSpace:
    """``target``: ``hf:MODEL_TYPE``, ``path/to/file.py:factory``, or a factory itself (a callable taking the
    config fields as integer keyword arguments and returning an ``nn.Module``)."""
    if callable(target):
        return factory_space(target, config)
    from ..targets import Target

    spec = Target.of(target)
    kind, name = spec.source, spec.name
    if spec.is_hf:
        from ..target_names import check_config_fields, check_target

        check_target(target)                   # a typo answered before transformers (and torch) is imported
        check_config_fields(target, config)
        return _hf_space(name, config)
    if kind and (kind.endswith(".py") or "/" in kind):
        path = Path(kind)
        return factory_space(_load_callable(path, name), config, f"{path}:{name}",
                             f"{path.resolve()} {hashlib.sha256(path.read_bytes()).hexdigest()}")
    raise UsageError(f"--config works with hf:MODEL_TYPE and path/to/file.py:factory targets, not {target!r}")


def factory_name(factory) -> str:
    """How a factory passed as a Python object is named in messages and results (``module.qualname``)."""
    return f"{getattr(factory, '__module__', None) or '?'}.{getattr(factory, '__qualname__', type(factory).__name__)}"


def _split(config: dict) -> tuple[dict, dict, dict]:
    """(primary field -> symbol, fixed field -> value, tied field -> the primary field with the same symbol):
    ``num_attention_heads=h,num_key_value_heads=h`` ties two fields to one symbol (multi-head attention)."""
    symbols: dict[str, sympy.Symbol] = {}
    ties: dict[str, str] = {}
    primary: dict[str, str] = {}
    for f, v in config.items():
        if isinstance(v, str):
            if v in primary:
                ties[f] = primary[v]
            else:
                primary[v], symbols[f] = f, user_symbol(v)
    return symbols, {f: v for f, v in config.items() if isinstance(v, int)}, ties


def _hf_space(name: str, config: dict) -> ConfigSpace:
    from ..targets import hf_auto_class, hf_head

    model_type, head = hf_head(name)
    try:
        from transformers import AutoConfig
        from transformers.models.auto.configuration_auto import CONFIG_MAPPING
    except ImportError:
        raise UsageError("hf: targets need Hugging Face transformers: pip install transformers") from None
    if model_type not in CONFIG_MAPPING:
        close = difflib.get_close_matches(model_type, list(CONFIG_MAPPING.keys()), n=3)
        raise UsageError(f"unknown Hugging Face model type {model_type!r}"
                         + (f"; did you mean {', '.join(close)}?" if close else ""))
    default = AutoConfig.for_model(model_type)
    auto = hf_auto_class(model_type, head, default)  # AutoModel, or the auto class of the head
    ints = {k: v for k, v in vars(default).items() if isinstance(v, int) and not isinstance(v, bool)}
    for f in config:
        if f not in ints:
            close = difflib.get_close_matches(f, list(ints), n=3)
            raise UsageError(f"hf:{model_type} has no integer config field {f!r}"
                             + (f"; did you mean {', '.join(close)}?" if close else ""))
    symbols, fixed, ties = _split(config)
    relations = []
    rotary = any("rope" in k for k in vars(default))  # rotary embeddings split each head in two halves
    # a head_dim given (a symbol or a number) is the model's own: no longer hidden_size / heads
    if "head_dim" in ties or "head_dim" in ties.values():
        raise UsageError("--config: head_dim shares its symbol with another field; give it a symbol of its own")
    explicit = "head_dim" in symbols or "head_dim" in fixed
    if rotary and "head_dim" in symbols:
        relations.append(Relation("head_dim", None, 2, "rotary embeddings rotate the two halves of each head"))
    if rotary and fixed.get("head_dim", 0) % 2:
        raise UsageError(f"head_dim={fixed['head_dim']}: hf:{model_type} rotates the two halves of each head "
                         "(rotary embeddings), so head_dim must be even")
    for num, den, quantity in HF_RELATIONS:
        named = not (quantity == "head_dim" and explicit)
        if not named:  # an explicit head_dim: configurations still check d % h (transformers' validators)
            quantity = "the configuration checks it"
        if num in ties or den in ties:
            num, den = ties.get(num, num), ties.get(den, den)
            if num == den:
                continue  # tied fields: the quotient is 1 by construction
        if num in ints and den in ints and (num in symbols or den in symbols):
            if quantity == "head_dim" and ints.get("head_dim") not in (None, ints[num] // ints[den]):
                continue  # a default head_dim of its own: no relation between these two fields
            factor = 2 if quantity == "head_dim" and rotary else 1
            relations.append(Relation(num, den, factor if named else 1, quantity, named))
            for f in (num, den):
                if f not in symbols:
                    fixed.setdefault(f, ints[f])

    def build(values: dict):
        import torch
        from transformers.utils import logging

        level = logging.get_verbosity()
        logging.set_verbosity_error()  # tiny sample vocabularies make it warn about special token ids
        try:
            cfg = AutoConfig.for_model(model_type, **values, **{t: values[p] for t, p in ties.items()})
            with torch.device("meta"):
                return auto.from_config(cfg)
        finally:
            logging.set_verbosity(level)

    bounds = []
    for small, large in HF_BOUNDS:
        small, large = ties.get(small, small), ties.get(large, large)
        if small in ints and large in ints and small != large and (small in symbols or large in symbols):
            bounds.append(Bound(small, large))
            for f in (small, large):
                if f not in symbols:
                    fixed.setdefault(f, ints[f])
    return ConfigSpace(f"hf:{name}", symbols, fixed, relations, build, bounds=bounds)


def factory_space(factory: Callable, config: dict, name: str = "", source: str = "") -> ConfigSpace:
    """The space of a factory's integer arguments (``name``: how messages call it; ``source``: a hash of its file
    for cache keys, empty for a Python object, which is never cached)."""
    name = name or factory_name(factory)
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        params = {}
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    for f in config:
        if f not in params and not accepts_any:
            raise UsageError(f"{name} has no argument {f!r} (its arguments: {', '.join(params) or 'none'})")
    symbols, fixed, ties = _split(config)
    relations, notes = _factory_relations(factory, params, symbols, fixed, ties)

    def build(values: dict):
        import torch
        from torch import nn

        values = {**values, **{t: values[p] for t, p in ties.items()}}
        if not accepts_any:  # fields a relation read from the built model's config, not arguments: not passed
            values = {k: v for k, v in values.items() if k in params}
        try:
            with torch.device("meta"):
                model = factory(**values)
        except Exception:  # noqa: BLE001  (a factory that cannot run on meta: build on CPU instead)
            model = factory(**values)
        if not isinstance(model, nn.Module):
            raise UsageError(f"{name}(...) returned a {type(model).__name__}, not an nn.Module")
        return model

    hint = ("; symcost sees no constraint of the factory's: fix that field with a number in --config, or take the "
            "fields it must be a multiple of as arguments named as the model's config fields (num_attention_heads, "
            "…) so that symcost samples configurations that satisfy them")
    return ConfigSpace(name, symbols, fixed, relations, build, source=source, notes=notes, refusal_hint=hint)


def _factory_relations(factory: Callable, params, symbols: dict, fixed: dict, ties: dict) -> tuple[list, list]:
    """The divisibility relations of a factory that returns a Hugging Face model (``model.config``): its arguments
    named as config fields (hidden_size, num_attention_heads, …) relate as in ``_hf_space``; a field the factory
    does not take (heads fixed inside it) is read from the model it builds with its defaults, and fixed there.
    Anything else: no relation, and a builder that refuses a sampled configuration is quoted whole."""
    import torch

    defaults = {n: p.default for n, p in params.items()
                if isinstance(p.default, int) and not isinstance(p.default, bool)}
    try:
        with torch.device("meta"):
            cfg = getattr(factory(**{k: v for k, v in fixed.items() if k in params}), "config", None)
    except Exception:  # noqa: BLE001  (a factory that needs its arguments, or not on meta: no relations known)
        return [], []
    if cfg is None or not hasattr(cfg, "to_dict"):
        return [], []
    ints = {k: v for k, v in vars(cfg).items() if isinstance(v, int) and not isinstance(v, bool)}
    rotary = any("rope" in k for k in vars(cfg))
    relations, read = [], []
    for num, den, quantity in HF_RELATIONS:
        num, den = ties.get(num, num), ties.get(den, den)
        if num == den or not (num in symbols or den in symbols) or num not in ints or den not in ints:
            continue
        if quantity == "head_dim" and ints.get("head_dim") not in (None, ints[num] // ints[den]):
            continue  # a head_dim of its own: no relation between these two fields
        for f in (num, den):
            if f not in symbols and f not in fixed:
                fixed[f] = defaults.get(f, ints[f])
                if f not in params:
                    read.append(f"{f}={ints[f]}")
        relations.append(Relation(num, den, 2 if quantity == "head_dim" and rotary else 1, quantity))
    notes = [f"the factory's model has {', '.join(read)} at its defaults, fixed inside it: the sampled "
             "configurations respect it and the formula holds where it does"] if read else []
    return relations, notes


def _load_callable(path: Path, attr: str):
    from ..targets import load_attribute

    obj = load_attribute(path, attr)
    if not callable(obj):
        raise UsageError(f"{str(path)!r} has no callable {attr!r} (--config needs a factory taking integer arguments)")
    return obj
