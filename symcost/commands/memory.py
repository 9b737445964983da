"""`symcost memory TARGET --input SHAPE`: the bytes a forward or a training step holds, as exact formulas."""
from __future__ import annotations

import json

from ..parse import InputSpec, UsageError, size_arg
from ..progress import add_quiet_option
from ..render import count, pairs, si, table

_HEADINGS = {"params": "parameters", "buffers": "buffers", "inputs": "inputs", "kv_cache": "KV cache",
             "gradients": "gradients",
             "optimizer_states": "optimizer states", "master_weights": "master weights",
             "saved_activations": "saved activations", "peak": "peak"}


#: peak candidates listed in text output (--json has all)
_SHOWN = 12


def run_memory(args) -> int:
    from ..footprint import memory
    from ..sweep import parse_assignments

    spec = InputSpec.of(args.input)   # parsed once, here
    past = None if args.past is None else size_arg(args.past, "--past")
    names = sorted(set(spec.symbols) | ({past} if isinstance(past, str) else set()))
    inputs = list(names)
    if args.config:
        from ..hyper.space import parse_config

        if args.layers:
            raise UsageError("--layers names modules of one configuration: derive it without --config")
        names = sorted(set(names) | {v for v in parse_config(args.config).values() if isinstance(v, str)})
    fit_budget, device = _budget(args)
    fitting = fit_budget is not None
    if fitting and not inputs:
        raise UsageError("--fit solves for a symbol of --input (e.g. --input Bx3x224x224 --fit 80GB)")
    if args.at and not names:
        raise UsageError("--at needs symbols in --input (e.g. --input Bx3xHxH --at B=8 --at H=224)")
    given = _given(args.at, names) if fitting else None
    free = [n for n in names if n not in given] if fitting else []
    if fitting and len(free) != 1:
        raise UsageError(f"--fit solves for one symbol: give all but one of {', '.join(names)} with --at "
                         f"({'none' if not free else ', '.join(free)} left)")
    points = parse_assignments(args.at, names) if args.at and not fitting else None
    mem = memory(args.target, spec, backward=args.backward, train=args.train, dtype=args.dtype,
                 optimizer=args.optimizer, momentum=args.momentum, master_weights=args.master_weights,
                 input_dtype=args.input_dtype, past=past, checkpoint=args.checkpoint, progress=not args.json,
                 config=args.config)
    result = mem.as_dict()
    if points:
        result["evaluations"] = [_evaluate(mem, p) for p in points]
    if fitting:
        result["fit"] = found = mem.fit(free[0], fit_budget, given)
        if device:
            found["device"] = device
        if found["value"] is not None:
            found["peak_op"] = mem.at({**given, free[0]: found["value"]})["peak_op"]
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    if not args.layers:
        result.pop("saved_by_module", None)
    _print(mem, result)
    return 0


def _budget(args) -> tuple[int | None, str | None]:
    """The bytes --fit solves within (None: no --fit): its own value, or the memory of --device's preset (then
    with the device's name)."""
    if args.device is None:
        if args.fit == _DEVICE_MEMORY:
            raise UsageError("--fit without BYTES fits the memory of --device: add --device PRESET (e.g. h100-sxm) "
                             "or give --fit BYTES (e.g. 80GB)")
        if args.fit is None:
            return None, None
        from ..footprint.fit import parse_bytes

        return parse_bytes(args.fit), None
    if args.fit not in (None, _DEVICE_MEMORY):
        raise UsageError(f"--fit {args.fit} and --device {args.device} are two budgets: give one")
    from ..timing.presets import get_device

    try:
        device = get_device(args.device)
    except ValueError as e:
        raise UsageError(f"--device: {e}") from None
    if not device.memory_bytes:
        raise UsageError(f"--device {args.device}: symcost knows no memory capacity for {device.name}; give --fit "
                         "BYTES")
    return device.memory_bytes, device.name


#: --fit given without BYTES: the memory of --device
_DEVICE_MEMORY = "device"


def _evaluate(mem, values: dict) -> dict:
    """The numbers at one assignment, or why none are given there (outside the formulas' domain)."""
    try:
        return {"values": values, **mem.at(values)}
    except UsageError as e:
        return {"values": values, "refused": str(e)}


def _given(specs: list[str], names: list[str]) -> dict:
    """--at NAME=VALUE for each symbol but the one --fit solves for (one value each)."""
    from ..sweep import parse_values, split_assignments

    out = {}
    for spec in split_assignments(specs):
        name, sep, values = spec.partition("=")
        name = name.strip()
        if not sep or name not in names:
            raise UsageError(f"--at {spec!r}: expected NAME=VALUE with NAME one of {', '.join(names)}")
        vs = parse_values(values)
        if len(vs) != 1:
            raise UsageError(f"--at {spec!r}: with --fit, one value per symbol")
        out[name] = vs[0]
    return out


