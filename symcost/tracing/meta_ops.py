"""Name the op behind a failure on meta tensors (shapes only, no values), so that the error blames the op and not
the input shape: detection models call ``nonzero``/``nms`` on computed scores, which no meta tensor can answer."""
from __future__ import annotations

import re
import traceback
from pathlib import Path

#: how torch words "this op cannot run on meta tensors"; group 1 names the op
_PATTERNS = (
    r"register_meta function for (torch\.\w+\(\))",                       # torch.nonzero() (boolean masks too)
    r"^(Tensor\.\w+\(\)) cannot be called on meta tensors",                # Tensor.item(), also bool(t), int(t)
    (r"^(\w+::\w+)(?: \(.*?\))?: (?:attempted to run this operator with Meta|You're trying to run this operator "
     r"with meta)"),                                                        # aten::masked_select, torchvision::nms
    r"Could not run '([\w:.]+)' with arguments from the 'Meta' backend",
    r"^cannot (\w+) a meta tensor",                                         # repeat_interleave
)
_COPY_OUT = (r"Cannot copy out of meta tensor", r"can't convert meta device type tensor to numpy")


def meta_op(error: BaseException) -> str | None:
    """``"torch.nonzero() (called at torchvision/ops/boxes.py:87 in batched_nms)"`` when ``error`` says an op
    cannot run on meta tensors, else None."""
    text = str(error).strip()
    op = next((m.group(1) for p in _PATTERNS if (m := re.search(p, text, flags=re.MULTILINE))), None)
    if op is None and any(re.search(p, text) for p in _COPY_OUT):
        op = "a copy of a tensor's values to Python (tolist, numpy)"
    if op is None:
        return None
    where = _caller(error)
    return f"{op}" + (f" (called at {where})" if where else "")


def _caller(error: BaseException) -> str:
    """The innermost frame of the model's own code: not torch's machinery, not symcost's recorder."""
    import torch

    package = Path(__file__).parent.parent  # symcost's own directory
    skip = [str(Path(torch.__file__).parent) + "/", str(package) + "/"]  # the slash keeps torchvision/ in
    for frame in reversed(traceback.extract_tb(error.__traceback__)):
        if not any(frame.filename.startswith(s) for s in skip):
            return f"{_short(frame.filename)}:{frame.lineno} in {frame.name}"
    return ""


def _short(path: str) -> str:
    """``.../site-packages/torchvision/ops/boxes.py`` -> ``torchvision/ops/boxes.py``."""
    parts = Path(path).parts
    if "site-packages" in parts:
        return "/".join(parts[len(parts) - parts[::-1].index("site-packages"):])
    return path
