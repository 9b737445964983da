"""The derivation cache: never a stale number, never code run from an entry, a damaged entry rebuilt.

Expected numbers come from torch (``numel()`` of the model the file builds), never from symcost.
"""
from __future__ import annotations

import json
import os
import pickle
import sys

import pytest

from symcost.cli import main

NET = "from helper import WIDTH\nfrom torch import nn\ndef build():\n    return nn.Conv2d(3, WIDTH, 3)\n"


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("SYMCOST_CACHE_DIR", str(folder))
    return folder


@pytest.fixture
def traces(monkeypatch):
    """How many times a derivation was traced (not answered from the cache)."""
    import symcost.derive

    calls = []
    real = symcost.derive.trace_target

    def counted(*args, **kwargs):
        calls.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(symcost.derive, "trace_target", counted)
    return calls


def _fresh_imports():
    """What a new process sees: the helper modules imported by the last call are imported again."""
    for name in ("helper", "deep"):
        sys.modules.pop(name, None)


def _params(capsys, target: str, *extra) -> int:
    _fresh_imports()
    assert main(["model", target, "--input", "1x3x8x8", "--json", *extra]) == 0
    return json.loads(capsys.readouterr().out)["total"]["params"]


def _torch_params(folder) -> int:
    """The parameters of the model ``folder/net.py`` builds, counted by torch."""
    import importlib.util

    _fresh_imports()
    sys.path.insert(0, str(folder))
    try:
        spec = importlib.util.spec_from_file_location("net_under_test", folder / "net.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return sum(p.numel() for p in module.build().parameters())
    finally:
        sys.path.remove(str(folder))
        _fresh_imports()


def _write_net(folder, width: int):
    folder.mkdir(exist_ok=True)
    (folder / "net.py").write_text(NET)
    (folder / "helper.py").write_text(f"WIDTH = {width}\n")
    return f"{folder / 'net.py'}:build"


def test_a_changed_helper_module_changes_the_number(tmp_path, cache, capsys, traces):
    target = _write_net(tmp_path, 8)
    first = _params(capsys, target)
    assert first == _torch_params(tmp_path) == 3 * 8 * 9 + 8   # 8 filters of 3x3x3, 8 biases
    assert _params(capsys, target) == first and len(traces) == 1  # unchanged: answered from the cache
    (tmp_path / "helper.py").write_text("WIDTH = 64\n")
    assert _params(capsys, target) == _torch_params(tmp_path) == 3 * 64 * 9 + 64 and len(traces) == 2


def test_a_module_the_helper_imports_is_covered_too(tmp_path, cache, capsys, traces):
    target = _write_net(tmp_path, 8)
    (tmp_path / "helper.py").write_text("from deep import WIDTH\n")
    (tmp_path / "deep.py").write_text("WIDTH = 5\n")
    assert _params(capsys, target) == _torch_params(tmp_path) == 3 * 5 * 9 + 5
    (tmp_path / "deep.py").write_text("WIDTH = 7\n")
    assert _params(capsys, target) == _torch_params(tmp_path) == 3 * 7 * 9 + 7


def test_two_folders_with_the_same_file_and_different_helpers_share_no_entry(tmp_path, cache, capsys, traces):
    a, b = _write_net(tmp_path / "a", 8), _write_net(tmp_path / "b", 16)
    assert _params(capsys, a) == _torch_params(tmp_path / "a")
    assert _params(capsys, b) == _torch_params(tmp_path / "b") == 3 * 16 * 9 + 16
    assert _params(capsys, a) == _torch_params(tmp_path / "a") == 3 * 8 * 9 + 8
    assert len(traces) == 2  # a's entry answered the third call


FACTORY = "from helper import K\nfrom torch import nn\ndef build(width=4):\n    return nn.Conv2d(3, width, K)\n"


def test_a_changed_helper_module_changes_a_config_formula(tmp_path, cache, capsys):
    (tmp_path / "net.py").write_text(FACTORY)
    target = f"{tmp_path / 'net.py'}:build"

    def params_at_width_5() -> int:
        _fresh_imports()
        argv = ["model", target, "--input", "1x3x16x16", "--config", "width=w", "--at", "w=5", "--json"]
        assert main(argv) == 0
        return json.loads(capsys.readouterr().out)["evaluations"][0]["total"]["params"]

    import torch

    for k in (3, 5):   # the kernel size comes from the helper: Conv2d(3, 5, k) holds 5*3*k*k weights and 5 biases
        (tmp_path / "helper.py").write_text(f"K = {k}\n")
        assert params_at_width_5() == sum(p.numel() for p in torch.nn.Conv2d(3, 5, k).parameters()) == 15 * k * k + 5


def test_a_cached_call_checks_the_helpers_without_importing_torch(tmp_path, cache):
    import subprocess
    from pathlib import Path

    target = _write_net(tmp_path, 8)
    code = ("import json, sys; from symcost.cli import main; "
            f"main(['model', {target!r}, '--input', '1x3x8x8', '--json']); "
            "print('torch' in sys.modules, file=sys.stderr)")
    env = {**os.environ, "SYMCOST_CACHE_DIR": str(cache), "PYTHONPATH": str(Path(__file__).parents[1])}

    def run():
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)["total"]["params"], r.stderr.split()[-1] == "True"

    assert run() == (3 * 8 * 9 + 8, True)     # derived: torch imported
    assert run() == (3 * 8 * 9 + 8, False)    # cached: the helper's hash checked, torch never imported


