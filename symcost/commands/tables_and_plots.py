"""`symcost table` and `symcost plot`: model costs for papers.

* ``table``: one target -> a per-layer table (``--depth N`` groups layers by module prefix); several targets -> a
  model comparison; LaTeX (default), Markdown, CSV or JSON.
* ``plot``: cost against input size from one symbolic derivation per model (``symcost.plot``).

Both derive through ``symcost.derive.derive`` (its on-disk cache included).  torch and matplotlib are
imported only inside the run functions.  Every bad input is one line on stderr and exit code 2.
"""
from __future__ import annotations

import sys

from . import NO_CACHE_HELP
from ..errors import NoSingleFormula, SymcostError
from ..parse import UsageError, convention_arg, parse_shape
from ..progress import add_quiet_option, status
from .out_file import refuse_folder, write_text


def _one_line_errors(p) -> None:
    """argparse errors for this subcommand as one line (no usage block), exit code 2."""
    def error(message):
        p.exit(2, f"{p.prog}: error: {message}\n")

    p.error = error


def _positive_int(text: str, option: str) -> int:
    try:
        value = int(text)
    except (TypeError, ValueError):
        raise UsageError(f"{option} {text!r}: expected a positive integer") from None
    if value < 1:
        raise UsageError(f"{option} {value}: expected a positive integer")
    return value


def _symbol_names(shape) -> list[str]:
    return sorted({str(d) for d in shape if not isinstance(d, int)})  # parse_shape gives ints and symbols


def _warn_uncovered(target: str, mc, command: str) -> None:
    if mc.uncovered:
        print(f"symcost {command}: warning: {target}: {sum(mc.uncovered.values())} op call(s) not costed "
              "(the totals leave them out): " + ", ".join(f"{k} x{v}" for k, v in mc.uncovered.items()),
              file=sys.stderr)


# --------------------------------------------------------------------------------------------------------- table

def _table_format(args) -> str:
    chosen = [f for f in ("latex", "markdown", "csv", "json") if getattr(args, f)]
    if len(chosen) > 1:
        raise UsageError("choose one output format: " + ", ".join(f"--{f}" for f in chosen) + " were given")
    return chosen[0] if chosen else "latex"


def _table_values(args, shape) -> dict:
    from ..sweep import parse_assignments

    names = _symbol_names(shape)
    if not names:
        if args.at:
            raise UsageError("--at needs symbols in --input (e.g. --input 1x3xRxR --at R=224)")
        if args.symbolic:
            raise UsageError("--symbolic needs symbols in --input, e.g. --input 1x3xRxR --at R=224 (the numbers are "
                             "taken at --at, the formula column is in R)")
        return {}
    if not args.at:
        example = " ".join(f"--at {n}=224" for n in names)
        raise UsageError(f"--input {args.input} has symbols ({', '.join(names)}): a table prints numbers, give each "
                         f"one value, e.g. {example}")
    points = parse_assignments(args.at, names)
    if len(points) != 1:
        raise UsageError(f"--at gives {len(points)} points; a table takes one value per symbol "
                         "(for a sweep: symcost plot, or symcost model --at)")
    return points[0]


def build_table(args):
    from ..export.build import cost_table, derive_models

    conv = convention_arg(args.convention)
    shape = parse_shape(args.input)
    depth = _positive_int(args.depth, "--depth") if args.depth is not None else None
    if depth is not None and len(args.targets) > 1:
        raise UsageError("--depth groups one model's layers; it cannot be used with several targets")
    divisible = _positive_int(args.assume_divisible, "--assume-divisible") if args.assume_divisible else None
    if divisible and not args.symbolic:
        raise UsageError("--assume-divisible simplifies the formula column: use it with --symbolic")
    values = _table_values(args, shape)
    models = derive_models(args.targets, args.input, shape, values, symbolic=args.symbolic, train=args.train,
                           use_cache=not args.no_cache, input_dtype=args.input_dtype)
    for target, mc in models:
        _warn_uncovered(target, mc, "table")
    return cost_table(models, conv, values, depth=depth, symbolic=args.symbolic, assume_divisible=divisible,
                      input_shape=shape, use_cache=not args.no_cache)