def _bytes(v) -> str:
    if isinstance(v, int):
        return f"{count(v)}" + (f"   ({si(v, 'B')})" if v >= 1000 else "")
    return count(v)


def args_layers(result: dict) -> bool:
    return bool(result.get("saved_by_module"))


def _print(mem, result: dict) -> None:
    print(f"{result['target']} on {'x'.join(result['input_shape'])}, {result['dtype']}, {result['step']}")
    rows = [(_HEADINGS[k], _bytes(v)) for k, v in result["bytes"].items() if k != "peak"]
    peaks = result["peak_candidates"]
    if len(peaks) == 1:
        rows.append(("peak", f"{_bytes(result['bytes']['peak'])}   at {peaks[0]['op']}"))
    elif len(peaks) <= _SHOWN:
        rows.append(("peak", _bytes(result["bytes"]["peak"])))
    else:
        extra = result["bytes"]["peak"].rsplit(")", 1)[1].strip()
        rows.append(("peak", f"the largest of the {len(peaks)} sums below{' ' + extra if extra else ''}"))
    print(pairs(rows))
    if "flops" in result:
        f = result["flops"]
        print(pairs([("recomputation", f"{count(f['recompute_flops'])} FLOPs[torch] more per step"),
                     ("step FLOPs[torch]", f"{count(f['step_flops'])} with checkpointing, "
                                           f"{count(f['step_flops_without_checkpointing'])} without")]))
    if len(peaks) > 1:
        print(f"the peak is the largest of {len(peaks)} sums, none of which holds the most at every size:")
        print(table(["at op", "live bytes"], [[p["op"], p["live_bytes"]] for p in peaks[:_SHOWN]]))
        if len(peaks) > _SHOWN:
            print(f"… and {len(peaks) - _SHOWN} more (--json lists every one; --at evaluates the peak exactly)")
    if args_layers(result):
        rows = [[m, _bytes(v)] for m, v in result["saved_by_module"].items()]
        print("saved activations by module (the innermost module running when autograd saved each storage):")
        print(table(["module", "saved bytes"], rows))
    if "evaluations" in result:
        keys = list(result["bytes"]) + (["recompute_flops"] if "flops" in result else [])
        rows = [[" ".join(f"{k}={v}" for k, v in e["values"].items()),
                 *(count(e.get(k)) for k in keys), e.get("peak_op", "refused: see below")]
                for e in result["evaluations"]]
        print(table(["values", *(_HEADINGS.get(k, "recomputed FLOPs") for k in keys), "peak at"], rows,
                    set(range(1, len(keys) + 1))))
    for e in result.get("evaluations", []):
        if "refused" in e:
            print(f"refused: {e['refused']}")
    if "fit" in result:
        f = result["fit"]
        s = f["symbol"]
        if f["value"] is None:
            memory = f" ({f['device']}'s memory)" if "device" in f else ""
            print(f"fit: nothing fits in {count(f['budget'])} bytes{memory}: at {s} = {f['next_value']} the peak is "
                  f"{_bytes(f['next_peak'])}")
        else:
            within = _bytes(f["budget"]) + (f" ({f['device']}'s memory)" if "device" in f else "")
            print(f"fit: largest {s} within {within}: {s} = {f['value']}, peak {_bytes(f['peak'])} at {f['peak_op']}")
            if f["next_value"] is None:
                print(f"     {s} = {f['value'] + 1} is outside the formulas' domain")
            else:
                print(f"     {s} = {f['next_value']}: peak {_bytes(f['next_peak'])}")
    if result["domain"]:
        print("where " + ", ".join(result["domain"]))
    if result.get("conditions"):
        print("for configurations where " + "; ".join(result["conditions"]))
    if result["checked_at"]:
        print("checked against recordings at " + "; ".join(", ".join(f"{k}={v}" for k, v in p.items())
                                                           for p in result["checked_at"]))
    for note in result["notes"]:
        print(f"note: {note}")


