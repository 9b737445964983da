"""On-disk cache of model derivations, so a repeated call answers without importing torch.

Location: ``$SYMCOST_CACHE_DIR`` or the user cache dir (platformdirs).

What an entry depends on.  The key covers the target, its input and the derivation's options, the versions of
symcost, torch, torchvision, timm, transformers and sympy, a hash of symcost's own source, and for a
``file.py:callable`` target the file's resolved path and contents.  The entry also lists every source file of the
user's code that was imported while the target was built and traced (its helpers, a package it imports; anything
outside the standard library, site-packages and symcost) with a hash of each, and the version of each installed
distribution a module was imported from: a read checks them (no torch needed), and an entry whose files or
packages changed is stale (ignored and rebuilt).  What a factory reads otherwise (environment variables, data
files, the clock) cannot be known: ``--no-cache`` derives afresh.  One derivation serves every convention
(conventions are applied afterwards).  While a user's op handler is registered nothing is read or written.

Safety.  Entries are JSON (``symcost.cache_format``): reading one builds plain data, sympy expressions and
symcost's result types, and never runs code.  The folder is made private (0700); a folder or an entry that is not
the user's own, or that others may write, is not used (a one-line warning for a folder), so nobody else can plant
numbers.  Each field is JSON text of its own with its sha256, checked before it is decoded.  A damaged entry of
any kind (truncated, junk, a field changed after it was written, wrong types or structure) is ignored and rebuilt.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
from importlib import metadata
from pathlib import Path

_FORMAT = 2


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
    from .version import __version__

    parts = {"target": target, "input": input_spec, "train": train, "symcost": __version__, "code": code_hash(),
             "source": source_hash, "format": _FORMAT,
             **{dist: _version(dist) for dist in ("torch", "torchvision", "timm", "transformers", "sympy")}}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]


def _user_ops() -> bool:
    """A user's op handler (``register_op``, ``custom_mapping``) can change any derivation: no cache while one is
    active (read without importing torch: no handler can be registered before ``symcost.tracing`` is imported)."""
    handlers = sys.modules.get("symcost.tracing.handlers")
    return handlers is not None and handlers.user_handlers()


# ---- the user's source files a derivation read -------------------------------------------------------------------

def _folders() -> tuple[list[Path], list[Path]]:
    """(site-packages folders, the standard library's folders and symcost's own)."""
    import site
    import sysconfig

    paths = sysconfig.get_paths()
    sites = {paths["purelib"], paths["platlib"], *getattr(site, "getsitepackages", lambda: [])(),
             getattr(site, "getusersitepackages", lambda: "")() or ""}
    others = {paths["stdlib"], paths["platstdlib"], paths["scripts"]}
    resolved = lambda folders: [Path(f).resolve() for f in folders if f]  # noqa: E731
    return resolved(sites), resolved(others) + [Path(__file__).parent.resolve()]


def _file_hash(path: str) -> str | None:
    """sha256 of a regular file's bytes; None for anything else (gone, a device, a folder)."""
    import stat

    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # not opened at all: a FIFO would block
            return None
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    except (OSError, ValueError):
        return None


_PACKAGE = "package:"


def _fingerprint(source: str) -> str | None:
    """What ``user_sources`` recorded for ``source``, as it is now: a file's hash or an installed package's
    version."""
    if source.startswith(_PACKAGE):
        return _version(source[len(_PACKAGE):])
    return _file_hash(source)


def user_sources() -> dict[str, str]:
    """What a file target's derivation could have read, taken after it is built and traced: resolved path ->
    sha256 of every imported module file outside the standard library, site-packages and symcost (the target file,
    the helpers it imports: the user's code), and ``package:NAME`` -> version of every installed distribution
    (site-packages) a module was imported from (a library the model uses, upgraded, changes the entry's key)."""
    sites, others = _folders()
    out, tops = {}, set()
    for module in list(sys.modules.values()):
        file = getattr(module, "__file__", None)
        if not isinstance(file, str):
            continue
        path = Path(file).resolve()
        site = next((s for s in sites if path.is_relative_to(s)), None)
        if site is not None:  # checked first: site-packages may lie inside the standard library's folder
            tops.add(path.relative_to(site).parts[0].split(".")[0])  # numpy/…, six.py, _cffi_backend.cpython-….so
            continue
        if any(path.is_relative_to(folder) for folder in others):
            continue
        digest = _file_hash(str(path))
        if digest is not None:
            out[str(path)] = digest
    if tops:
        owners = metadata.packages_distributions()
        for dist in sorted({d for top in tops for d in owners.get(top, ())}):
            out[f"{_PACKAGE}{dist}"] = _version(dist)
    return dict(sorted(out.items()))


