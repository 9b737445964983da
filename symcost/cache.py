"""On-disk cache of model derivations, so a repeated call answers without importing torch.

Location: ``$SYMCOST_CACHE_DIR`` or the user cache dir (platformdirs).  The key covers
everything that could change a derivation: target, input spec, train/eval, the versions of
symcost, torch and torchvision, a hash of symcost's own source, and the source of a user's model file.  One derivation
serves every convention (conventions are applied afterwards).  Entries are pickles written
by symcost itself; a corrupt or unreadable entry is ignored and rebuilt.  While a user's op handler is registered
nothing is read or written.
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import sys
from importlib import metadata
from pathlib import Path


def cache_dir() -> Path:
    env = os.environ.get("SYMCOST_CACHE_DIR")
    if env:
        return Path(env)
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("symcost"))


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "none"


def code_hash() -> str:
    """symcost's own source: a derivation made by other code (a development checkout) is not reused."""
    h = hashlib.sha256()
    for path in sorted(Path(__file__).parent.rglob("*.py")):
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def cache_key(target: str, input_spec: str, train: bool, source_hash: str) -> str:
    from . import __version__

    parts = {"target": target, "input": input_spec, "train": train, "symcost": __version__, "code": code_hash(),
             "torch": _version("torch"), "torchvision": _version("torchvision"), "source": source_hash, "format": 1}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]


def _user_ops() -> bool:
    """A user's op handler (``register_op``, ``custom_mapping``) can change any derivation: no cache while one is
    active (read without importing torch: no handler can be registered before ``symcost.tracing`` is imported)."""
    handlers = sys.modules.get("symcost.tracing.handlers")
    return handlers is not None and handlers.user_handlers()


def load(key: str):
    if _user_ops():
        return None
    path = cache_dir() / f"{key}.pickle"
    try:
        with path.open("rb") as f:
            return pickle.load(f)
    except (OSError, EOFError, pickle.UnpicklingError, AttributeError, ImportError, TypeError):
        return None


def store(key: str, value) -> None:
    if _user_ops():
        return
    directory = cache_dir()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / f"{key}.{os.getpid()}.tmp"
        with tmp.open("wb") as f:
            pickle.dump(value, f, protocol=pickle.HIGHEST_PROTOCOL)
        tmp.replace(directory / f"{key}.pickle")
    except OSError:
        pass  # a cache that cannot be written is only slower