_DESCRIPTION = """\
The bytes a forward (under no_grad) or a training step (--backward: forward and backward, seeded with ones of the
output's shape as `symcost model --backward`) holds, as exact formulas in the input's symbols: parameters, buffers,
inputs, gradients, optimizer states, fp32 master weights, the activations autograd saves for the backward (each
storage once, parameters and buffers left out) and the peak of live tensor bytes over the step, with the op where it
occurs.  The step is recorded on meta tensors at two sizes, each storage's bytes derived from its op output's
symbolic shape, and every formula checked against recordings at sizes of other residues (and at 1).

What is counted: live tensor bytes, every storage torch holds, each once, from its allocation to the moment torch
frees it.  Not counted: the caching allocator's rounding and fragmentation, the CUDA context, cuDNN/cuBLAS
workspaces, an op's internal scratch memory.  Ops run as torch runs them on meta tensors: on a GPU a few ops keep
other tensors (scaled_dot_product_attention's flash and memory-efficient kernels keep less than its math path;
LayerNorm's saved mean and rstd are float32 for bf16 input as on CUDA, not bf16 as on a CPU).
"""


def configure_memory(p) -> None:
    add_quiet_option(p)
    from ..targets import TARGET_SYNTAX

    p.description = _DESCRIPTION
    p.add_argument("target", help=TARGET_SYNTAX)
    p.add_argument("--input", required=True, metavar="SHAPE",
                   help="input shape, e.g. Bx3x224x224 or BxL (letters are symbols)")
    p.add_argument("--backward", action="store_true",
                   help="a training step: forward under grad mode and backward; adds gradients, optimizer states "
                        "and the saved activations")
    p.add_argument("--train", action="store_true",
                   help="training mode (dropout masks, BatchNorm batch statistics); default eval mode")
    p.add_argument("--dtype", choices=("fp32", "bf16", "fp16", "mixed"), default="fp32",
                   help="the model and its floating-point inputs in this dtype; mixed: bf16 with fp32 master "
                        "weights (and fp32 optimizer states), as mixed-precision training keeps them")
    p.add_argument("--optimizer", choices=("sgd", "adam", "adamw"),
                   help="optimizer states (with --backward), held through the step: sgd none (--momentum: one "
                        "buffer per parameter), adam/adamw two buffers per parameter and a 4-byte step counter per "
                        "parameter tensor; in the parameters' dtype, fp32 with master weights")
    p.add_argument("--momentum", action="store_true", help="SGD with momentum: one state buffer per parameter")
    p.add_argument("--master-weights", action="store_true",
                   help="an fp32 copy of each trainable parameter (with --dtype bf16/fp16); --dtype mixed implies it")
    p.add_argument("--input-dtype", choices=("float32", "float16", "bfloat16", "int64", "int32"),
                   help="the input tensor's dtype (default: int64 token ids for hf: targets, else --dtype)")
    p.add_argument("--checkpoint", choices=("full", "selective"),
                   help="activation checkpointing (with --backward): full recomputes each block (a class named "
                        "*Block, *Layer or *Bottleneck in a ModuleList or Sequential) in the backward, keeping its "
                        "input; selective the attention modules only")
    p.add_argument("--past", metavar="T",
                   help="one decode step of a Hugging Face decoder on --input B x L new ids with a KV cache of T "
                        "tokens (a number or a symbol): the cache's bytes (key kv_cache) and the step's peak")
    p.add_argument("--config", metavar="FIELD=SYMBOL,…",
                   help="formulas in the model's own hyperparameters too (hf: config fields or a factory's integer "
                        "arguments; a number fixes a field), fitted at sampled configurations and verified exactly "
                        "at others, as `symcost model --config`")
    p.add_argument("--at", action="append", default=[], metavar="NAME=VALUES",
                   help="evaluate at B=8 or L=512,1024 or a range L=256:4096:256; repeat for more symbols")
    p.add_argument("--fit", metavar="BYTES", nargs="?", const=_DEVICE_MEMORY,
                   help="the largest value of the one symbol not given with --at whose peak fits in BYTES "
                        "(80GB = 80e9 bytes, 80GiB = 80 * 2**30), and the peak there and at the next value; "
                        "without BYTES, the memory of --device")
    p.add_argument("--device", metavar="PRESET",
                   help="--fit in this device's memory, as its datasheet states it (h100-sxm, a100-sxm4-80gb: "
                        "80 GiB each; the CUDA context and the caching allocator take part of it)")
    p.add_argument("--layers", action="store_true",
                   help="with --backward: the saved activations by module, each storage under the innermost module "
                        "running when autograd first saved it (--json always has them)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


COMMANDS = {"memory": ("bytes held by a forward or a training step, as exact formulas: parameters, gradients, "
                       "optimizer states, saved activations and the peak (symcost memory --help)",
                       configure_memory, run_memory)}
