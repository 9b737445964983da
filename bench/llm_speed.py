"""LLM formulas, cold and whole-process: a training step in 7 config fields, a decode step in d and n, a cached
call, each beside FlopCounterMode on the same configurations.

    python bench/llm_speed.py                 # every case once; a Markdown table for bench/RESULTS.md
    python bench/llm_speed.py --only decode cached --repeats 2
    python bench/llm_speed.py --tree ../old-checkout --no-counter    # another checkout's symcost (before/after)

Every symcost command runs as its own process (`python -m symcost.cli …`), imports included, with a fresh empty
derivation cache (``SYMCOST_CACHE_DIR``) unless the case is a cached call (then the same command runs once first,
untimed, to fill it).  FlopCounterMode's row times a process that imports torch and transformers, builds the model
on meta tensors at each named configuration and counts one step there: one number per configuration, where symcost
gives the formula for all of them.  Wall time depends on the machine's load (the 1-minute load average is printed
beside each row); CPU seconds (user + system of the child) much less.  Never run in tests.
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time

LLAMA7 = ("hidden_size=d,num_hidden_layers=n,intermediate_size=f,num_attention_heads=h,num_key_value_heads=k,"
          "vocab_size=V,head_dim=e")
GPT2 = "n_embd=d,n_layer=n,n_head=h,vocab_size=V"

#: name -> (symcost arguments, target seconds or None, whether the call is a cached one)
CASES = {
    "train-llama": (["model", "hf:llama", "--input", "1xL", "--backward", "--config", LLAMA7], 20, False),
    "train-gpt2": (["model", "hf:gpt2", "--input", "1xL", "--backward", "--config", GPT2], 20, False),
    "decode": (["model", "hf:llama", "--input", "1x1", "--past", "T", "--config",
                "hidden_size=d,num_hidden_layers=n"], 10, False),
    "cached": (["model", "hf:llama", "--input", "1x1", "--past", "T", "--config",
                "hidden_size=d,num_hidden_layers=n"], 1, True),
    "cached-mfu": (["mfu", "hf:gpt2", "--input", "1x8", "--step-time", "0.1", "--device", "h100-sxm"], 1, True),
}

#: FlopCounterMode beside each derivation: the published configurations it is checked at (one process each)
LLAMA_CONFIGS = [dict(hidden_size=4096, num_hidden_layers=32, intermediate_size=11008, num_attention_heads=32,
                      num_key_value_heads=32, vocab_size=32000, head_dim=128),     # Llama-2-7B
                 dict(hidden_size=4096, num_hidden_layers=32, intermediate_size=14336, num_attention_heads=32,
                      num_key_value_heads=8, vocab_size=128256, head_dim=128)]     # Llama-3-8B
GPT2_CONFIGS = [dict(n_embd=768, n_layer=12, n_head=12, vocab_size=50257),          # GPT-2 small
                dict(n_embd=1024, n_layer=24, n_head=16, vocab_size=50257)]         # GPT-2 medium
FLOP_COUNTER = {
    "train-llama": ("llama", LLAMA_CONFIGS, "train", 2048),
    "train-gpt2": ("gpt2", GPT2_CONFIGS, "train", 1024),
    "decode": ("llama", [{"hidden_size": 4096, "num_hidden_layers": 32}], "decode", 2048),
}

_COUNTER = r"""
import sys, json
import torch
from torch.utils.flop_counter import FlopCounterMode
from transformers import AutoConfig, AutoModel, DynamicCache
model_type, configs, mode, size = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], int(sys.argv[4])
for values in configs:
    with torch.device("meta"):
        model = AutoModel.from_config(AutoConfig.for_model(model_type, **values))
    if mode == "train":
        ids = torch.zeros(1, size, dtype=torch.long, device="meta")
        with FlopCounterMode(display=False) as c:
            out = model(ids).last_hidden_state
            out.backward(torch.ones_like(out))
    else:   # one decode step over `size` cached tokens
        cfg = model.config
        cache = DynamicCache(config=cfg)
        kv, dim = cfg.num_key_value_heads, cfg.hidden_size // cfg.num_attention_heads
        for i in range(cfg.num_hidden_layers):
            z = torch.zeros(1, kv, size, dim, device="meta")
            cache.update(z, z, i)
        with torch.no_grad(), FlopCounterMode(display=False) as c:
            model(torch.zeros(1, 1, dtype=torch.long, device="meta"), past_key_values=cache, use_cache=True)
    print(c.get_total_flops())
"""


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def timed(cmd: list[str], env: dict, cwd: str | None = None) -> tuple[float, float, subprocess.CompletedProcess,
                                                                      float]:
    load = os.getloadavg()[0]
    wall, cpu = time.perf_counter(), _children_cpu()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd)
    if r.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{r.stderr[-2000:]}")
    return time.perf_counter() - wall, _children_cpu() - cpu, r, load


def symcost_case(name: str, tree: str | None = None) -> str:
    args, target, cached = CASES[name]
    with tempfile.TemporaryDirectory() as folder:
        os.chmod(folder, 0o700)
        env = {**os.environ, "SYMCOST_CACHE_DIR": folder}
        if tree:  # (`python -m` puts the working folder first on the path: run there too)
            env["PYTHONPATH"] = os.path.abspath(tree)
        cmd = [sys.executable, "-m", "symcost.cli", *args]
        if cached:
            subprocess.run(cmd, capture_output=True, env=env, check=True, cwd=tree)
            # the cached call must not import torch or transformers: checked in the same process
            cmd = [sys.executable, "-c", "import sys; from symcost.cli import main; main(sys.argv[1:]); "
                   "assert 'torch' not in sys.modules and 'transformers' not in sys.modules", *args]
        wall, cpu, r, load = timed(cmd, env, tree)
    met = "**met**" if wall <= target else "not met"
    shown = " ".join(a if "," not in a else f"{a.split(',')[0]},… ({a.count(',') + 1} fields)" for a in args)
    return f"| `symcost {shown}`{' (cached)' if cached else ''} | {wall:.1f} s | {cpu:.1f} s | ≤ {target} s: {met} | {load:.1f} |"


def counter_case(name: str) -> str:
    import json

    model_type, configs, mode, size = FLOP_COUNTER[name]
    cmd = [sys.executable, "-c", _COUNTER, model_type, json.dumps(configs), mode, str(size)]
    wall, cpu, r, load = timed(cmd, dict(os.environ))
    what = "a training step" if mode == "train" else f"a decode step over {size} cached tokens"
    flops = ", ".join(f"{int(x):,}" for x in r.stdout.split())
    return (f"| FlopCounterMode, {what} of hf:{model_type} at {len(configs)} configuration(s), L = {size} "
            f"({flops} FLOPs) | {wall:.1f} s | {cpu:.1f} s | | {load:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", choices=list(CASES), default=list(CASES))
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--no-counter", action="store_true", help="leave out FlopCounterMode's rows")
    parser.add_argument("--tree", help="the symcost of another checkout (its root folder)")
    args = parser.parse_args()
    print("| command (cold, whole process) | wall | CPU | target | load |")
    print("|---|---|---|---|---|")
    for name in args.only:
        for _ in range(args.repeats):
            print(symcost_case(name, args.tree), flush=True)
        if name in FLOP_COUNTER and not args.no_counter:
            print(counter_case(name), flush=True)


if __name__ == "__main__":
    main()
