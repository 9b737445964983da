"""`symcost list | conventions | formula | eval | check`: one layer at a time."""
from __future__ import annotations

import argparse
import json

from ..parse import UsageError, convention_arg, parse_settings, parse_shapes, rewrite_layer_options
from ..progress import add_quiet_option, status
from ..render import count, pairs, table


def _layer_cls(name: str):
    from ..registry import UnknownLayer, get_layer_class

    try:
        return get_layer_class(name)
    except UnknownLayer as e:
        raise UsageError(str(e)) from None


def _build(args, symbolic: bool):
    """Layer object and input shapes from the command line."""
    from ..layers.base import LayerError

    cls = _layer_cls(args.layer)
    tokens = rewrite_layer_options(args.settings, cls)
    settings = parse_settings(tokens, cls, allow_symbols=symbolic, options=tuple(getattr(args, "options", ())))
    try:
        layer = cls(symbolic=symbolic, **settings)
    except LayerError as e:
        raise UsageError(str(e)) from None
    if args.input:
        shapes = parse_shapes(args.input, allow_symbols=symbolic)
        if symbolic:
            layer = _bound_by_input(cls, layer, settings, shapes)
    elif symbolic:
        shapes = layer.default_input_shapes()
    else:
        raise UsageError(f"{cls.name}: --input SHAPE is required (e.g. --input 1x3x224x224)")
    expected = len(layer.default_input_shapes())
    if len(shapes) == 1 and expected > 1 and layer.family in ("elementwise", "matmul"):
        shapes = shapes * expected  # a binary op given one shape: both inputs have it
    low, high = layer.user_input_count()
    if not low <= len(shapes) <= high:
        raise UsageError(_input_count_error(layer, args.input, shapes, low, high))
    return layer, shapes


def _bound_by_input(cls, layer, settings: dict, shapes):
    """The layer with each argument left a symbol that the input fixes set to its value (``formula conv2d --input
    1x3xHxW``: in_channels = 3, where C_in would stay a symbol the input contradicts at any other value).  A dim of
    the input facing the argument's symbol in the layer's default input (aligned left or right, batched or not) is
    taken only where it pins the argument: the layer accepts that value and refuses the next one."""
    from ..layers.base import LayerError

    def accepts(extra: dict) -> bool:
        try:
            cls(symbolic=True, **settings, **extra).cost(*shapes)
            return True
        except LayerError:
            return False

    bound: dict = {}
    for given, default in zip(shapes, layer.default_input_shapes()):
        if abs(len(given) - len(default)) > 1:
            continue
        pairs = list(zip(given, default)) + list(zip(reversed(given), reversed(default)))
        for dim, symbol in pairs:
            for a in cls.args:
                if (a.name not in settings and a.name not in bound and isinstance(dim, int) and a.symbol is not None
                        and a.symbol is symbol and getattr(layer, a.name, None) is symbol
                        and accepts({a.name: dim}) and not accepts({a.name: dim + 1})):
                    bound[a.name] = dim
    if not bound or not accepts(bound):
        return layer
    settings.update(bound)
    return cls(symbolic=True, **settings)


def _input_count_error(layer, text: str, shapes, low: int, high: float) -> str:
    """Names how many inputs the layer takes and the shape syntax; guesses the intended shape when commas were
    used between the sizes of one input."""
    from ..layers.base import how_many_inputs

    def spec(s):
        return "x".join(map(str, s))

    example = ",".join(spec(s) for s in layer.default_input_shapes())
    message = (f"{layer.name}: takes {how_many_inputs(low, high)} (e.g. --input {example}), got {len(shapes)} from "
               f"--input {text}; the sizes of one input are joined by x, several inputs separated by commas")
    if all(len(s) == 1 for s in shapes) and low <= 1:
        message += f": did you mean --input {spec(d for s in shapes for d in s)}?"
    return message


def _cost(layer, shapes):
    from ..layers.base import LayerError

    try:
        return layer.cost(*shapes)
    except LayerError as e:
        raise UsageError(str(e)) from None


def run_list(args) -> int:
    from ..registry import all_layers

    layers = all_layers()
    if args.json:
        print(json.dumps([{"name": n, "family": c.family, "torch": c.torch_name, "summary": c.summary,
                           "args": [a.name for a in c.args]} for n, c in layers.items()], indent=2))
        return 0
    print(table(None, [(name, cls.family, f"{cls.summary}  [{cls.torch_name}]") for name, cls in layers.items()]))
    return 0


