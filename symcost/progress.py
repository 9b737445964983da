"""One spinner for every slow command: rich, on stderr, and only on a terminal (pipes, files and --json stay clean).

``status`` and ``steps`` for a block of code, ``Progress`` for a status line kept across calls (the time model's
measurements).  ``symcost COMMAND --quiet`` turns them all off for the whole run (``set_quiet``)."""
from __future__ import annotations

import sys
from contextlib import contextmanager

_quiet = False


def set_quiet(quiet: bool) -> None:
    """``--quiet``: no spinner or bar for the rest of this process, whatever a caller asks for."""
    global _quiet
    _quiet = bool(quiet)


def showing(enabled: bool = True) -> bool:
    """Whether progress is drawn: asked for, not ``--quiet``, and stderr is a terminal."""
    return enabled and not _quiet and sys.stderr.isatty()


def add_quiet_option(parser) -> None:
    """``-q/--quiet`` on a command that shows progress (``symcost.cli`` passes it to ``set_quiet``)."""
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="no progress spinner on stderr (it is off anyway when stderr is not a terminal)")


class _Quiet:
    def update(self, text: str) -> None:
        """Nothing to show when not on a terminal."""


@contextmanager
def status(text: str, enabled: bool = True):
    """``with status("tracing resnet50"):`` a transient spinner while the block runs; ``.update(text)`` changes it."""
    if not showing(enabled):
        yield _Quiet()
        return
    from rich.console import Console

    with Console(stderr=True).status(text) as spinner:
        yield spinner


@contextmanager
def steps(text: str, total: int, enabled: bool = True):
    """``with steps("tracing each size", n) as advance:`` a transient bar on stderr; call ``advance()`` per step."""
    if not showing(enabled):
        yield lambda: None
        return
    from rich.console import Console
    from rich.progress import Progress

    with Progress(console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(text, total=total)
        yield lambda: bar.advance(task)


class Progress:
    """``update(text)`` shows what is being measured; ``done()`` (or leaving the ``with``) clears it.

    Disabled, ``--quiet`` or off a terminal, it prints nothing: logs and ``--json`` output stay clean."""

    def __init__(self, label: str, enabled: bool = True) -> None:
        self.label = label
        self._status = None
        if showing(enabled):
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
