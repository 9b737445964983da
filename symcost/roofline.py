"""The former home of the time model, kept so existing imports work: everything now lives in ``symcost.timing``.

``PRESETS`` here are the plain datasheet rooflines the seed-001 page (derivations/seed001_batchnorm_time.py) is
derived on; ``symcost.timing.PRESETS`` holds what ``--device NAME`` gives, including the fitted ``h100-sxm``.
"""
from .timing import *  # noqa: F401,F403
from .timing import DATASHEET_PRESETS as PRESETS  # noqa: F401
from .timing.calibrate import calibrate  # noqa: F401
from .timing.measure import (  # noqa: F401
    STATS,
    Measurement,
    cpu_name,
    keep_freed_memory,
    measure_forward,
    measure_layers,
    page_faults,
    regime,
    regime_text,
    threads_text,
)
from .progress import Progress  # noqa: F401
