"""Test-wide settings: the helpers' folder on the path, and the sampling of slow corpora.

A slow corpus (every torchvision classifier, every timm family, every layer's backward, ...) is a parametrized test
marked ``@pytest.mark.sampled(every=N)``: the default run (CI's, ``python -m pytest``) takes about one case in N and
deselects the rest.  A case is taken when the SHA-256 of its id (``resnet50``, ``conv2d-2x4x15x13``) is a multiple
of N: the same cases every run and on every xdist worker, so a failure reproduces; a case added to a corpus leaves
the others' choice alone; and the sample does not follow the corpus's order, so a product of parameters (models x
tools) does not lose a whole tool the way a fixed stride can (``test_sampling`` checks the peers' product).  A test
whose cases all miss keeps its first.  Every corpus still runs, each in its fixed sample;
``SYMCOST_FULL_TESTS=1 python -m pytest`` runs every case.
"""
import hashlib
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

#: set (to anything but "" or "0"): run every case of the sampled corpora
FULL = os.environ.get("SYMCOST_FULL_TESTS", "") not in ("", "0")


def pytest_configure(config):
    config.addinivalue_line("markers", "sampled(every): a slow corpus; the default run takes about one case in "
                                       "N, a fixed sample (SYMCOST_FULL_TESTS=1: all of them)")


def taken(case_id: str, every: int) -> bool:
    """Whether the default run takes the case ``case_id`` of a corpus sampled one in ``every``."""
    return int.from_bytes(hashlib.sha256(case_id.encode()).digest()[:8], "big") % every == 0


def _case_id(item) -> str:
    """The parametrization's id (``resnet50``), whatever xdist appends to the node id (``@group``)."""
    callspec = getattr(item, "callspec", None)
    return callspec.id if callspec is not None else item.nodeid.partition("[")[2].rpartition("]")[0]


def sample(items: list) -> tuple[list, list]:
    """(kept, deselected): of each sampled test function's cases, those ``taken`` (its first where none is)."""
    groups: dict = {}
    for item in items:
        mark = item.get_closest_marker("sampled")
        if mark is not None:
            every = mark.kwargs.get("every")
            if not isinstance(every, int) or every < 1:
                raise ValueError(f"{item.nodeid}: sampled(every=...) takes a positive integer, not {every!r}")
            groups.setdefault(item.nodeid.split("[", 1)[0], []).append((item, every))
    dropped = set()
    for cases in groups.values():
        keep = [item for item, every in cases if taken(_case_id(item), every)]
        keep = keep or [cases[0][0]]
        dropped.update(id(item) for item, _ in cases if item not in keep)
    return [i for i in items if id(i) not in dropped], [i for i in items if id(i) in dropped]


def pytest_collection_modifyitems(config, items):
    if FULL:
        return
    kept, dropped = sample(items)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


def pytest_report_header(config):
    return "slow corpora: every case (SYMCOST_FULL_TESTS)" if FULL else \
        "slow corpora: a fixed sample of each (SYMCOST_FULL_TESTS=1 runs every case)"
