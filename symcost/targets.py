"""Load a model named on the command line: ``torchvision:NAME``, ``timm:NAME``, ``hf:MODEL_TYPE`` or
``path/to/file.py:callable``.

``load_target(spec)`` returns an ``nn.Module`` and reports every user mistake as one ``UsageError`` line:

* ``torchvision:resnet50`` -- ``torchvision.models.get_model(NAME, weights=None)`` (random init, no download;
  ``weights_backbone=None`` too where the builder has one; ``aux_loss=True`` where it has that, as its published
  weights are built: FCN and DeepLabV3 with their auxiliary head);
  an unknown name gets the closest known names.
* ``timm:resnet50d`` -- ``timm.create_model(NAME, pretrained=False)`` (any ``timm.list_models()`` name; timm is an
  optional dependency, ``pip install 'symcost[timm]'``).
* ``hf:llama`` -- ``AutoModel.from_config(AutoConfig.for_model("llama"))``: the base model, no task head;
  ``hf:llama:causal-lm`` (also ``masked-lm``, ``seq2seq-lm``, ``classification``, ``base``) builds it with that
  head through transformers' auto class (``AutoModelForCausalLM`` …, see ``HF_HEADS``).
* ``models/net.py:build`` -- imports the file (its folder is on ``sys.path`` while it runs, so sibling imports
  work) and takes ``build``: an ``nn.Module`` instance is returned as is (not copied), anything else callable
  (a class or a factory function) is called with no arguments and must return an ``nn.Module``.

Nothing is done to the model (no ``eval()``, no device or dtype change): callers decide.  torch is imported only
when a target is loaded.
"""
from __future__ import annotations

import difflib
import hashlib
import importlib.util
import inspect
import sys
from dataclasses import dataclass
from pathlib import Path

from .parse import UsageError
from .target_names import HF_HEADS, TARGET_SYNTAX, check_target, hf_head, split_target  # noqa: F401  (the
# spec's syntax lives with the name checks, which import no model library; importers of these names find them here too)

#: the libraries a target can name; any other source is a file (``path/to/file.py:callable``)
LIBRARIES = ("torchvision", "timm", "hf")


@dataclass(frozen=True)
class Target:
    """A target as parsed once: where it comes from (``kind``: "torchvision", "timm", "hf" or "file"), its name
    there, and what each kind needs -- how it is built, its default input size and dtype, and the Hugging Face
    preparation (an experts implementation that traces, the inputs the architecture takes, eager attention when the
    default one reads mask values).  The one place outside the name checks that reads a target's prefix."""

    spec: str       # as written, stripped: the cache key and every message use it
    source: str     # the part before the last colon ("hf" for any hf: spec): a library, or a file's path
    name: str       # the model's name in its library, or the file's callable

    @classmethod
    def of(cls, spec) -> "Target":
        if isinstance(spec, Target):
            return spec
        text = str(spec).strip()
        source, name = split_target(text)
        return cls(text, source, name)

    @property
    def kind(self) -> str:
        """"torchvision", "timm", "hf", "file", or "" for a spec without a source (refused on loading)."""
        return self.source if self.source in LIBRARIES else ("file" if self.source else "")

    @property
    def is_hf(self) -> bool:
        return self.kind == "hf"

    @property
    def is_torchvision(self) -> bool:
        return self.kind == "torchvision"

    def build(self, device: str | None = None, attn_implementation: str | None = None):
        """The ``nn.Module`` (``load_target``)."""
        return load_target(self.spec, device=device, attn_implementation=attn_implementation)

    def default_size(self) -> tuple | None:
        """The input size the model was made for (``default_input_size``)."""
        return default_input_size(self.spec)

    @property
    def input_dtype(self) -> str:
        """Hugging Face models take token ids (int64); everything else floats."""
        return "int64" if self.is_hf else "float32"

    def prepare(self, model, shape, input_dtype: str | None = None, counts: bool = True) -> tuple:
        """``(shape, input dtype, notes)`` to trace the built ``model`` on: a mixture of experts switched to an
        experts implementation that traces (any kind), and for a Hugging Face model the inputs its architecture
        takes (pixel values, audio features, decoder ids, both towers: ``hf_inputs``).  ``counts=False``: notes
        without the model's own numbers (experts, parameters), for a formula across configurations."""
        from .moe import select_experts_implementation

        notes = select_experts_implementation(model, counts)
        if not self.is_hf:
            return shape, input_dtype or self.input_dtype, notes
        shape, dtype, chosen = hf_inputs(model, shape, input_dtype)
        return shape, dtype, notes + chosen

    @staticmethod
    def eager_note(e: Exception | None = None) -> str:
        """Why a Hugging Face model was traced with eager attention (``with_eager_retry``)."""
        return ("traced with attn_implementation='eager': the default attention reads mask values, which meta tensors "
                "do not have" + (f" ({e})" if e is not None else ""))

    def with_eager_retry(self, attempt):
        """``(attempt(None), None)``, or for a Hugging Face model whose default (sdpa) attention reads mask values
        (``NeedsTensorValues`` on meta tensors) ``(attempt("eager"), the error)``: eager attention runs the same
        matmuls.  ``attempt(attn_implementation)`` builds and traces."""
        from .errors import NeedsTensorValues

        try:
            return attempt(None), None
        except NeedsTensorValues as e:
            if not self.is_hf:
                raise
            return attempt("eager"), e


