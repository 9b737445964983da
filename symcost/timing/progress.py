"""A transient rich status line on stderr while slow measurements run (only on a terminal)."""
from __future__ import annotations

import sys


class Progress:
    """``update(text)`` shows what is being measured; ``done()`` (or leaving the ``with``) clears it.

    Disabled, or off a terminal, it prints nothing: logs and ``--json`` output stay clean."""

    def __init__(self, label: str, enabled: bool = True) -> None:
        self.label = label
        self._status = None
        if enabled and sys.stderr.isatty():
            from rich.console import Console

            self._status = Console(stderr=True).status(label)
            self._status.start()

    def update(self, text: str) -> None:
        if self._status is not None:
            self._status.update(f"{self.label}: {text}")

    def done(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.done()
