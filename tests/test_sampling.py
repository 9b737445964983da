"""The sampling of slow corpora (``conftest.py``): deterministic, never empty, off with SYMCOST_FULL_TESTS."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import sample, taken

ROOT = Path(__file__).resolve().parent.parent


class _Item:
    def __init__(self, nodeid, every):
        self.nodeid, self.every = nodeid, every

    def get_closest_marker(self, name):
        return None if self.every is None else pytest.mark.sampled(every=self.every).mark


def test_a_sample_is_the_same_every_time_and_never_empties_a_corpus():
    models, tools = [f"model{i}" for i in range(6)], [f"tool{j}" for j in range(5)]
    items = [_Item(f"t.py::test_peer[{m}-{t}]", 3) for m in models for t in tools] + [_Item("t.py::test_other", None)]
    kept, dropped = sample(items)
    assert len(kept) + len(dropped) == len(items) and "t.py::test_other" in [i.nodeid for i in kept]
    assert [i.nodeid for i in kept] == [i.nodeid for i in sample(items)[0]]          # deterministic
    chosen = [i.nodeid for i in kept if "[" in i.nodeid]
    assert 0 < len(chosen) < len(items) - 1
    # the sample of the peers' product (models x tools) still tries every tool and every model
    from test_peers import MODELS, TOOLS

    peers = [f"{m}-{t}" for m in MODELS for t in TOOLS if taken(f"{m}-{t}", 2)]
    assert all(any(p.endswith(f"-{t}") for p in peers) for t in TOOLS)
    assert all(any(p.startswith(f"{m}-") for p in peers) for m in MODELS)
    # a corpus whose cases all miss keeps its first
    lonely = [_Item(f"u.py::test_x[{c}]", 10**9) for c in ("a", "b")]
    assert [i.nodeid for i in sample(lonely)[0]] == ["u.py::test_x[a]"]
    with pytest.raises(ValueError, match="positive integer"):
        sample([_Item("v.py::test_y[a]", 0)])
    assert taken("anything", 1)


def test_the_default_run_samples_and_the_full_run_does_not(tmp_path):
    shutil.copy(Path(__file__).parent / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "test_corpus.py").write_text(
        "import pytest\n\n\n@pytest.mark.sampled(every=3)\n@pytest.mark.parametrize('n', range(30))\n"
        "def test_case(n):\n    pass\n\n\ndef test_alone():\n    pass\n")

    def collected(env):
        r = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "-n", "0",
                            "-p", "no:randomly", str(tmp_path)], capture_output=True, text=True, cwd=tmp_path,
                           env={**os.environ, **env})
        assert r.returncode == 0, r.stdout + r.stderr
        return [line.split("::")[-1] for line in r.stdout.splitlines() if "::" in line]

    full, default = collected({"SYMCOST_FULL_TESTS": "1"}), collected({"SYMCOST_FULL_TESTS": ""})
    assert full == [f"test_case[{n}]" for n in range(30)] + ["test_alone"]
    assert default == [f"test_case[{n}]" for n in range(30) if taken(str(n), 3)] + ["test_alone"]
    assert 3 <= len(default) - 1 <= 20    # about one in three
