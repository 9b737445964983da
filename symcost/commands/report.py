"""`symcost report TARGET --input 1x3xRxR --out report.html`: the interactive browser report (one HTML file)."""
from __future__ import annotations

import sys
from pathlib import Path

from . import NO_CACHE_HELP
from ..errors import NoSingleFormula, UsageError
from ..progress import add_quiet_option
from .out_file import refuse_folder, write_text

DEFAULT_VALUE = 224
DEFAULT_MAX = 1024


def _assignments(specs: list[str], names: list[str], option: str, parse) -> dict:
    out: dict = {}
    for spec in (part for s in specs for part in s.split(",") if part.strip()):
        name, sep, value = spec.partition("=")
        name = name.strip()
        if not sep:
            raise UsageError(f"{option} {spec!r}: expected NAME=VALUE")
        if name not in names:
            raise UsageError(f"{option} {spec!r}: the input has no symbol {name!r} (its symbols: {', '.join(names)})")
        if name in out:
            raise UsageError(f"{option} {spec!r}: {name} is given twice; give it once")
        out[name] = parse(value.strip(), spec)
    return out


def _int(text: str, spec: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise UsageError(f"{spec!r}: expected a positive integer") from None
    if value < 1:
        raise UsageError(f"{spec!r}: expected a positive integer")
    return value


def _range(text: str, spec: str) -> tuple[int, int]:
    lo, sep, hi = text.partition(":")
    if not sep:
        raise UsageError(f"--range {spec!r}: expected NAME=MIN:MAX, e.g. R=32:1024")
    lo, hi = _int(lo, spec), _int(hi, spec)
    if hi <= lo:
        raise UsageError(f"--range {spec!r}: MAX must be above MIN")
    return lo, hi


def _model_default(target: str, input_spec: str, name: str) -> int | None:
    """The value of ``name`` at the input size the model was made for (GPT-2's L = 1024, a 288-pixel timm model's
    R = 288); None for named inputs or a model without one."""
    if "=" in input_spec:
        return None
    from ..parse import parse_shape_names
    from ..plot import default_size

    return default_size(target, parse_shape_names(input_spec), name)


def run_report(args) -> int:
    from ..parse import convention_arg, input_symbols
    from ..derive import derive

    names = input_symbols(args.input)
    if not names:
        raise UsageError("report needs symbols in --input to put on sliders, e.g. --input 1x3xRxR")
    convention_arg(args.convention)
    initial = _assignments(args.at, names, "--at", _int)
    ranges = _assignments(args.range, names, "--range", _range)
    for n, value in initial.items():
        if n in ranges and not ranges[n][0] <= value <= ranges[n][1]:
            raise UsageError(f"--at {n}={value} is outside --range {n}={ranges[n][0]}:{ranges[n][1]}: its slider "
                             "could not show it")
    for n in names:
        start = _model_default(args.target, args.input, n) or DEFAULT_VALUE
        lo, hi = ranges.get(n, (1, max(DEFAULT_MAX, initial.get(n, start))))
        initial.setdefault(n, min(max(start, lo), hi))
        ranges[n] = (lo, hi)
    if not Path(args.out).parent.is_dir():  # before the derivation, not after it
        raise UsageError(f"--out {args.out!r}: folder {str(Path(args.out).parent)!r} does not exist")
    try:
        mc = derive(args.target, args.input, use_cache=not args.no_cache, input_dtype=args.input_dtype)
    except NoSingleFormula as e:
        raise UsageError(f"no single formula for {args.target} on {args.input} ({e}): a report needs one") from None
    if getattr(mc, "fixed_at", None):
        at = ", ".join(f"{k}={v}" for k, v in mc.fixed_at.items())
        raise UsageError(f"{args.target} runs at one size only ({at}): there is nothing to put on a slider")
    from ..export.report import report_html

    page = report_html(mc, initial, ranges, args.convention)
    out = refuse_folder(args.out, "report.html")
    write_text(out, page)
    print(f"wrote {out} ({len(page.encode()) // 1024} KiB, {len(mc.rows)} layer calls, sliders for "
          f"{', '.join(names)}); open it in a browser, no network needed", file=sys.stderr)
    return 0


def configure_report(p) -> None:
    add_quiet_option(p)
    import argparse

    from ..targets import TARGET_SYNTAX

    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = ("examples:\n"
                "  symcost report torchvision:resnet50 --input 1x3xRxR --out report.html\n"
                "  symcost report torchvision:resnet50 --input 1x3xHxW --at H=224 --at W=320 --range H=32:2048 "
                "--out r50.html\n"
                "  symcost report hf:bert --input 1xL --at L=128 --range L=1:4096 --out bert.html\n\n"
                "The page needs no network and no server: open the file. Every number is recomputed in the browser "
                "from\nthe compiled formulas in exact integer arithmetic (BigInt); sizes outside the model's domain "
                "are refused.")
    p.add_argument("target", help=TARGET_SYNTAX)
    p.add_argument("--input", required=True, metavar="SHAPE",
                   help="input shape with symbols, e.g. 1x3xRxR or 1x3xHxW: each symbol gets a slider")
    p.add_argument("--out", required=True, metavar="FILE.html", help="where to write the page")
    p.add_argument("--at", action="append", default=[], metavar="NAME=VALUE",
                   help="a slider's starting value (default: the size the model was made for, e.g. "
                   f"the weights' crop or a Hugging Face config's max_position_embeddings; else {DEFAULT_VALUE})")
    p.add_argument("--range", action="append", default=[], metavar="NAME=MIN:MAX",
                   help=f"a slider's range (default 1:{DEFAULT_MAX}; the number field beside it takes any size)")
    p.add_argument("--convention", default="flops", metavar="NAME",
                   help="the FLOPs convention selected at first (the page can switch; see `symcost conventions`)")
    p.add_argument("--input-dtype", choices=("float32", "float16", "bfloat16", "int64", "int32"),
                   help="the input tensor's dtype (default: int64 token ids for hf: targets, float32 otherwise)")
    p.add_argument("--no-cache", action="store_true", help=NO_CACHE_HELP)


COMMANDS = {"report": ("an interactive HTML page: a slider per input symbol re-evaluates every layer's cost and "
                       "the totals in the browser, exactly (one self-contained file, no network)",
                       configure_report, run_report)}
