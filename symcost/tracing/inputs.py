"""A traced model's input and the model as each recording sees it: symbolic shapes, the sizes recorded at, the
model's own size, and copies on meta."""
from __future__ import annotations

import copy
from typing import Sequence

import sympy
import torch

from ..symbols import user_symbol


def as_symbolic(input_shape: Sequence | dict) -> tuple | dict:
    if isinstance(input_shape, dict):  # named inputs: name -> shape
        return {name: as_symbolic(s) for name, s in input_shape.items()}
    out = []
    for d in input_shape:
        if isinstance(d, str):
            d = int(d) if d.isdigit() else user_symbol(d)
        out.append(sympy.Integer(d) if isinstance(d, int) else d)
    return tuple(out)


def trace_sizes(shape: tuple, default: dict | None = None) -> list[tuple[dict, dict]]:
    """Pairs of assignments of the input symbols to trace at, best first.

    Sizes are odd (no stride divides them, so floors show), 64 apart where the size allows (sizes downsampled six
    times still differ) and differ per symbol, so that the sizes derived from each rarely coincide in both traces;
    ``verify`` checks the result at other residues either way.  ``default`` (symbol -> the model's own size, e.g.
    224 or 77 positions) centres them on that size, with a lower pair in case the model has a maximum (a position
    table)."""
    default = default or {}
    bases = []
    for shift in (0, 1):
        a, b = {}, {}
        spatial = 0
        for pos, d in enumerate(shape):
            for s in sorted(d.free_symbols, key=str) if isinstance(d, sympy.Basic) else ():
                if s in a:
                    continue
                if pos == 0 and len(shape) > 2:      # batch
                    a[s], b[s] = sympy.Integer(2), sympy.Integer(3)
                    continue
                top = 32 * max(2, round(default[s] / 32) - shift) + 1 if s in default else 225
                if s not in default and shift:
                    return bases
                # 64 apart where the size allows: sizes downsampled six times still differ (225 -> 4, 161 -> 3)
                gap = 64 if top > 128 else 32
                a[s], b[s] = sympy.Integer(top + 32 * spatial), sympy.Integer(top - gap - 8 * spatial)
                spatial += 1
        if (a, b) not in bases:
            bases.append((a, b))
    return bases


def on_meta(model: torch.nn.Module) -> torch.nn.Module:
    tensors = list(model.parameters()) + list(model.buffers())
    if tensors and all(t.device.type == "meta" for t in tensors):
        return model
    # the user's model stays as it is; a copy whose stored tensors are made on meta directly keeps tied weights
    # tied (``.to("meta")`` gives each module its own new Parameter) and copies no data
    memo: dict = {}
    for t in tensors:
        if id(t) not in memo:
            meta = t.detach().to("meta")
            memo[id(t)] = torch.nn.Parameter(meta, t.requires_grad) if isinstance(t, torch.nn.Parameter) else meta
    return copy.deepcopy(model, memo)


def fresh_copy(model: torch.nn.Module) -> torch.nn.Module:
    """The model as the user built it, for one recording: a copy sharing its parameters and buffers, so that what
    one run leaves behind (an attention-bias cache filled on the first call in eval mode, as LeViT and
    EfficientFormer do) cannot make a later recording skip work."""
    memo = {id(t): t for t in (*model.parameters(), *model.buffers())}
    try:
        return copy.deepcopy(model, memo)
    except Exception:  # noqa: BLE001  (a model that cannot be copied is recorded as it is)
        return model


def flat_sizes(shape: tuple | dict) -> tuple:
    """All dims of all inputs, in order (named inputs: one after the other)."""
    return tuple(d for s in shape.values() for d in s) if isinstance(shape, dict) else tuple(shape)


def shown_shape(shape: tuple | dict) -> str:
    if isinstance(shape, dict):
        return ",".join(f"{n}={shown_shape(s)}" for n, s in shape.items())
    return "x".join(map(str, shape))


def dtype_of(dtype: str | dict, name: str = "") -> str:
    return dtype.get(name, "float32") if isinstance(dtype, dict) else dtype


def shape_at(shape: tuple | dict, values: dict) -> list[int] | dict:
    if isinstance(shape, dict):
        return {n: shape_at(s, values) for n, s in shape.items()}
    return [int(d.xreplace(values)) for d in shape]


def concrete_shape(shape: tuple | dict, values: dict) -> tuple | dict:
    if isinstance(shape, dict):
        return {n: concrete_shape(s, values) for n, s in shape.items()}
    return tuple(sympy.Integer(v) for v in shape_at(shape, values))


def default_values(shape: tuple, default_shape) -> dict:
    """symbol -> the model's own size, from its default input shape aligned to the right."""
    out: dict = {}
    if not default_shape:
        return out
    if isinstance(shape, dict):  # named inputs: the model's own size is its first (main) input's
        shape = next(iter(shape.values()))
    for d, v in zip(reversed(shape), reversed(tuple(default_shape))):
        if isinstance(d, sympy.Symbol) and v and int(v) > 0:
            out.setdefault(d, int(v))
    return dict(reversed(out.items()))  # in the input's order: H before W


def model_input_size(model: torch.nn.Module, target: str = "") -> tuple[int, ...] | None:
    """The size a model is built for, read from the model or its published weights' metadata (no download):
    timm's ``pretrained_cfg["input_size"]``, torchvision's evaluation crop, a Hugging Face position table.  Trace
    sizes are chosen around it; a model that runs at no other size is derived there.  Not
    ``targets.default_input_size`` (the public size a target was made for, without building it): this one caps a
    position table at 224 and ignores a segmentation model's resize size, both choices of where to trace."""
    cfg = getattr(model, "pretrained_cfg", None)
    if isinstance(cfg, dict) and cfg.get("input_size"):
        return tuple(int(v) for v in cfg["input_size"])
    from ..targets import Target

    spec = Target.of(target)
    if spec.is_torchvision:
        import torchvision

        try:
            crop = torchvision.models.get_model_weights(spec.name).DEFAULT.transforms.keywords
        except Exception:  # noqa: BLE001  (a model without published weights: no default size)
            return None
        size = crop.get("crop_size")
        return (size, size) if isinstance(size, int) else None
    config = getattr(model, "config", None)
    image = getattr(config, "image_size", None)
    if getattr(model, "main_input_name", "") == "pixel_values" and isinstance(image, int) and image > 0:
        return (image, image)  # a Hugging Face vision model's own resolution
    positions = getattr(config, "max_position_embeddings", None) or getattr(
        getattr(config, "text_config", None), "max_position_embeddings", None)  # CLIP: its text tower's table
    if isinstance(positions, int) and positions > 0:
        return (min(positions, 224),)  # well inside the table: the usual trace sizes when they fit
    return None
