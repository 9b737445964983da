"""Benchmark: how fast a mistyped target or config field is answered (issue: a typo took 3-22 s, importing torch
first).  Each command runs as a user runs it, in a fresh process, and must exit 2 with one line and without torch
imported; the table gives the median wall time beside `python -c "import torch"`.

Run on demand: `python bench/typo_answers.py`.
"""
from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time

TYPOS = [
    ["model", "resnet50", "--input", "1x3x224x224"],                          # no source prefix
    ["model", "torchvision:resnet5O", "--input", "1x3x224x224"],              # a misspelt torchvision name
    ["model", "timm:resnet5Od", "--input", "1x3x224x224"],                    # a misspelt timm name
    ["model", "hf:gtp2", "--input", "1xL"],                                   # a misspelt Hugging Face type
    ["model", "hf:gpt2", "--input", "1xL", "--config", "n_embed=d"],          # a misspelt config field
    ["compare", "torchvision:resnet5O", "--input", "1x3x224x224"],
    ["fold", "torchvision:resnet5O", "--input", "1x3x224x224"],
]

PROBE = ("import sys\nfrom symcost.cli import main\nrc = main(sys.argv[1:])\n"
         "assert 'torch' not in sys.modules, 'torch was imported'\nsys.exit(rc)\n")


def wall(cmd: list[str], env: dict, repeats: int) -> tuple[float, subprocess.CompletedProcess]:
    times, r = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, text=True, env=env)
        times.append(time.perf_counter() - t)
    return statistics.median(times), r


def main(repeats: int = 3) -> None:
    import os

    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "SYMCOST_CACHE_DIR": cache}
        torch_s, _ = wall([sys.executable, "-c", "import torch"], env, repeats)
        for args in TYPOS:
            seconds, r = wall([sys.executable, "-c", PROBE, *args], env, repeats)
            ok = r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
            print(f"{seconds:6.2f} s  {'ok ' if ok else 'BAD'}  symcost {' '.join(args)}")
            if not ok:
                print(f"         exit {r.returncode}: {r.stderr.strip()[-300:]}")
        print(f"{torch_s:6.2f} s  python -c 'import torch' (for scale)")


if __name__ == "__main__":
    main()
