"""``python -m derivations``: regenerate derivations/out/*.md (``--check``: only compare)."""
from .build import main

raise SystemExit(main())
