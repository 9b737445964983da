"""A target's spelling checked before any model library is imported: importing torch (and torchvision, timm or
transformers) takes seconds, and a typo deserves its answer at once.

``check_target(spec)`` raises the ``UsageError`` ``targets.load_target`` would raise for a missing source prefix,
an unknown torchvision, timm or Hugging Face name, a missing file or a name the file never mentions -- reading the
libraries' own source files as text (``importlib.util.find_spec`` locates them without importing them).  It only
refuses what it is sure of: where a library's files cannot be read, or read as expected, it says nothing and
``load_target`` decides after the import, as before.  ``check_config_fields`` does the same for ``--config`` fields
of an ``hf:`` target.  The target syntax itself (``split_target``, ``hf_head``, ``TARGET_SYNTAX``) is here too:
``targets`` builds what these names name.
"""
from __future__ import annotations

import ast
import difflib
import functools
import importlib.util
import re
from pathlib import Path

from .errors import UsageError


TARGET_SYNTAX = ("torchvision:NAME (e.g. torchvision:resnet50), timm:NAME (e.g. timm:resnet50d), "
                 "hf:MODEL_TYPE[:HEAD] (a Hugging Face model built from its "
                 "default config, e.g. hf:bert, with a task head hf:llama:causal-lm; never downloaded) or "
                 "path/to/file.py:callable")

#: the task heads of ``hf:MODEL_TYPE:HEAD``, each built through one of transformers' auto classes
HF_HEADS = {"base": "AutoModel", "causal-lm": "AutoModelForCausalLM", "masked-lm": "AutoModelForMaskedLM",
            "seq2seq-lm": "AutoModelForSeq2SeqLM", "classification": "AutoModelForSequenceClassification"}


def split_target(spec: str) -> tuple[str, str]:
    """(source, name): ``hf:llama:causal-lm`` -> ("hf", "llama:causal-lm"), ``net.py:build`` -> ("net.py",
    "build"), ``torchvision:resnet50`` -> ("torchvision", "resnet50"); a file path may hold colons, a model
    type does not."""
    spec = spec.strip()
    if spec.startswith("hf:"):
        return "hf", spec[3:]
    kind, _, name = spec.rpartition(":")
    return kind, name


def hf_head(name: str) -> tuple[str, str | None]:
    """``llama:causal-lm`` -> ("llama", "causal-lm"); ``llama`` -> ("llama", None): the base model."""
    model_type, sep, head = name.partition(":")
    if sep and head not in HF_HEADS:
        close = difflib.get_close_matches(head, list(HF_HEADS), n=2)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UsageError(f"hf:{name}: unknown head {head!r}{hint} (heads: {', '.join(HF_HEADS)})")
    return model_type, (head if sep else None)


