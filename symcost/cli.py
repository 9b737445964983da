"""The `symcost` command: a thin shell over the library.  Errors are one line, exit code 2."""
from __future__ import annotations

import argparse
import importlib
import sys

#: subcommand modules, imported when the parser is built; each keeps torch out of its imports
COMMAND_MODULES = ("symcost.commands.layers",)
EXTRA_MODULES = ("symcost.commands.models", "symcost.commands.compare", "symcost.commands.papers",
                 "symcost.commands.hardware", "symcost.commands.mfu", "symcost.commands.report",
                 "symcost.commands.memory")


def _modules():
    for name in COMMAND_MODULES + EXTRA_MODULES:
        try:
            yield importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name != name:
                raise


def build_parser() -> argparse.ArgumentParser:
    from .targets import TARGET_SYNTAX  # the kinds load_target accepts, so the help follows it

    parser = argparse.ArgumentParser(
        prog="symcost",
        description="Closed-form cost formulas (params, MACs, FLOPs under a named convention, memory traffic) "
                    "for neural-network layers and models, cross-checked against PyTorch.",
        epilog=f"Targets of the whole-model commands (model, table, plot, compare, fold, report, ...): {TARGET_SYNTAX}. "
               "Example: symcost formula conv2d --bias ; symcost eval linear --input 1x128 in_features=128 "
               "out_features=64 --json",
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"symcost {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in _modules():
        for name, (help_text, configure, run) in module.COMMANDS.items():
            p = sub.add_parser(name, help=help_text, description=help_text)
            configure(p)
            p.set_defaults(run=run)
    return parser


def main(argv: list[str] | None = None) -> int:
    import os

    from .errors import SymcostError
    from .parse import did_you_mean

    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and not argv[0].startswith("-") and argv[0] not in commands:  # argparse would print usage + error
        print(f"symcost: error: unknown command {argv[0]!r}{did_you_mean(argv[0], commands)}; "
              f"choose one of: {', '.join(commands)}", file=sys.stderr)
        return 2
    args, extras = parser.parse_known_args(argv)
    if getattr(args, "command", None):
        args.options = [o for a in commands[args.command]._actions for o in a.option_strings if o.startswith("--")]
    if extras:
        if not hasattr(args, "settings"):
            word = extras[0].split("=", 1)[0]
            hint = did_you_mean(word, args.options) if word.startswith("-") and args.command else ""
            where = f"symcost {args.command}" if args.command else "symcost"
            print(f"{where}: error: unrecognized arguments: {' '.join(extras)}{hint}", file=sys.stderr)
            return 2
        args.settings = list(args.settings) + extras  # layer settings may sit between options
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    from .progress import set_quiet

    set_quiet(getattr(args, "quiet", False))
    try:
        return int(args.run(args) or 0)
    except SymcostError as e:
        print(f"symcost {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("symcost: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as e:  # a bug, not bad input: say so in one line unless debugging
        if os.environ.get("SYMCOST_DEBUG"):
            raise
        print(f"symcost {args.command}: internal error: {type(e).__name__}: {e} "
              "(set SYMCOST_DEBUG=1 for a traceback, and please report it)", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
