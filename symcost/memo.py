"""A memo shared by nested blocks: the outermost ``with`` makes it, inner ones use it, and it goes when that block
ends (layers' costs: ``layers.base.cost_memo``; meta kernels' results: ``tracing.meta_kernels.meta_memo``)."""
from __future__ import annotations

from contextlib import contextmanager


@contextmanager
def shared_memo(stack: list):
    """``stack[-1]`` is the memo inside the block (a new dict unless an outer block made one)."""
    if stack:
        yield
        return
    stack.append({})
    try:
        yield
    finally:
        stack.pop()