def run_conventions(args) -> int:
    from ..conventions import CONVENTIONS
    from ..cost import OP_KINDS

    if args.json:
        print(json.dumps({n: {"summary": c.summary, "source": c.source, "weights": dict(c.weights)}
                          for n, c in CONVENTIONS.items()}, indent=2))
        return 0
    print("Primitive operations every layer reports:")
    print(pairs(OP_KINDS.items(), indent=2))
    print("\nConventions (weight per primitive operation):")
    for c in CONVENTIONS.values():
        weights = " ".join(f"{k}={w}" for k, w in c.weights.items())
        print(f"  {c.name:<6} {c.summary}\n         weights: {weights}")
        for title, weights_of in (("per layer", c.family_weights), ("functional calls", c.functional_weights)):
            if weights_of:
                groups: dict = {}
                for key, w in weights_of.items():  # layers weighed alike on one line
                    groups.setdefault(" ".join(f"{k}={v}" for k, v in w.items()), []).append(key)
                for w, keys in groups.items():
                    print(f"         {title}: {', '.join(keys)}: {w}")
        if not c.sees_functional:
            print("         functional calls outside modules (x + y, F.relu): not seen, 0")
        print(f"         source: {c.source}")
    return 0


def run_formula(args) -> int:
    import sympy

    from ..formula import Formula

    if args.json and args.latex:
        raise UsageError("choose one output format: --json and --latex were given")
    if args.latex and getattr(args, "backward", False):
        raise UsageError("--backward has no --latex form: its text or --json")
    layer, shapes = _build(args, symbolic=True)
    conv = convention_arg(args.convention)
    _cost(layer, shapes)  # validate before formatting
    if getattr(args, "backward", False):
        return _run_backward_formula(layer, shapes, conv, args.json)
    formula = Formula.of(layer, shapes, conv)
    if args.json:
        print(json_text(formula.as_dict(layer)))
    elif args.latex:  # for a paper: unnumbered lines, and what a flag symbol means, as the text output says
        tex = sympy.latex(formula)
        print(tex.replace(r"\begin{align}", r"\begin{align*}").replace(r"\end{align}", r"\end{align*}"))
        legend = [f"${sympy.latex(sympy.Symbol(k))}$ is "
                  + meaning.replace(", 0 ", ", $0$ ").replace("1 with", "$1$ with")
                  for k, meaning in formula.flags(layer).items()]
        if legend:
            print(r"\noindent where " + "; ".join(legend) + ".")
    else:
        print(f"{layer.name}  [{layer.torch_name}]  {layer.summary}")
        print(formula)
        for symbol, meaning in formula.flags(layer).items():
            print(f"{symbol} = {meaning}")
        print(f"convention {conv.name}: {conv.summary}")
    return 0


def _run_backward_formula(layer, shapes, conv, as_json: bool) -> int:
    """The layer's gradients (``symcost.layers.layer_backward``): each part's counts under the convention, and the
    forward + backward total of one training step of the layer."""
    from ..formula import flag_meanings
    from ..layers.layer_backward import layer_backward

    if conv.family_weights or conv.functional_weights:
        raise UsageError(f"--backward: convention {conv.name!r} weighs the forward layers of a peer tool, which "
                         "counts no backward pass; use macs, flops, exact, mults or torch")
    parts = layer_backward(layer, *shapes)
    forward = layer.cost(*shapes)

    def row(c):
        return {"output_shape": [str(d) for d in c.output_shape], "macs": str(c.macs),
                "flops": str(conv.count(c)), "reads": str(c.reads), "writes": str(c.writes),
                "ops": {k: str(v) for k, v in c.ops.items()}}
    rows = {name: row(c) for name, c in parts.items()}
    backward = sum(parts.values(), type(forward)())
    total = {"macs": str(forward.macs + backward.macs),
             "flops": str(conv.count(forward) + sum(conv.count(c) for c in parts.values()))}
    if as_json:
        flags = flag_meanings(layer, forward + backward, conv)
        print(json.dumps({"layer": layer.name, "convention": conv.name, "backward": rows,
                          "forward_plus_backward": total, "flags": flags,
                          "input_shapes": [[str(d) for d in s] for s in shapes]}, indent=2))
        return 0
    print(f"{layer.name} backward  input {' , '.join('x'.join(map(str, s)) for s in shapes)}")
    print(table(None, [(name, f"MACs {r['macs']}", f"FLOPs[{conv.name}] {r['flops']}", f"reads {r['reads']}",
                        f"writes {r['writes']}") for name, r in rows.items()]))
    print(f"forward + backward: MACs {total['macs']}   FLOPs[{conv.name}] {total['flops']}")
    for symbol, meaning in flag_meanings(layer, forward + backward, conv).items():
        print(f"{symbol} = {meaning}")
    print(f"convention {conv.name}: {conv.summary}")
    if layer.name.startswith("conv") and layer.groups != 1:
        where = "" if getattr(layer.groups, "is_number", True) else ", where g > 1"
        print(f"note: FlopCounterMode counts a grouped convolution's grad weight as if groups were 1 (g times the "
              f"MACs above{where})")
    return 0


