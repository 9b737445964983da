"""Test-wide settings: the helpers' folder on the path, and the sampling of slow corpora.

A slow corpus (every torchvision classifier, every timm family, every layer's backward, ...) is a parametrized test
marked ``@pytest.mark.sampled(every=N)``: the default run (CI's, ``python -m pytest``) takes every N-th of its cases
in collection order -- the first always, the same cases every run, so a failure reproduces -- and deselects the rest.
Every corpus still runs, each in a fixed sample; ``SYMCOST_FULL_TESTS=1 python -m pytest`` runs every case.
"""
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

#: set (to anything but "" or "0"): run every case of the sampled corpora
FULL = os.environ.get("SYMCOST_FULL_TESTS", "") not in ("", "0")


def pytest_configure(config):
    config.addinivalue_line("markers", "sampled(every): a slow corpus; the default run takes every N-th case "
                                       "(SYMCOST_FULL_TESTS=1: all of them)")


def sample(items: list) -> tuple[list, list]:
    """(kept, deselected): of each sampled test function's cases, every N-th in collection order."""
    seen: dict = {}
    kept, dropped = [], []
    for item in items:
        mark = item.get_closest_marker("sampled")
        if mark is None:
            kept.append(item)
            continue
        every = mark.kwargs["every"]
        if not isinstance(every, int) or every < 1:
            raise ValueError(f"{item.nodeid}: sampled(every=...) takes a positive integer, not {every!r}")
        function = item.nodeid.split("[", 1)[0]
        k = seen[function] = seen.get(function, -1) + 1
        (kept if k % every == 0 else dropped).append(item)
    return kept, dropped


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
