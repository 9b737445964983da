"""The one spelling of a symbol name a user may give (a size in ``--input``, ``--past``, a config symbol): checked
here, before sympy ever sees it, so that no string is evaluated."""
from __future__ import annotations

import re

#: a letter, then up to 30 letters, digits and underscores
SYMBOL_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,30}")


def is_symbol_name(text: str) -> bool:
    return SYMBOL_NAME.fullmatch(text) is not None
