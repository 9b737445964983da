"""The `symcost` command: a thin shell over the library.  Errors are one line, exit code 2."""
from __future__ import annotations

import argparse
import gc
import importlib
import sys

#: subcommand modules, imported when the parser is built; each keeps torch out of its imports
COMMAND_MODULES = ("symcost.commands.layers",)
EXTRA_MODULES = ("symcost.commands.models", "symcost.commands.compare", "symcost.commands.tables_and_plots",
                 "symcost.commands.fold", "symcost.commands.latency", "symcost.commands.mfu", "symcost.commands.report",
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
            _refuse_contradictions(p)
            p.set_defaults(run=run)
            _one_line_errors(p)
    return parser


def _one_line_errors(p: argparse.ArgumentParser) -> None:
    """argparse's errors (a missing required option …) as one line, without its usage block; exit 2."""
    def error(message):
        p.exit(2, f"{p.prog}: error: {message} (see {p.prog} --help)\n")

    p.error = error
_STORES = (argparse._StoreAction, argparse._StoreConstAction, argparse._StoreTrueAction, argparse._StoreFalseAction)


def _refuse_contradictions(parser) -> None:
    """An option given twice with different values (``--input 1x3 --input 1x4``, two flags that set one value) is a
    contradiction argparse would settle silently (the last wins): note it for ``main`` to refuse in one line."""
    for action in parser._actions:
        if type(action) in _STORES and action.option_strings:
            action.__class__ = type(f"Once{type(action).__name__}", (_Once, type(action)), {})


class _Once:
    def __call__(self, parser, namespace, values, option_string=None):
        given = namespace.__dict__.setdefault("_symcost_given", {})
        super().__call__(parser, namespace, values, option_string)
        value = getattr(namespace, self.dest)
        shown = option_string if isinstance(value, bool) else f"{option_string} {value}"
        if self.dest in given and given[self.dest][1] != value and "_symcost_conflict" not in namespace.__dict__:
            namespace._symcost_conflict = f"{given[self.dest][0]} and {shown} contradict each other; give one"
        given.setdefault(self.dest, (shown, value))


#: texts that may be empty on purpose (no caption, no title)
_MAY_BE_EMPTY = {"caption", "label", "title"}


def _bad_values(parser, args) -> str | None:
    """A contradiction noted while parsing, or an option given an empty value (``--input ""`` names nothing)."""
    if getattr(args, "_symcost_conflict", None):
        return args._symcost_conflict
    for action in parser._actions:
        if not action.option_strings or action.dest not in vars(args) or action.dest in _MAY_BE_EMPTY:
            continue
        value = getattr(args, action.dest)
        for v in (value if isinstance(value, list) else [value]):
            if isinstance(v, str) and not v.strip() and v != action.default:
                return f"{action.option_strings[-1]} {v!r}: an empty value; give one or leave the option out"
    return None


def main(argv: list[str] | None = None) -> int:
    """The `symcost` program (``argv`` None: the command line, and the process exits next), or one command run in
    process (``argv`` a list)."""
    if argv is None:
        # the program is one short process: full collections every 10th second-generation pass (Python's default)
        # walk the millions of objects torch, transformers and sympy make, to free almost nothing; a tenth as often
        # (the peak memory of a 7-field Llama fit is unchanged; a command run in process keeps the caller's setting)
        first, second, _ = gc.get_threshold()
        gc.set_threshold(first, second, 100)
    code = _run(argv)
    if argv is None:
        # the interpreter's shutdown runs full garbage collections over every object torch, sympy and transformers
        # made (seconds after a fit): frozen, they are left to the exit itself (output is written by now)
        gc.freeze()
    return code


def _run(argv: list[str] | None) -> int:
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
    bad = _bad_values(commands[args.command], args)
    if bad:
        print(f"symcost {args.command}: error: {bad}", file=sys.stderr)
        return 2
    from .progress import set_quiet

    set_quiet(getattr(args, "quiet", False))
    try:
        from .target_names import check_args

        check_args(args)  # a misspelt target answered before any command imports torch
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
        first = next((line.strip() for line in str(e).splitlines() if line.strip()), "")  # (torch appends a C++ stack)
        print(f"symcost {args.command}: internal error: {type(e).__name__}: {first} "
              "(set SYMCOST_DEBUG=1 for a traceback, and please report it)", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