def run_table(args) -> int:
    from ..export import render

    fmt = _table_format(args)
    environment = args.environment
    if environment not in ("auto", "table", "longtable"):
        raise UsageError(f"--environment {environment!r}: choose auto, table or longtable")
    digits = int(args.digits)
    if not 0 <= digits <= 6:
        raise UsageError(f"--digits {digits}: choose 0 to 6")
    if fmt != "latex" and (args.standalone or args.label is not None):
        raise UsageError("--standalone and --label are for --latex output")
    if args.config or args.config_values:  # rows are configurations of one model, from one formula
        from .config import config_table

        table = config_table(args)
    else:
        table = build_table(args)
    options = {}
    if fmt == "latex":
        options = {"caption": args.caption, "label": args.label, "standalone": args.standalone,
                   "exact": args.exact, "digits": digits, "environment": environment}
    elif fmt == "markdown":
        options = {"caption": args.caption, "exact": args.exact, "digits": digits}
    text = render(table, fmt, **options)
    for note in table.notes:
        print(f"symcost table: note: {note}", file=sys.stderr)
    if args.out:
        out = refuse_folder(args.out, "table.tex")
        if not out.parent.is_dir():
            raise UsageError(f"--out {args.out!r}: folder {str(out.parent)!r} does not exist")
        write_text(out, text)
        print(f"wrote {out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def configure_table(p) -> None:
    from ..targets import TARGET_SYNTAX

    add_quiet_option(p)
    _one_line_errors(p)
    p.add_argument("targets", nargs="+", metavar="TARGET",
                   help=f"{TARGET_SYNTAX}; one target: a per-layer table, several: one row per model")
    p.add_argument("--input", required=True, metavar="SHAPE",
                   help="input shape, 1x3x224x224; or 1x3xRxR with --at R=224 (needed for --symbolic)")
    p.add_argument("--at", action="append", default=[], metavar="NAME=VALUE",
                   help="the value of a symbol of --input for the table's numbers (one per symbol)")
    p.add_argument("--depth", metavar="N", help="group the layers by the first N components of their module name "
                   "(resnet50 at 1: conv1, bn1, relu, maxpool, layer1 … layer4, avgpool, fc) and sum them")
    fmt = p.add_argument_group("output format (default --latex)")
    fmt.add_argument("--latex", action="store_true", help="a booktabs table environment to \\input (default)")
    fmt.add_argument("--markdown", action="store_true", help="a Markdown (GitHub) table")
    fmt.add_argument("--csv", action="store_true", help="CSV, exact integers")
    fmt.add_argument("--json", action="store_true", help="one JSON object, exact integers")
    p.add_argument("--convention", default="flops", metavar="NAME",
                   help="FLOP counting convention (symcost conventions)")
    p.add_argument("--caption", metavar="TEXT", help="the caption; in --latex it may hold LaTeX ($R$, \\ref{…}) and "
                   "plain _ %% & # are escaped; the convention is appended unless the text names it")
    p.add_argument("--label", metavar="TEXT", help="the \\label (default tab:MODEL or tab:model-comparison)")
    p.add_argument("--symbolic", action="store_true", help="add a column with each row's FLOPs formula in the "
                   "input symbols (nested floors named R_1, R_2 …, defined in the caption)")
    p.add_argument("--assume-divisible", metavar="K", help="with --symbolic: formulas for sizes divisible by K "
                   "(the floors vanish)")
    p.add_argument("--standalone", action="store_true", help="a complete LaTeX document (pdflatex) instead of "
                   "a table to \\input")
    p.add_argument("--environment", default="auto", metavar="auto|table|longtable",
                   help="LaTeX environment: auto picks longtable from 40 rows on (default auto)")
    p.add_argument("--exact", action="store_true", help="LaTeX/Markdown: exact integers instead of K/M/G units")
    p.add_argument("--digits", default=2, type=int, metavar="N", help="decimals of scaled numbers (default 2)")
    p.add_argument("--out", metavar="FILE", help="write the table to FILE instead of stdout")
    p.add_argument("--train", action="store_true", help="cost the training-mode forward")
    p.add_argument("--input-dtype", choices=("float32", "float16", "bfloat16", "int64", "int32"),
                   help="the input tensor's dtype (default: int64 token ids for hf: targets, float32 otherwise)")
    p.add_argument("--no-cache", action="store_true", help=NO_CACHE_HELP)
    p.add_argument("--config-values", metavar="FILE.json", help='one row per named configuration of one model, '
                   'from one formula in its config fields: {"7B": {"hidden_size": 4096, ...}, ...}')
    p.add_argument("--config", metavar="FIELD=SYMBOL,…", help="with --config-values: the symbols (default: every "
                   "field the file names)")


# ---------------------------------------------------------------------------------------------------------- plot

def run_plot(args) -> int:
    from .. import plot
    from ..derive import derive
    from ..sweep import parse_range

    if args.config:  # cost against a config field of the model (one formula per model)
        from .config import config_plot

        return config_plot(args)

    # a breakdown of MACs says "conv 99.9 %": FLOPs show what the other families cost
    metric = args.metric or ("flops" if args.breakdown else "macs")
    if metric not in plot.METRICS:
        raise UsageError(f"unknown metric {metric!r}; choose one of: {', '.join(plot.METRICS)}")
    conv = convention_arg(args.convention)
    if args.breakdown and len(args.targets) != 1:
        raise UsageError(f"--breakdown draws one model's cost by layer family; got {len(args.targets)} targets")
    out = refuse_folder(args.out, "plot.png")
    if out.suffix.lower() not in plot.SUFFIXES:
        raise UsageError(f"--out {args.out!r}: the file name must end in .png, .pdf or .svg")
    if not out.parent.is_dir():
        raise UsageError(f"--out {args.out!r}: folder {str(out.parent)!r} does not exist")
    shape = parse_shape(args.input)
    names = _symbol_names(shape)
    if len(names) != 1:
        raise UsageError(f"--input {args.input}: a plot needs exactly one symbol, e.g. 1x3xRxR"
                         + (f" (it has {', '.join(names)})" if names else ""))
    symbol, xs = parse_range(args.range, names)
    models = []
    for target in args.targets:
        try:
            mc = derive(target, args.input, train=args.train, use_cache=not args.no_cache, progress=True,
                        input_dtype=args.input_dtype)
        except SymcostError as e:
            hint = "; a plot evaluates one formula per model" if isinstance(e, NoSingleFormula) else ""
            raise UsageError(f"{target}: {e}{hint}" if target not in str(e) else f"{e}{hint}") from None
        _warn_uncovered(target, mc, "plot")
        models.append((target, mc))
    from ..export.tables import display_name

    labels = [display_name(t) for t, _ in models]
    if len(set(labels)) != len(labels):
        labels = [t for t, _ in models]
    defaults = {label: plot.default_size(t, shape, symbol) for label, (t, _) in zip(labels, models)}
    shape_text = "×".join(map(str, shape))
    try:
        with status(f"drawing {out}"):
            if args.breakdown:
                notes = plot.plot_breakdown(labels[0], models[0][1], symbol, xs, metric, conv.name, out,
                                            logx=args.logx, logy=args.logy, default=defaults[labels[0]],
                                            shape_text=shape_text, title=args.title)
            else:
                notes = plot.plot_models(list(zip(labels, (mc for _, mc in models))), symbol, xs, metric, conv.name,
                                         out, logx=args.logx, logy=args.logy, defaults=defaults,
                                         shape_text=shape_text, title=args.title,
                                         marker_label=plot.marker_label(args.targets))
    except ValueError as e:
        raise UsageError(str(e)) from None
    except OSError as e:
        raise UsageError(f"cannot write {out}: {e.strerror or e}") from None
    for note in notes:
        print(f"symcost plot: note: {note}", file=sys.stderr)
    print(f"wrote {out}")
    return 0


def configure_plot(p) -> None:
    from ..targets import TARGET_SYNTAX

    add_quiet_option(p)
    _one_line_errors(p)
    p.add_argument("targets", nargs="+", metavar="TARGET", help=TARGET_SYNTAX)
    p.add_argument("--input", required=True, metavar="SHAPE", help="input shape with one symbol, e.g. 1x3xRxR")
    p.add_argument("--range", required=True, metavar="NAME=START:STOP:STEP",
                   help="the sizes to plot: R=32:1024:32 (inclusive) or R=224,256,288")
    p.add_argument("--out", required=True, metavar="FILE", help="output file: .png, .pdf or .svg")
    p.add_argument("--metric", metavar="NAME",
                   help="params, macs, flops, reads or writes (default macs; flops with --breakdown)")
    p.add_argument("--convention", default="flops", metavar="NAME", help="FLOP counting convention for --metric flops")
    p.add_argument("--logx", action="store_true", help="logarithmic x axis (base 2)")
    p.add_argument("--logy", action="store_true", help="logarithmic y axis")
    p.add_argument("--breakdown", action="store_true", help="one model: a stacked area of the cost by layer family")
    p.add_argument("--config", metavar="FIELD=SYMBOL", help="plot against a config field instead (concrete --input, "
                   "--range over the field's symbol), e.g. --config n_embd=d --range d=256:4096:128")
    p.add_argument("--title", metavar="TEXT", help="the plot's title")
    p.add_argument("--train", action="store_true", help="cost the training-mode forward")
    p.add_argument("--input-dtype", choices=("float32", "float16", "bfloat16", "int64", "int32"),
                   help="the input tensor's dtype (default: int64 token ids for hf: targets, float32 otherwise)")
    p.add_argument("--no-cache", action="store_true", help=NO_CACHE_HELP)


COMMANDS = {
    "table": ("a model's per-layer cost table, or several models compared: LaTeX (booktabs), Markdown, CSV, JSON",
              configure_table, run_table),
    "plot": ("cost against input size for one or more models, from one symbolic derivation each (PNG/PDF/SVG)",
             configure_plot, run_plot),
}