def json_text(data) -> str:
    """``data`` as JSON; a non-finite float argument (hardtanh's ``min_val=-inf``) as the string torch writes,
    ``"-inf"``, since JSON has no such number."""
    import math

    def finite(v):
        if isinstance(v, float) and not math.isfinite(v):
            return str(v)
        if isinstance(v, dict):
            return {k: finite(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [finite(x) for x in v]
        return v

    return json.dumps(finite(data), indent=2, allow_nan=False)


def run_eval(args) -> int:
    from ..api import numbers

    layer, shapes = _build(args, symbolic=False)
    conv = convention_arg(args.convention)
    _cost(layer, shapes)
    result = numbers(layer, shapes, conv.name)
    if args.json:
        print(json_text(result))
        return 0
    rows = [("layer", f"{result['layer']}  [{result['torch']}]"),
            ("input", " , ".join("x".join(map(str, s)) for s in result["input_shapes"])),
            ("output", "x".join(map(str, result["output_shape"]))),
            ("params", count(result["params"]))]
    if result["buffers"]:
        rows.append(("buffers", count(result["buffers"])))
    rows += [("MACs", count(result["macs"])), (f"FLOPs[{conv.name}]", count(result["flops"])),
             ("reads", f"{count(result['reads'])} elements"), ("writes", f"{count(result['writes'])} elements")]
    print(pairs(rows))
    return 0


def run_check(args) -> int:
    from ..check import check_layer

    if args.convention not in (None, "torch"):
        raise UsageError(f"check compares with torch's FlopCounterMode, which counts under the 'torch' convention; "
                         f"--convention {args.convention} would not be used (drop it, or see `symcost eval "
                         f"--convention {args.convention}` for that count)")
    layer, shapes = _build(args, symbolic=False)
    _cost(layer, shapes)  # refuse bad input before building the torch module
    with status(f"running torch's {layer.torch_name} under FlopCounterMode", enabled=not args.json):
        result = check_layer(layer, shapes)
    if args.json:
        print(json.dumps(result.as_dict(), indent=2))
    else:
        print(result.table())
    return 0 if result.ok else 1


#: what each Arg kind accepts on the command line
KIND_MEANINGS = {
    "size": "positive integer", "count": "nonnegative integer", "int": "integer",
    "tuple": "positive integer per spatial axis (3 or 3,2)", "offsets": "nonnegative integer per axis (1 or 1,0)",
    "flag": "true or false (--NAME / --no-NAME)", "float": "number", "choice": "one of the choices",
    "shape": "positive integers (64 or 64,64)", "dims": "dimension indices (1 or 1,2; negative allowed)",
}


def layer_help(cls, symbolic: bool) -> str:
    """One layer's arguments, as declared in its ``args``: what each accepts, its default, its symbol."""
    from ..layers.base import REQUIRED

    def shown(v):
        if isinstance(v, tuple):
            return ",".join(map(str, v))
        return str(v).lower() if isinstance(v, bool) else str(v)

    from ..layers.base import LayerError, how_many_inputs

    low, high = cls.user_input_count()
    try:
        defaults = cls(symbolic=True).default_input_shapes()
    except LayerError:  # a required argument has no symbol (pow's exponent)
        defaults = cls.default_inputs
    example = "e.g. --input " + ",".join("x".join(map(str, s)) for s in defaults) + " " if defaults else ""
    count = f"takes {how_many_inputs(low, high)}, " if high != float("inf") else ""
    lines = [f"{cls.name}  [{cls.torch_name}]  {cls.summary}",
             f"{count}{example}(sizes joined by x, inputs separated by commas)",
             "", f"{cls.name} arguments (NAME=VALUE)" + (", omitted ones stay symbols:" if symbolic else ":")]
    if not cls.args:
        lines.append("  none")
    args = []
    for a in cls.args:
        accepts = f"one of {a.choice_list()}" if a.kind == "choice" else KIND_MEANINGS.get(a.kind, a.kind)
        accepts = accepts.replace("NAME", a.name.replace("_", "-"))
        if a.choices and a.kind != "choice":
            accepts += f", or {a.choice_list()}"
        if a.default is REQUIRED:
            default = "required" + (f"; symbol {shown(a.symbol)}" if symbolic and a.symbol is not None else "")
        else:
            default = f"default {shown(a.default)}" + ("" if a.default is not None else " (unset, as in torch)")
            if symbolic and a.symbol is not None:
                default += f"; omitted: symbol {shown(a.symbol)}"
        args.append((a.name, f"{accepts}; {default}" + (f". {a.help}" if a.help else "")))
    return "\n".join(lines + ([pairs(args, indent=2)] if args else []))


class _LayerHelp(argparse._HelpAction):
    """``--help`` after a layer name also lists that layer's arguments."""

    def __call__(self, parser, namespace, values, option_string=None):
        from ..registry import UnknownLayer, get_layer_class

        parser.print_help()
        name = getattr(namespace, "layer", None)
        try:
            cls = get_layer_class(name) if name else None
        except UnknownLayer:
            cls = None
        if cls is not None:
            print("\n" + layer_help(cls, symbolic=parser.get_default("symbolic")))
        parser.exit()


def _layer_parser(p: argparse.ArgumentParser, symbolic: bool) -> None:
    for action in p._actions:  # argparse's own --help becomes the layer-aware one
        if "--help" in action.option_strings:
            action.__class__ = _LayerHelp
            action.help = "show this help; after a layer name (formula conv2d --help) also its arguments"
    p.set_defaults(symbolic=symbolic)
    p.add_argument("layer", help="layer type, e.g. conv2d (see `symcost list`)")
    p.add_argument("settings", nargs="*", metavar="NAME=VALUE",
                   help="constructor arguments named as in torch.nn, e.g. in_channels=3 kernel_size=4,10 bias=false; "
                        "flags also as --bias / --no-bias, choices as --mode eval"
                        + ("; omitted ones stay symbols, integers or symbol names accepted" if symbolic else ""))
    p.add_argument("--input", metavar="SHAPE", help="input shape like 1x3x224x224"
                   + (" or 1x3xHxW (letters are symbols)" if symbolic else "")
                   + "; two inputs separated by a comma")
    if p.prog.endswith(" check"):  # FlopCounterMode counts one way: the torch convention
        p.add_argument("--convention", default=None, metavar="torch",
                       help="only torch: check compares FLOPs[torch] with FlopCounterMode")
    else:
        p.add_argument("--convention", default="flops", metavar="NAME",
                       help="FLOP counting convention (default flops): macs, flops, exact, mults, torch, or a peer "
                            "tool's (fritz, fvcore, thop, ptflops, torchprofile); `symcost conventions` explains each")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def configure_formula(p):
    _layer_parser(p, symbolic=True)
    p.add_argument("--latex", action="store_true", help="print a LaTeX align environment")
    p.add_argument("--backward", action="store_true",
                   help="the layer's gradients instead: per input and parameter (grad_input, grad_weight, grad_bias, "
                        "...), the MACs, FLOPs, reads and writes of the kernels torch's backward runs for it, then "
                        "forward + backward; a layer without a gradient is refused with the reason")


def configure_eval(p):
    _layer_parser(p, symbolic=False)


def configure_check(p):
    add_quiet_option(p)
    _layer_parser(p, symbolic=False)


def configure_plain(p):
    p.add_argument("--json", action="store_true", help="print JSON")


COMMANDS = {
    "list": ("every layer type, one line each", configure_plain, run_list),
    "conventions": ("the counting conventions and what each counts", configure_plain, run_conventions),
    "formula": ("closed-form output size, params, MACs, FLOPs and memory traffic of a layer", configure_formula,
                run_formula),
    "eval": ("numbers for one layer on a concrete input", configure_eval, run_eval),
    "check": ("symcost vs real PyTorch (shape, numel, FlopCounterMode); exit 1 on any difference", configure_check,
              run_check),
}