# ---- a private folder ----------------------------------------------------------------------------------------------

_warned: set[str] = set()


def _unsafe(st) -> str | None:
    """Why a file or folder with this stat may hold someone else's data: not ours, or writable by others."""
    if not hasattr(os, "getuid"):
        return None
    if st.st_uid != os.getuid():
        return "is not owned by you"
    if st.st_mode & 0o022:
        return "is writable by group or others"
    return None


def _folder(create: bool) -> Path | None:
    """The cache folder when it is safe to use (made private if it does not exist), else None."""
    directory = cache_dir()
    try:
        if create and not directory.exists():
            directory.mkdir(parents=True, mode=0o700)
        st = directory.stat()
    except OSError:
        return None
    why = _unsafe(st)
    if why:
        if str(directory) not in _warned:
            _warned.add(str(directory))
            print(f"symcost: warning: the cache folder {directory} {why}: not used (set SYMCOST_CACHE_DIR to a "
                  "private folder)", file=sys.stderr)
        return None
    return directory


# ---- entries -------------------------------------------------------------------------------------------------------

def load(key: str, field: str):
    """Field ``field`` of the entry ``key``, or None: no entry, an unsafe or damaged one, one whose user source files
    changed since it was written."""
    from .cache_format import Damaged, loads

    if _user_ops():
        return None
    directory = _folder(create=False)
    if directory is None:
        return None
    try:
        with (directory / f"{key}.json").open("rb") as f:
            if _unsafe(os.fstat(f.fileno())):
                return None
            entry = json.loads(f.read())
        if not (isinstance(entry, dict) and entry.get("format") == _FORMAT and entry.get("key") == key
                and isinstance(entry.get("sources"), dict) and isinstance(entry.get("fields"), dict)
                and isinstance(entry.get("digests"), dict)):
            return None
        if any(not isinstance(p, str) or _fingerprint(p) != h for p, h in entry["sources"].items()):
            return None  # stale: a file the derivation read has changed (or is gone), a package another version
        text = entry["fields"].get(field)
        if text is None:
            return None
        if not isinstance(text, str) or entry["digests"].get(field) != _digest(text):
            raise Damaged(f"field {field!r} is not what was written")  # changed after writing: rebuilt
        return loads(text)
    except (OSError, ValueError, RecursionError, Damaged):
        discard(key)
        return None


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def discard(key: str) -> None:
    """Remove the entry ``key`` (damaged: the next derivation writes it afresh)."""
    directory = _folder(create=False)
    if directory is not None:
        try:
            (directory / f"{key}.json").unlink()
        except OSError:
            pass


def store(key: str, fields: dict, sources: dict | None = None) -> None:
    """Write the entry ``key``: ``fields`` (name -> value in ``cache_format``) and ``sources`` (``user_sources()``
    of a file target: checked on every read).  A value the format cannot hold, or a folder that cannot be written,
    leaves no entry: only slower."""
    from .cache_format import Unencodable, dumps

    if _user_ops():
        return
    try:  # each field is JSON text of its own, with its digest: read alone, and checked before it is decoded
        texts = {name: dumps(value) for name, value in fields.items()}
        entry = {"format": _FORMAT, "key": key, "sources": sources or {}, "fields": texts,
                 "digests": {name: _digest(t) for name, t in texts.items()}}
        text = json.dumps(entry, separators=(",", ":"), allow_nan=False)
    except (Unencodable, ValueError, RecursionError):
        return
    directory = _folder(create=True)
    if directory is None:
        return
    tmp = directory / f"{key}.{os.getpid()}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, directory / f"{key}.json")
    except OSError:
        try:
            tmp.unlink()
        except OSError:
            pass  # a cache that cannot be written is only slower