def hf_auto_class(model_type: str, head: str | None, config):
    """The auto class that builds ``model_type`` with ``head`` (None: ``AutoModel``), refusing a head transformers
    has no model class for (``UsageError``)."""
    import transformers

    auto = getattr(transformers, HF_HEADS[head or "base"])
    if head not in (None, "base") and type(config) not in auto._model_mapping:
        offered = [h for h, name in HF_HEADS.items()
                   if h != "base" and type(config) in getattr(transformers, name)._model_mapping]
        raise UsageError(f"hf:{model_type}:{head}: transformers has no {head} model for {model_type} "
                         f"({HF_HEADS[head]}); its heads: {', '.join(['base', *offered])}")
    return auto


def practitioners_head(model_type: str) -> str:
    """The head the usual FLOPs and MFU accounting counts (PaLM, Megatron-LM, nanoGPT, torchtitan all count the
    LM head): an encoder-decoder's seq2seq LM head, an encoder's masked-LM head, a decoder's causal-LM head,
    else the base model."""
    import transformers
    from transformers import AutoConfig

    config = type(AutoConfig.for_model(model_type))
    has = {h: config in getattr(transformers, name)._model_mapping for h, name in HF_HEADS.items() if h != "base"}
    if getattr(AutoConfig.for_model(model_type), "is_encoder_decoder", False):
        return "seq2seq-lm" if has["seq2seq-lm"] else "base"
    for head in ("masked-lm", "causal-lm"):
        if has[head]:
            return head
    return "base"


def load_target(spec: str, device: str | None = None, attn_implementation: str | None = None):
    """The ``nn.Module`` named by ``spec`` (see the module docstring); ``UsageError`` on any bad spec.

    ``device="meta"`` builds without allocating or initialising weights (fast: vgg16 in milliseconds instead
    of seconds); builders that compute with tensors (regnet) fall back to a CPU build moved to meta.
    ``attn_implementation`` ("eager", "sdpa"): for hf: targets, the attention implementation to build with.
    """
    check_target(spec)  # a typo answered from the libraries' source files, before they (and torch) are imported
    kind, name = split_target(spec)
    if not kind or not name:
        raise UsageError(f"target {spec!r}: expected {TARGET_SYNTAX}")
    if kind == "torchvision":
        build = lambda: _torchvision(name)  # noqa: E731
    elif kind == "hf":
        build = lambda: _huggingface(name, attn_implementation)  # noqa: E731
    elif kind == "timm":
        build = lambda: _timm(name)  # noqa: E731
    elif kind.endswith(".py") or "/" in kind or Path(kind).suffix:
        build = lambda: _from_file(Path(kind), name)  # noqa: E731
    else:
        raise UsageError(f"target {spec!r}: unknown source {kind!r}; expected {TARGET_SYNTAX}")
    if device != "meta":
        return build()
    import torch

    try:
        with torch.device("meta"):
            return build()
    except UsageError as e:
        if "could not be built" not in str(e) and "raised" not in str(e):
            raise
    except Exception:  # noqa: BLE001  (a builder that cannot run on meta: build on CPU instead)
        pass
    return build().to("meta")