def test_another_version_of_an_imported_library_makes_the_entry_stale(tmp_path, cache, capsys, traces, monkeypatch):
    import symcost.cache

    target = _write_net(tmp_path, 8)
    _params(capsys, target)
    entry = json.loads(next(cache.glob("*.json")).read_text())
    assert "package:numpy" in entry["sources"]           # imported by torch while the target was built
    assert _params(capsys, target) and len(traces) == 1
    real = symcost.cache._version
    monkeypatch.setattr(symcost.cache, "_version", lambda dist: "0.0.other" if dist == "numpy" else real(dist))
    assert _params(capsys, target) == _torch_params(tmp_path) and len(traces) == 2


def test_a_deleted_helper_makes_the_entry_stale(tmp_path, cache, capsys, traces):
    target = _write_net(tmp_path, 8)
    _params(capsys, target)
    (tmp_path / "helper.py").unlink()
    _fresh_imports()
    assert main(["model", target, "--input", "1x3x8x8"]) == 2  # rebuilt: the import fails, one line
    assert "importing" in capsys.readouterr().err


def test_no_cache_help_says_what_cannot_be_known(capsys):
    with pytest.raises(SystemExit):
        main(["model", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "environment variables" in help_text and "cannot be known" in help_text


# ---- an entry is data: nothing in it runs --------------------------------------------------------------------------

class _Planted:
    """Unpickling this writes a marker file: proof that a pickle ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _key(target: str) -> str:
    from symcost.derive import _key

    return _key(target, "1x3x8x8", False, None)


def _plant_old_entry(cache, key, payload):
    (cache / f"{key}.pickle").write_bytes(payload)       # where an earlier symcost kept its entries


def _plant_raw(cache, key, payload):
    (cache / f"{key}.json").write_bytes(payload)


def _plant_nested(cache, key, payload):
    # an outer entry holding the pickle as a field's text, as the old format held a second pickle
    fields = {name: {"pickle": payload.decode("latin-1")} for name in ("full", "summary")}
    (cache / f"{key}.json").write_text(json.dumps({"format": 2, "key": key, "sources": {}, "fields": fields}))


@pytest.mark.parametrize("plant", [_plant_old_entry, _plant_raw, _plant_nested])
def test_a_planted_pickle_never_runs(tmp_path, cache, capsys, traces, plant):
    target = _write_net(tmp_path, 8)
    marker = tmp_path / "ran"
    cache.mkdir(mode=0o700)
    payload = pickle.dumps(_Planted(marker))
    with pytest.raises(FileNotFoundError):     # the payload does run when unpickled (the marker's folder is gone)
        pickle.loads(pickle.dumps(_Planted(tmp_path / "no such folder" / "ran")))
    plant(cache, _key(target), payload)
    assert _params(capsys, target) == _torch_params(tmp_path)
    assert _params(capsys, target) == _torch_params(tmp_path) and len(traces) == 1   # rebuilt once, then read
    assert not marker.exists()


def test_a_folder_others_can_write_is_not_used(tmp_path, cache, capsys, traces):
    target = _write_net(tmp_path, 8)
    _params(capsys, target)                      # a private entry
    os.chmod(cache, 0o777)
    _fresh_imports()
    assert main(["model", target, "--input", "1x3x8x8", "--json"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(traces) == 2                      # not read: derived afresh
    assert len(err) == 1 and "writable by group or others" in err[0] and "not used" in err[0]


def test_the_folder_is_created_private_and_entries_are_the_users_alone(tmp_path, cache, capsys, traces):
    target = _write_net(tmp_path, 8)
    _params(capsys, target)
    assert cache.stat().st_mode & 0o777 == 0o700
    entries = list(cache.glob("*.json"))
    assert entries and all(e.stat().st_mode & 0o077 == 0 for e in entries)
    for e in entries:
        os.chmod(e, 0o666)                      # an entry others could have written: ignored
    _params(capsys, target)
    assert len(traces) == 2


# ---- a damaged entry of any kind is rebuilt --------------------------------------------------------------------------

def _truncate(text: str) -> str:
    return text[: len(text) // 2]


def _rewritten(name, change, digest: bool = True):
    """Field ``name`` of an entry changed by ``change`` (its decoded JSON -> new JSON); with ``digest`` the entry's
    digest is made to match (an entry crafted to pass that check, so that the field's own checks must refuse it)."""
    import hashlib

    def damage(text: str) -> str:
        entry = json.loads(text)
        if name in entry["fields"]:
            field = json.dumps(change(json.loads(entry["fields"][name])))
            entry["fields"][name] = field
            if digest:
                entry["digests"][name] = hashlib.sha256(field.encode()).hexdigest()
        return json.dumps(entry)
    return damage


def _field(name, value, digest: bool = True):
    return _rewritten(name, lambda old: value, digest)


def _full_field(field, value):
    def change(full):
        full["fields"][field] = value
        return full
    return _rewritten("full", change)


def _edited(text: str) -> str:
    """A number in the derivation changed after it was written, the digest left as it was."""
    return _rewritten("full", lambda full: json.loads(json.dumps(full).replace('["int", 8]', '["int", 9]')),
                      digest=False)(text)


DAMAGE = {
    "truncated": _truncate,
    "junk bytes": lambda text: "\x80\x09\x00junk",
    "empty": lambda text: "",
    "a JSON list": lambda text: "[1, 2, 3]",
    "no fields": lambda text: json.dumps({"format": 2}),
    "full is 42": _field("full", 42),
    "full is a string": _field("full", "junk"),
    "a field edited after writing": _edited,
    "a field that is not text": lambda text: json.dumps({**json.loads(text), "fields": {"full": 42, "summary": []}}),
    "summary is a string": _field("summary", "junk"),
    "summary is a list": _field("summary", [1, 2]),
    "rows is a number": _full_field("rows", 5),
    "rows hold a string": _full_field("rows", ["row"]),
    # an expression node naming a function that would evaluate a string, were nodes looked up by name
    "an unknown expression node": _full_field("input_shape", {"tuple": [{"sympy": ["sympify", "__import__('os')"]}]}),
    "an unknown object": _field("full", {"object": "Popen", "fields": {}}),
    "NaN": lambda text: text.replace('"format":2', '"format":NaN'),
    "deep nesting": lambda text: "[" * 100000 + "]" * 100000,
    "a source that never ends": lambda text: text.replace('"sources":{', '"sources":{"/dev/zero":"0",', 1),
    "sources of the wrong type": lambda text: text.replace('"sources":{', '"sources":{"x":5,', 1),
}


def _swept_params(capsys, target: str) -> int:
    """The cached sweep's path (the plain summary of a symbolic derivation)."""
    _fresh_imports()
    assert main(["model", target, "--input", "1x3xHxH", "--at", "H=8", "--json"]) == 0
    return json.loads(capsys.readouterr().out)["evaluations"][0]["total"]["params"]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """A file target and its two entries (a concrete and a symbolic derivation), made once for the damage tests."""
    import contextlib
    import io

    folder = tmp_path_factory.mktemp("pristine")
    target = _write_net(folder, 8)
    cache = folder / "cache"
    old = os.environ.get("SYMCOST_CACHE_DIR")
    os.environ["SYMCOST_CACHE_DIR"] = str(cache)
    try:
        for argv in (["--input", "1x3x8x8"], ["--input", "1x3xHxH", "--at", "H=8"]):
            _fresh_imports()
            with contextlib.redirect_stdout(io.StringIO()):
                assert main(["model", target, *argv, "--json"]) == 0
    finally:
        if old is None:
            os.environ.pop("SYMCOST_CACHE_DIR")
        else:
            os.environ["SYMCOST_CACHE_DIR"] = old
    assert len(list(cache.glob("*.json"))) == 2
    return target, cache, _torch_params(folder)


@pytest.mark.sampled(every=3)  # a slow corpus: the default run takes a fixed sample (conftest.py)
@pytest.mark.parametrize("kind", DAMAGE)
def test_a_damaged_entry_is_rebuilt(cache, capsys, traces, kind, pristine):
    import shutil

    target, entries, expected = pristine
    shutil.copytree(entries, cache)              # modes kept: a private folder, entries of the user's own
    for entry in cache.glob("*.json"):
        entry.write_text(DAMAGE[kind](entry.read_text()))
    assert _params(capsys, target) == expected and _swept_params(capsys, target) == expected  # exit 0, right
    rebuilt = len(traces)
    assert rebuilt >= 1          # each damage is in a part one of the two calls reads (the sweep reads the summary)
    assert _params(capsys, target) == expected and _swept_params(capsys, target) == expected
    assert len(traces) == rebuilt                                  # the rebuilt entries are used again