def _package_dir(name: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return ""


# the decorator, its name= if any, then (other decorators, over several lines) the function it registers
_DECORATED = re.compile(r"^@register_model(?:\(\s*(?:name\s*=\s*)?(?:[\"'](\w+)[\"'])?\s*\))?[ \t]*\n"
                        r"(?:(?!def )(?!@register_model).*\n)*?def\s+(\w+)", re.M)


def _registered(folder: Path | None) -> frozenset[str]:
    """The names ``@register_model`` (torchvision's and timm's decorator) registers in ``folder`` and below."""
    if folder is None or not folder.is_dir():
        return frozenset()
    names = set()
    for path in folder.rglob("*.py"):
        for given, fn in _DECORATED.findall(_read(path)):
            names.add(given or fn)
    return frozenset(names)


def _cached(dist: str, scan) -> frozenset[str]:
    """``scan()``, kept in symcost's cache per installed version of ``dist`` (reading a library's files costs about
    0.1 s; a cached answer should not pay it on every call)."""
    import hashlib
    from importlib import metadata

    from . import cache

    try:
        version = metadata.version(dist)
    except metadata.PackageNotFoundError:
        return frozenset()
    root = _package_dir(dist)
    key = hashlib.sha256(f"target names {dist} {version} {root}".encode()).hexdigest()[:32]
    hit = cache.load(key, "names")
    if type(hit) is list and all(type(n) is str for n in hit):
        return frozenset(hit)
    names = scan(root)
    if names:
        cache.store(key, {"names": sorted(names)})
    return names


@functools.lru_cache(maxsize=None)
def torchvision_names() -> frozenset[str]:
    """``torchvision.models.list_models()``, read from torchvision's source (empty when it cannot be read)."""
    return _cached("torchvision", lambda root: _registered(root / "models" if root else None))


@functools.lru_cache(maxsize=None)
def timm_names() -> frozenset[str]:
    """``timm.list_models()``, read from timm's source (empty when it cannot be read)."""
    return _cached("timm", lambda root: _registered(root / "models" if root else None))


_CONFIG_PAIR = re.compile(r"[\"']([\w.-]+)[\"']\s*[:,]\s*[\"'](\w+Config)[\"']")


@functools.lru_cache(maxsize=None)
def hf_config_classes() -> dict[str, str]:
    """Hugging Face model types -> their config class names (``CONFIG_MAPPING_NAMES``), from transformers'
    source; empty when it cannot be read."""
    root = _package_dir("transformers")
    if root is None:
        return {}
    auto = root / "models" / "auto"
    pairs = {}
    for name in ("auto_mappings.py", "configuration_auto.py"):
        for key, cls in _CONFIG_PAIR.findall(_read(auto / name)):
            pairs.setdefault(key, cls)
    return pairs


def _refuse(what: str, name: str, known, see: str):
    close = difflib.get_close_matches(name, list(known), n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else f"; see {see}"
    raise UsageError(f"unknown {what} {name!r}{hint}")


def check_target(spec: str) -> None:
    """``UsageError`` for a target that cannot load, found without importing torch or any model library."""
    kind, name = split_target(spec)
    if not kind or not name:
        raise UsageError(f"target {spec!r}: expected {TARGET_SYNTAX}")
    if kind == "hf":
        name = hf_head(name)[0]  # hf:llama:causal-lm: the model type, its head checked by hf_head
    if kind == "torchvision":
        known = torchvision_names()
        if len(known) > 20 and name not in known:  # fewer: the source is laid out otherwise, let torchvision say
            _refuse("torchvision model", name, sorted(known), "torchvision.models.list_models()")
    elif kind == "timm":
        known = timm_names()
        if len(known) > 100 and name not in known:
            _refuse("timm model", name, sorted(known), "timm.list_models()")
    elif kind == "hf":
        known = hf_config_classes()
        if len(known) > 50 and name not in known:
            close = difflib.get_close_matches(name, list(known), n=3)
            raise UsageError(f"unknown Hugging Face model type {name!r}"
                             + (f"; did you mean {', '.join(close)}?" if close else ""))
    elif kind.endswith(".py") or "/" in kind or Path(kind).suffix:
        _check_file(Path(kind), name)
    else:
        raise UsageError(f"target {spec!r}: unknown source {kind!r}; expected {TARGET_SYNTAX}")


def _identifiers(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            names.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.alias):
            names.add((node.asname or node.name).split(".")[0])
        elif isinstance(node, ast.Attribute):
            names.add(node.attr)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            names.add(node.value)
    return names


def _check_file(path: Path, attr: str) -> None:
    """The file exists, is Python, and mentions ``attr`` somewhere (a file that never spells the name cannot
    define it, unless it star-imports, which is left to the import)."""
    if not path.is_file():
        raise UsageError(f"target file {str(path)!r} not found")
    if path.suffix != ".py":
        raise UsageError(f"target file {str(path)!r} is not a .py file")
    try:
        tree = ast.parse(_read(path))
    except (SyntaxError, ValueError):
        return  # the import reports it, with its line
    if any(isinstance(n, ast.ImportFrom) and any(a.name == "*" for a in n.names) for n in ast.walk(tree)):
        return
    if attr not in _identifiers(tree):
        top = [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))
               and not n.name.startswith("_")]
        top += [t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)]
        close = difflib.get_close_matches(attr, top, n=3)
        raise UsageError(f"{str(path)!r} has no attribute {attr!r}" + (f"; did you mean {', '.join(close)}?"
                                                                        if close else ""))


def _class_fields(tree: ast.AST, cls: str) -> tuple[list[str], list[str]] | None:
    """(the class's own annotated fields with an int default, every name it mentions) or None when the class is
    not found or derives from another model's config (its fields live elsewhere)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == cls:
            bases = [b.id if isinstance(b, ast.Name) else getattr(b, "attr", "") for b in node.bases]
            if bases != ["PreTrainedConfig"] and bases != ["PretrainedConfig"]:
                return None
            ints = [n.target.id for n in node.body if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)
                    and isinstance(n.value, ast.Constant) and type(n.value.value) is int]
            return ints, sorted(_identifiers(node))
    return None


def check_config_fields(spec: str, fields) -> None:
    """``UsageError`` for an ``hf:`` ``--config`` field its config class never mentions, found by reading the
    config's source; says nothing where it cannot be sure (the derivation checks every field again)."""
    kind, _, name = spec.strip().rpartition(":")
    if kind != "hf":
        return
    cls = hf_config_classes().get(name)
    root = _package_dir("transformers")
    if cls is None or root is None:
        return
    module = name.replace("-", "_")
    path = root / "models" / module / f"configuration_{module}.py"
    base = _read(root / "configuration_utils.py")
    try:
        found = _class_fields(ast.parse(_read(path)), cls) if path.is_file() and base else None
        mentioned = _identifiers(ast.parse(base)) if found else set()
    except SyntaxError:
        return
    if not found:
        return
    ints, own = found
    for f in fields:
        if f not in own and f not in mentioned:
            close = difflib.get_close_matches(f, ints or own, n=3)
            raise UsageError(f"hf:{name} has no integer config field {f!r}"
                             + (f"; did you mean {', '.join(close)}?" if close else ""))


def check_args(args) -> None:
    """``check_target`` for each target a command was given (``args.target``, ``args.targets``), and
    ``check_config_fields`` for the fields of its ``--config``."""
    specs = [args.target] if isinstance(getattr(args, "target", None), str) else []
    specs += list(getattr(args, "targets", None) or [])
    config = getattr(args, "config", None)
    fields = [p.split("=", 1)[0].strip() for p in config.split(",") if p.strip()] if isinstance(config, str) else []
    for spec in specs:
        check_target(spec)
        check_config_fields(spec, fields)
