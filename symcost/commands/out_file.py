"""The file an ``--out`` option names: refused in one line when it is a folder, and a failed write reported as
the system's reason, never as an internal error."""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import UsageError


def refuse_folder(text: str, example: str, option: str = "--out") -> Path:
    """``text`` as a path, refused when it names a folder (an existing one, or one written with a trailing slash);
    ``example`` is a file name the message suggests in it."""
    out = Path(text)
    if not text.strip() or out.is_dir() or text.endswith(("/", os.sep)):
        inside = os.path.join(text.rstrip("/" + os.sep) or (os.sep if text.strip() else "."), example)
        raise UsageError(f"{option} {text!r} is a folder, not a file: give a file name, e.g. {option} {inside}")
    return out


def write_text(out: Path, text: str) -> None:
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as e:
        raise UsageError(f"cannot write {out}: {e.strerror or e}") from None
