"""One spinner for every slow command: rich, on stderr, and only on a terminal (pipes, files and --json stay clean)."""
from __future__ import annotations

import sys
from contextlib import contextmanager


class _Quiet:
    def update(self, text: str) -> None:
        """Nothing to show when not on a terminal."""


@contextmanager
def status(text: str, enabled: bool = True):
    """``with status("tracing resnet50"):`` a transient spinner while the block runs; ``.update(text)`` changes it."""
    if not (enabled and sys.stderr.isatty()):
        yield _Quiet()
        return
    from rich.console import Console

    with Console(stderr=True).status(text) as spinner:
        yield spinner


@contextmanager
def steps(text: str, total: int, enabled: bool = True):
    """``with steps("tracing each size", n) as advance:`` a transient bar on stderr; call ``advance()`` per step."""
    if not (enabled and sys.stderr.isatty()):
        yield lambda: None
        return
    from rich.console import Console
    from rich.progress import Progress

    with Progress(console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(text, total=total)
        yield lambda: bar.advance(task)