def source_hash(spec: str) -> str:
    """A file target's resolved path and a hash of its source, for cache keys (the files it imports are checked
    beside the entry: ``cache.user_sources``); for timm and Hugging Face targets the library's version
    (their models change with it; torchvision's version is in the key already): empty for torchvision."""
    kind, _ = split_target(spec)
    if kind in ("timm", "hf"):
        from importlib import metadata

        dist = "timm" if kind == "timm" else "transformers"
        try:
            return f"{dist} {metadata.version(dist)}"
        except metadata.PackageNotFoundError:
            return ""
    path = Path(kind)
    if kind not in ("torchvision", "timm", "hf") and path.is_file():  # where it is, too: its sibling imports differ
        return f"{path.resolve()} {hashlib.sha256(path.read_bytes()).hexdigest()}"
    return ""


def is_file_target(spec) -> bool:
    """A ``path/to/file.py:callable`` target (the user's code: its imports are part of a cache entry's key)."""
    return Target.of(spec).kind == "file"


def default_input_dtype(spec: str) -> str:
    """Hugging Face models take token ids (int64); everything else floats."""
    return Target.of(spec).input_dtype


def _huggingface(name: str, attn_implementation: str | None = None):
    model_type, head = hf_head(name)
    try:
        from transformers import AutoConfig
        from transformers.models.auto.configuration_auto import CONFIG_MAPPING
    except ImportError:
        raise UsageError("hf: targets need Hugging Face transformers: pip install transformers") from None
    known = list(CONFIG_MAPPING.keys())
    if model_type not in known:
        close = difflib.get_close_matches(model_type, known, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UsageError(f"unknown Hugging Face model type {model_type!r}{hint}")
    config = AutoConfig.for_model(model_type)
    auto = hf_auto_class(model_type, head, config)
    try:  # the default configuration of that architecture: no download, no weights
        kwargs = {"attn_implementation": attn_implementation} if attn_implementation else {}
        return auto.from_config(config, **kwargs)
    except Exception as e:
        raise UsageError(f"Hugging Face model {model_type!r} could not be built: {type(e).__name__}: "
                         f"{_one_line(e)}") from None


def _timm_module():
    try:
        import timm
    except ImportError:
        raise UsageError("timm: targets need timm: pip install timm (or symcost[timm])") from None
    return timm


def _timm(name: str):
    timm = _timm_module()
    known = timm.list_models()
    if name not in known:
        close = difflib.get_close_matches(name, known, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else "; see timm.list_models()"
        raise UsageError(f"unknown timm model {name!r}{hint}")
    try:  # random init: never a download
        return timm.create_model(name, pretrained=False)
    except Exception as e:
        raise UsageError(f"timm model {name!r} could not be built: {type(e).__name__}: {_one_line(e)}") from None


def default_input_size(spec: str) -> tuple | None:
    """The input size a model was made for, without its batch dim, or None when it has none.

    timm: the model's ``pretrained_cfg["input_size"]``, e.g. (3, 224, 224); torchvision: the crop size of the
    default weights' transforms (segmentation: their resize size; else the weights' ``min_size`` when it is more
    than 1), as (3, H, W); Hugging Face: (max_position_embeddings,)
    of the default config when it has one.  Nothing is built or downloaded (timm reads its config registry).
    Trace sizes are chosen around ``tracing.model_input_size`` instead, which reads the built model.
    """
    kind, name = split_target(spec)
    if kind == "timm":
        timm = _timm_module()
        try:
            cfg = timm.models.get_pretrained_cfg(name) or timm.models.get_pretrained_cfg(
                timm.models.get_arch_name(name))
        except Exception:  # noqa: BLE001  (an unknown name: no default)
            return None
        size = getattr(cfg, "input_size", None) if cfg is not None else None
        return tuple(int(d) for d in size) if size else None
    if kind == "torchvision":
        import torchvision

        models = torchvision.models
        if name in models.list_models(module=models.video) + models.list_models(module=models.optical_flow):
            return None  # clips and image pairs: not one (C, H, W) image
        try:
            weights = torchvision.models.get_model_weights(name).DEFAULT
        except Exception:  # noqa: BLE001  (no weights registered for this builder)
            return None
        transforms = weights.transforms()
        for attr in ("crop_size", "resize_size"):  # classification crops; segmentation resizes
            size = getattr(transforms, attr, None)
            if isinstance(size, (list, tuple)) and size and all(isinstance(c, int) and c > 1 for c in size):
                return (3, *(int(c) for c in (list(size) * 2 if len(size) == 1 else size)))
        low = weights.meta.get("min_size")  # detection: only a minimum, (1, 1), is no default
        return (3, *(int(c) for c in low)) if low and min(low) > 1 else None
    if kind == "hf":
        try:
            from transformers import AutoConfig

            positions = getattr(AutoConfig.for_model(hf_head(name)[0]), "max_position_embeddings", None)
        except Exception:  # noqa: BLE001  (transformers missing or an unknown type)
            return None
        return (int(positions),) if isinstance(positions, int) else None
    return None


def hf_input_dtype(name: str) -> str:
    """Token ids and masks are integers; pixel values and audio features floats."""
    return "int64" if name.endswith(("_ids", "mask")) else "float32"


def hf_inputs(model, shape: tuple | dict, input_dtype: str | None = None) -> tuple[tuple | dict, str | dict, list]:
    """The inputs a Hugging Face model's forward needs, from ``--input``: (shape or named shapes, dtype or
    dtypes by name, notes on every input symcost chose).

    Named shapes are taken as given (names checked against the forward's parameters).  One shape is the model's
    ``main_input_name`` (input_ids, pixel_values, input_features), passed positionally when it is the only input
    needed; an encoder-decoder also gets ``decoder_input_ids`` (the input ids' shape when the main input is ids,
    otherwise batch x 1: one decoder token), a two-tower model (CLIP) pixel values at its vision config's size."""
    import inspect

    def dtype(name: str) -> str:  # --input-dtype sets the main input's; the others' where of the same kind
        own = hf_input_dtype(name)
        if input_dtype and (name == main or input_dtype.startswith("int") == own.startswith("int")):
            return input_dtype
        return own

    params = inspect.signature(model.forward).parameters
    main = getattr(model, "main_input_name", "input_ids")
    if isinstance(shape, dict):
        unknown = [n for n in shape if n not in params]
        if unknown:
            tensors = [n for n in params if n.endswith(("_ids", "_values", "_features", "mask"))]
            raise UsageError(f"{type(model).__name__} has no input {unknown[0]!r}; its forward takes "
                             f"{', '.join(tensors) or ', '.join(params)}")
        dtypes = {n: dtype(n) for n in shape}
        return shape, dtypes, []
    if main == "input_ids" and len(shape) != 2:  # the forward would fail unpacking it, saying nothing of why
        raise UsageError(f"{type(model).__name__} takes token ids of shape B x L (batch x sequence length, e.g. "
                         f"--input 1xL); got rank {len(shape)}: {'x'.join(map(str, shape))}")
    named, notes = {main: tuple(shape)}, []
    config = model.config
    batch = shape[0] if len(shape) > 1 else 1
    if getattr(config, "is_encoder_decoder", False) and "decoder_input_ids" in params:
        named["decoder_input_ids"] = tuple(shape) if main == "input_ids" else (batch, 1)
    vision = getattr(config, "vision_config", None)
    if main != "pixel_values" and "pixel_values" in params and vision is not None and "input_ids" in params:
        size = vision.image_size
        named["pixel_values"] = (batch, vision.num_channels, size, size)
    for n, s in list(named.items())[1:]:
        text = "x".join(map(str, s))
        notes.append(f"input {n} = {text} (chosen by symcost; name every input to choose: --input "
                     f"{main}={'x'.join(map(str, shape))},{n}=...)")
    if len(named) == 1:
        return tuple(shape), dtype(main), notes
    return named, {n: dtype(n) for n in named}, notes


def _torchvision(name: str):
    import torchvision

    known = torchvision.models.list_models()
    if name not in known:
        close = difflib.get_close_matches(name, known, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else "; see torchvision.models.list_models()"
        raise UsageError(f"unknown torchvision model {name!r}{hint}")
    # segmentation/detection builders also default to a pretrained backbone: no downloads, ever
    kwargs = {"weights": None}
    params = inspect.signature(torchvision.models.get_model_builder(name)).parameters
    if "weights_backbone" in params:
        kwargs["weights_backbone"] = None
    if "aux_loss" in params:  # segmentation (FCN, DeepLabV3): every published weight has the auxiliary head, and
        kwargs["aux_loss"] = True  # its metadata (``_ops``) counts it; without weights the builder leaves it out
    try:
        return torchvision.models.get_model(name, **kwargs)
    except Exception as e:
        raise UsageError(f"torchvision model {name!r} could not be built: {type(e).__name__}: {_one_line(e)}") from None


def load_attribute(path: Path, attr: str):
    """``attr`` of the Python file ``path``, imported under a name unique to the path (``UsageError`` on any
    failure, with close names suggested): the one importer of users' model files (targets and ``--config``)."""
    if not path.is_file():
        raise UsageError(f"target file {str(path)!r} not found")
    if path.suffix != ".py":
        raise UsageError(f"target file {str(path)!r} is not a .py file")
    resolved = path.resolve()
    # a name unique to the path, so two targets never share a sys.modules entry
    mod_name = f"_symcost_target_{hashlib.sha1(str(resolved).encode()).hexdigest()[:12]}"
    spec = importlib.util.spec_from_file_location(mod_name, resolved)
    if spec is None or spec.loader is None:
        raise UsageError(f"target file {str(path)!r} cannot be imported")
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module  # dataclasses and pickling look the module up while it executes
    sys.path.insert(0, str(resolved.parent))
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as e:  # a script calling sys.exit() at import is a bad target, not an exit
        sys.modules.pop(mod_name, None)
        raise UsageError(f"importing {str(path)!r} failed: {type(e).__name__}: {_one_line(e)}") from None
    finally:
        sys.path.remove(str(resolved.parent))
    if not hasattr(module, attr):
        names = [n for n, v in vars(module).items() if callable(v) and not n.startswith("_")]
        close = difflib.get_close_matches(attr, names, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UsageError(f"{str(path)!r} has no attribute {attr!r}{hint}")
    return getattr(module, attr)


def _from_file(path: Path, attr: str):
    from torch import nn

    obj = load_attribute(path, attr)
    if isinstance(obj, nn.Module):
        return obj
    if not callable(obj):
        raise UsageError(f"{str(path)}:{attr} is a {type(obj).__name__}, not an nn.Module or a callable returning one")
    try:
        model = obj()
    except (Exception, SystemExit) as e:
        raise UsageError(f"{str(path)}:{attr}() raised {type(e).__name__}: {_one_line(e)}") from None
    if not isinstance(model, nn.Module):
        raise UsageError(f"{str(path)}:{attr}() returned a {type(model).__name__}, not an nn.Module")
    return model


def one_line(e: BaseException) -> str:
    """An exception's whole message on one line: a builder's reason often follows a colon on the next line
    (transformers' ``StrictDataclassClassValidationError``), so no line is dropped."""
    lines = [line.strip() for line in str(e).strip().splitlines() if line.strip()]
    return " ".join(lines) if lines else type(e).__name__


_one_line = one_line
