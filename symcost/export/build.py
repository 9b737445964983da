"""A cost table from targets: derive each model, then ``layer_table`` (one target) or ``model_table`` (several).

What ``symcost table`` computes: ``derive_models`` (one derivation per target, through the cache; a model with no
single formula is derived at the table's one size instead), ``cost_table`` (grouping by module depth, with the
module types cached beside the derivations so a cached ``table --depth`` imports no torch).
"""
from __future__ import annotations

from ..errors import NoSingleFormula, SymcostError, UsageError


def derive_for_table(target: str, input_spec: str, shape: tuple, values: dict, *, symbolic: bool = False,
                     train: bool = False, use_cache: bool = True, input_dtype: str | None = None):
    """``target``'s derivation on ``input_spec``; where no single formula exists and the table needs numbers at
    one size only (``values``, not ``symbolic``), the derivation at that concrete size."""
    from ..derive import derive

    try:
        return derive(target, input_spec, train=train, use_cache=use_cache, progress=True, input_dtype=input_dtype)
    except SymcostError as e:
        if not values or symbolic or not isinstance(e, NoSingleFormula):
            raise UsageError(f"{target}: {e}" if target not in str(e) else str(e)) from None
    concrete = "x".join(str(d if isinstance(d, int) else values[str(d)]) for d in shape)
    mc = derive(target, concrete, train=train, use_cache=use_cache, progress=True, input_dtype=input_dtype)
    mc.notes = [*mc.notes, f"no single formula for {input_spec}; derived at {concrete}"]
    return mc


def derive_models(targets: list[str], input_spec: str, shape: tuple, values: dict, *, symbolic: bool = False,
                  train: bool = False, use_cache: bool = True, input_dtype: str | None = None) -> list[tuple]:
    """``(target, ModelCost)`` per target, each checked to hold at ``values``."""
    models = []
    for target in targets:
        mc = derive_for_table(target, input_spec, shape, values, symbolic=symbolic, train=train, use_cache=use_cache,
                              input_dtype=input_dtype)
        if values and mc.symbols:
            try:
                mc.check_domain(values)
            except ValueError as e:
                raise UsageError(f"{target}: {e}") from None
        models.append((target, mc))
    return models


def module_types(target: str, use_cache: bool = True) -> dict:
    """Qualified module name -> class name (``layer1`` -> ``Sequential``), for grouped rows; {} if the model
    cannot be loaded (the rows then say how many calls they group).  Cached beside the derivations, so that a
    cached ``table --depth`` answers without importing torch."""
    from .. import cache
    from ..targets import is_file_target, source_hash

    key = cache.cache_key(target, "module-types", False, source_hash(target))
    hit = cache.load(key, "module_types") if use_cache else None
    if isinstance(hit, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in hit.items()):
        return hit
    try:
        from ..targets import load_target

        model = load_target(target, device="meta")
        types = {name: type(m).__name__ for name, m in model.named_modules() if name}
    except Exception:  # noqa: BLE001  a model that cannot be loaded: rows say how many calls they group
        return {}
    if use_cache:
        cache.store(key, {"module_types": types}, cache.user_sources() if is_file_target(target) else None)
    return types


def cost_table(models: list[tuple], conv, values: dict, *, depth: int | None = None, symbolic: bool = False,
               assume_divisible: int | None = None, input_shape: tuple | None = None, use_cache: bool = True):
    """One model: its per-layer (``depth``: per-group) ``Table``; several: one row per model."""
    from .tables import group_key, layer_table, model_table

    if len(models) == 1:
        target, mc = models[0]
        types = {}
        if depth is not None:
            sizes: dict[str, int] = {}
            for r in mc.rows:
                key = group_key(r.name, depth)
                sizes[key] = sizes.get(key, 0) + 1
            if any(n > 1 for n in sizes.values()):
                types = module_types(target, use_cache=use_cache)
        try:
            return layer_table(mc, target, conv, values, depth=depth, symbolic=symbolic,
                               assume_divisible=assume_divisible, module_types=types, input_shape=input_shape)
        except ValueError as e:
            raise UsageError(f"{target}: {e}") from None
    try:
        return model_table(models, conv, values, symbolic=symbolic, assume_divisible=assume_divisible,
                           input_shape=input_shape)
    except ValueError as e:
        raise UsageError(str(e)) from None
