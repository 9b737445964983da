"""Structure: the layer registry is unchanged by refactors (a snapshot), and the package has no import cycles.

The registry snapshot (``fixtures/registry.json``) was written from the code *before* the layer classes were
rewritten from ``type(...)`` loops into plain ``class`` statements; it proves the rewrite changed nothing a caller can
see.  Regenerate it only for a deliberate change: ``python tests/test_structure.py --write``.
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

FIXTURE = Path(__file__).parent / "fixtures" / "registry.json"

#: class attributes, besides the declared arguments, that steer a layer's cost
_STEERING = ("dims", "ranks", "transposed", "per_element", "has_dilation", "unpadded_must_cover_kernel")


def _plain(v):
    if isinstance(v, (tuple, list)):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in sorted(v.items())}
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    assumed = getattr(v, "_assumptions_orig", None)  # a symbol's declared assumptions (positive, integer, ...)
    if assumed:
        return f"{v} ({','.join(sorted(k for k, x in assumed.items() if x))})"
    return f"<{type(v).__name__}> {v}"


def _arg(a) -> dict:
    from symcost.layers.base import REQUIRED

    return {"name": a.name, "kind": a.kind, "default": "REQUIRED" if a.default is REQUIRED else _plain(a.default),
            "symbol": _plain(a.symbol), "help": a.help, "choices": list(a.choices)}


def registry_snapshot() -> dict:
    from symcost.registry import all_layers

    out = {}
    for name, cls in all_layers().items():
        low, high = cls.input_count()
        out[name] = {
            "class": cls.__name__,
            "module": cls.__module__,
            "bases": [c.__name__ for c in cls.__mro__],
            "torch_name": cls.torch_name,
            "family": cls.family,
            "summary": cls.summary,
            "doc_sha256": hashlib.sha256((cls.__doc__ or "").encode()).hexdigest(),
            "args": [_arg(a) for a in cls.args],
            "inputs": [low, "inf" if high == float("inf") else high],
            "default_inputs": _plain(cls.default_inputs),
            **{k: _plain(getattr(cls, k)) for k in _STEERING if hasattr(cls, k)},
        }
    return out


def test_registry_matches_snapshot():
    expected = json.loads(FIXTURE.read_text())
    actual = json.loads(json.dumps(registry_snapshot()))
    assert sorted(actual) == sorted(expected), "layers added or removed"
    for name in expected:
        assert actual[name] == expected[name], f"layer {name!r} changed"


def test_snapshot_covers_the_rewritten_families():
    # the snapshot must hold the layers the rewrite touched, or the test above proves nothing about them
    expected = json.loads(FIXTURE.read_text())
    for name in ("conv2d", "conv_transpose3d", "batchnorm1d", "maxpool3d", "adaptive_avgpool1d", "gelu", "relu"):
        assert name in expected


if __name__ == "__main__" and "--write" in sys.argv:
    rows = [f"{json.dumps(k)}: {json.dumps(v, sort_keys=True)}" for k, v in registry_snapshot().items()]
    FIXTURE.write_text("{\n" + ",\n".join(rows) + "\n}\n")  # one layer a line: a change shows as that line
    print(f"wrote {FIXTURE}")


# ---- weight tables name real layers and families ------------------------------------------------------------

def test_a_convention_naming_an_unknown_layer_is_refused():
    import pytest

    from symcost.convention_base import Convention, weight_table
    from symcost.registry import UnknownLayer

    with pytest.raises(UnknownLayer, match="'conv2dd' is neither a catalog layer nor a layer family.*conv2d"):
        Convention("typo", "a deliberately wrong table", "this test", weight_table(0, mac=1), {"conv2dd": {"mac": 2}})
    with pytest.raises(UnknownLayer, match="'activations' is neither"):  # a family misspelt, in functional calls
        Convention("typo", "s", "this test", weight_table(0, mac=1), functional_weights={"activations": {"writes": 1}})
    # the right names load
    ok = Convention("fine", "s", "this test", weight_table(0, mac=1), {"conv2d": {"mac": 2}, "activation": {"fn": 1}})
    assert ok.family_weights["conv2d"]["mac"] == 2


def test_a_peer_quirk_naming_an_unknown_layer_is_refused():
    import pytest

    from symcost.peers import Quirk
    from symcost.registry import UnknownLayer

    with pytest.raises(UnknownLayer, match="'max_pool2d' is neither.*maxpool2d"):  # torch's name, not the catalog's
        Quirk("pooling counts 0", "a deliberately wrong table", layers=("max_pool2d",))
    assert Quirk("pooling counts 0", "right names", layers=("maxpool2d", "pool")).layers == ("maxpool2d", "pool")


def test_every_shipped_table_names_known_layers():
    # loading them validates them; this walks them again so a table that bypassed the check would show here
    from symcost.conventions import CONVENTIONS
    from symcost.peers import PEERS
    from symcost.registry import all_layers, families

    known = set(all_layers()) | families()
    for c in CONVENTIONS.values():
        assert set(c.family_weights) <= known, c.name
        assert set(c.functional_weights) <= known, c.name
    for p in PEERS.values():
        for q in p.quirks:
            assert set(q.layers) <= known, q.text
    assert {"fvcore", "thop", "ptflops", "torchprofile", "fritz"} <= set(CONVENTIONS)


# ---- the import graph -----------------------------------------------------------------------------------------

PACKAGE = Path(__file__).resolve().parent.parent / "symcost"

#: modules outside the CLI allowed to import symcost.commands: none (derive() lives in symcost/derive.py)
CLI_IMPORT_ALLOWED: set = set()


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _is_type_checking(node) -> bool:
    import ast

    test = node.test
    return isinstance(node, ast.If) and (getattr(test, "id", None) == "TYPE_CHECKING"
                                         or getattr(test, "attr", None) == "TYPE_CHECKING")


def _module_level(body):
    """The statements run when the module is imported: the top level, and inside top-level if/try/with blocks
    (not under ``if TYPE_CHECKING``, not in a function or class body's methods)."""
    import ast

    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        if isinstance(node, ast.If) and _is_type_checking(node):
            yield from _module_level(node.orelse)
            continue
        yield node
        if isinstance(node, ast.ClassDef):
            yield from _module_level(node.body)
        for field in ("body", "orelse", "finalbody", "handlers"):
            if not isinstance(node, ast.ClassDef) and isinstance(getattr(node, field, None), list):
                yield from _module_level(getattr(node, field))


def _imported(module: str, path: Path, node, modules: dict) -> list[str]:
    """The symcost modules one import statement loads (``from . import x`` is the submodule x when there is one)."""
    import ast

    is_package = path.name == "__init__.py"
    if isinstance(node, ast.Import):
        targets = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom):
        if node.level:
            base = module.split(".") if is_package else module.split(".")[:-1]
            base = base[:len(base) - (node.level - 1)]
            source = ".".join(base + ([node.module] if node.module else []))
        else:
            source = node.module or ""
        targets = [f"{source}.{a.name}" if f"{source}.{a.name}" in modules else source for a in node.names]
    else:
        return []
    out = []
    for t in targets:
        while t and t not in modules:  # `import symcost.layers.conv.Conv2d`-like: the longest module prefix
            t = t.rpartition(".")[0]
        if t.startswith("symcost") and t in modules:
            out.append(t)
    return out


def _run_time(body):
    """Every statement that can run: the module level and every function and class body, nested ones included
    (not under ``if TYPE_CHECKING``, which only type checkers read)."""
    import ast

    for node in body:
        if isinstance(node, ast.If) and _is_type_checking(node):
            yield from _run_time(node.orelse)
            continue
        yield node
        for field in ("body", "orelse", "finalbody", "handlers"):
            if isinstance(getattr(node, field, None), list):
                yield from _run_time(getattr(node, field))


def import_graph(module_level_only: bool = True) -> dict[str, set[str]]:
    import ast

    modules = _modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        nodes = _module_level(tree.body) if module_level_only else _run_time(tree.body)
        for node in nodes:
            graph[module].update(t for t in _imported(module, path, node, modules) if t != module)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_cycles():
    # the finder itself: a made-up graph with one three-module cycle and a tail
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_graph_resolves_relative_imports():
    graph = import_graph()
    assert "symcost.cost" in graph["symcost.layers.base"]          # from ..cost import Cost
    assert "symcost.tracing.causal" in graph["symcost.tracing.model_trace"]     # from . import causal as _causal
    assert "symcost.registry" in graph["symcost.layers.conv"]       # from ..registry import register
    assert "symcost.layers" not in graph["symcost.registry"]        # imported inside functions only
    assert "symcost.layers" in import_graph(module_level_only=False)["symcost.registry"]


def test_every_module_imports():
    import importlib

    for module in _modules():
        importlib.import_module(module)


def test_no_import_cycle_among_module_level_imports():
    assert cycles(import_graph()) == []


#: cycles known and left for now, each with its reason: the test fails when one is gone (drop it here) or grows
KNOWN_CYCLES: set = set()


def test_no_import_cycle_at_all():
    # function-level imports included: a cycle hidden inside a function is still a cycle for a reader following
    # the imports (and a call running back up the layers)
    found = {tuple(c) for c in cycles(import_graph(module_level_only=False))}
    assert found <= KNOWN_CYCLES, "import cycles (each a set of modules importing each other): " + "; ".join(
        " <-> ".join(c) for c in sorted(found - KNOWN_CYCLES))
    assert KNOWN_CYCLES <= found, f"no longer a cycle, drop from KNOWN_CYCLES: {sorted(KNOWN_CYCLES - found)}"


def test_the_run_time_graph_sees_function_level_imports():
    # the walker itself: an import inside a method of a class counts; one under `if TYPE_CHECKING` does not
    import ast

    tree = ast.parse("if TYPE_CHECKING:\n    import a\nclass C:\n    def f(self):\n        import b\n")
    names = [n.names[0].name for n in _run_time(tree.body) if isinstance(n, ast.Import)]
    assert names == ["b"]


def test_the_library_does_not_import_the_cli():
    # anywhere in a module, functions included: the library must work without symcost.commands
    offenders = set()
    for module, targets in import_graph(module_level_only=False).items():
        if module.startswith("symcost.commands") or module == "symcost.cli":
            continue
        offenders |= {(module, t) for t in targets if t == "symcost.commands" or t.startswith("symcost.commands.")}
    assert offenders <= CLI_IMPORT_ALLOWED, f"the library imports the CLI: {sorted(offenders - CLI_IMPORT_ALLOWED)}"
    assert CLI_IMPORT_ALLOWED <= offenders, f"no longer imported, drop from the list: {CLI_IMPORT_ALLOWED - offenders}"


# ---- private names stay private --------------------------------------------------------------------------------

#: private names still imported across modules, each with its reason: the test fails when one is gone (drop it)
KNOWN_PRIVATE_IMPORTS: set = set()


def private_imports(modules: dict | None = None) -> set[tuple[str, str, str]]:
    """(importing module, symcost module, name) for each ``from symcost.x import _name``, functions included (tests
    may import private names: they are not scanned)."""
    import ast

    modules = modules or _modules()
    found = set()
    for module, path in modules.items():
        for node in _run_time(ast.parse(path.read_text(), str(path)).body):
            if not isinstance(node, ast.ImportFrom):
                continue
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    source = _imported(module, path, ast.ImportFrom(node.module, [alias], node.level), modules)
                    if source:
                        found.add((module, source[0], alias.name))
    return found


def test_no_private_name_is_imported_across_modules():
    found = private_imports()
    assert found <= KNOWN_PRIVATE_IMPORTS, "private names imported from another module (make them public under a " \
        f"proper name, or move them): {sorted(found - KNOWN_PRIVATE_IMPORTS)}"
    assert KNOWN_PRIVATE_IMPORTS <= found, f"no longer imported, drop from the list: {KNOWN_PRIVATE_IMPORTS - found}"


def test_the_private_import_finder_finds_them(tmp_path):
    # the finder itself: torch's private names (_BatchNorm) are not symcost's; a made-up package's are found,
    # at module level and inside a function
    assert not any(source.startswith("torch") for _, source, _ in private_imports())
    (tmp_path / "__init__.py").write_text("")
    (tmp_path / "a.py").write_text("_x = 1\n_y = 2\n")
    (tmp_path / "b.py").write_text("from .a import _x\n\n\ndef f():\n    from .a import _y\n    return _y\n")
    modules = {"symcost.fake": tmp_path / "__init__.py", "symcost.fake.a": tmp_path / "a.py",
               "symcost.fake.b": tmp_path / "b.py"}
    assert private_imports(modules) == {("symcost.fake.b", "symcost.fake.a", "_x"),
                                        ("symcost.fake.b", "symcost.fake.a", "_y")}


# ---- one place reads a target's prefix -------------------------------------------------------------------------

#: the modules that may tell targets apart by their prefix: the parsed ``Target`` (targets.py) and the target
#: syntax with its torch-free name checks (target_names.py)
TARGET_PARSERS = {"symcost.targets", "symcost.target_names"}
_SOURCES = {"hf", "timm", "torchvision"}


def _prefix_tests(tree) -> list[int]:
    """Lines testing a target's source by its spelling: ``s.startswith("hf:")``, ``kind == "timm"``,
    ``kind in ("torchvision", "hf")``, ``"hf:" in s``."""
    import ast

    def names_a_source(node) -> bool:
        values = node.elts if isinstance(node, (ast.Tuple, ast.List, ast.Set)) else [node]
        return any(isinstance(v, ast.Constant) and isinstance(v.value, str) and v.value.rstrip(":") in _SOURCES
                   for v in values)

    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) in ("startswith", "partition",
                                                                               "rpartition"):
            if node.args and names_a_source(node.args[0]):
                lines.append(node.lineno)
        elif isinstance(node, ast.Compare) and any(names_a_source(n) for n in (node.left, *node.comparators)):
            lines.append(node.lineno)
    return lines


def test_only_the_target_parser_reads_a_target_prefix():
    import ast

    offenders = []
    for module, path in _modules().items():
        if module in TARGET_PARSERS or module.startswith("symcost.commands") or module == "symcost.cli":
            continue
        offenders += [f"{module}:{line}" for line in _prefix_tests(ast.parse(path.read_text(), str(path)))]
    assert offenders == [], f"a target's prefix read outside targets.Target: {offenders}"


def test_the_prefix_finder_finds_them():
    import ast

    tree = ast.parse('a.startswith("hf:")\nkind == "timm"\nk in ("torchvision", "x")\n"hf:" in s\n'
                     'a.startswith("h")\nd == "hfx"\nversions = ("torch", "torchvision")\n')
    assert _prefix_tests(tree) == [1, 2, 3, 4]


# ---- parse once: shapes and conventions ------------------------------------------------------------------------

def _calls(tree, names: set[str]) -> list[tuple[int, str]]:
    import ast

    return [(n.lineno, n.func.id if isinstance(n.func, ast.Name) else n.func.attr) for n in ast.walk(tree)
            if isinstance(n, ast.Call) and (getattr(n.func, "id", None) in names or getattr(n.func, "attr", None)
                                             in names)]


def _library() -> dict[str, Path]:
    return {m: p for m, p in _modules().items() if not (m.startswith("symcost.commands") or m == "symcost.cli")}


def test_a_convention_is_read_in_one_place():
    # `get_convention(c) if isinstance(c, str) else c` is conventions.as_convention; the refusal is written once
    import ast

    unread, messages = [], []
    for module, path in _modules().items():
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.IfExp) and _calls(node, {"get_convention"}) and _calls(node.test, {"isinstance"}) \
                    and module != "symcost.conventions":  # as_convention itself
                unread.append(f"{module}:{node.lineno}")
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and "unknown convention" in node.value:
                messages.append(module)
    assert unread == [], f"a convention read by hand (use conventions.as_convention): {unread}"
    assert messages == ["symcost.errors"], f"'unknown convention' written outside errors.unknown_convention: {messages}"


#: the library modules that still parse a shape string themselves (the request should arrive parsed): the test
#: fails when one stops (drop it here) or another starts
PARSING_BELOW_THE_CLI: set = set()
_SHAPE_PARSERS = {"parse_shape", "parse_shapes", "parse_shape_names", "parse_input_spec", "parse_dim",
                  "input_symbols"}


def test_shapes_are_parsed_at_the_edge():
    import ast

    found = {module for module, path in _library().items() if module != "symcost.parse"
             and _calls(ast.parse(path.read_text(), str(path)), _SHAPE_PARSERS)}
    assert found <= PARSING_BELOW_THE_CLI, f"a library module parses a shape string: " \
        f"{sorted(found - PARSING_BELOW_THE_CLI)}"
    assert PARSING_BELOW_THE_CLI <= found, f"no longer parses, drop from the list: {PARSING_BELOW_THE_CLI - found}"


def test_the_symbols_of_an_input_are_found_in_one_place():
    # `sorted({d for d in parse_shape_names(x) if isinstance(d, str)})` is parse.input_symbols
    import ast

    copies = []
    for module, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.SetComp) and _calls(node, {"parse_shape_names"}) and module != "symcost.parse":
                copies.append(module)
    assert copies == [], f"input symbols found by hand (use InputSpec.of(text).symbols): {copies}"


def test_no_function_is_longer_than_80_lines():
    # a function that long does several things; each piece gets a name (and a docstring) of its own
    import ast

    long = [f"{module}.{node.name}: {node.end_lineno - node.lineno + 1} lines"
            for module, path in _modules().items() for node in ast.walk(ast.parse(path.read_text(), str(path)))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 80]
    assert long == [], long


#: what a package's ``__init__.py`` may hold besides imports, ``__all__`` and constants: the root package's PEP 562
#: lazy loader (``import symcost`` stays instant) and the class that keeps ``symcost.model`` the function
INIT_WIRING = {"symcost": {"_Package", "__getattr__", "__dir__", "__class__"}}


def init_logic(modules: dict | None = None) -> dict[str, list[str]]:
    """Package ``__init__`` -> the functions, classes and statements it runs beyond imports and constants."""
    import ast

    found = {}
    for module, path in (modules or _modules()).items():
        if path.name != "__init__.py":
            continue
        extra = []
        for node in ast.parse(path.read_text(), str(path)).body:
            if isinstance(node, (ast.Import, ast.ImportFrom)) or (
                    isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)):
                continue
            if isinstance(node, (ast.Assign, ast.AnnAssign)) and all(
                    isinstance(t, ast.Name) and (t.id.isupper() or t.id.startswith("__") or t.id == "_EXPORTS")
                    for t in (node.targets if isinstance(node, ast.Assign) else [node.target])):
                continue
            sets_class = isinstance(node, ast.Assign) and getattr(node.targets[0], "attr", None) == "__class__"
            extra.append("__class__" if sets_class else getattr(node, "name", None) or f"line {node.lineno}")
        extra = [e for e in extra if e not in INIT_WIRING.get(module, set())]
        if extra:
            found[module] = extra
    return found


def test_no_package_init_holds_logic():
    # a package's __init__ names what the package offers; the code lives in modules named for what they hold
    assert init_logic() == {}, init_logic()


def test_the_init_logic_finder_finds_it(tmp_path):
    (tmp_path / "__init__.py").write_text('"""doc"""\nfrom .a import b\nLIMIT = 3\n__all__ = ["b"]\n'
                                          'def helper():\n    return 1\nresult = helper()\n')
    assert init_logic({"symcost.fake": tmp_path / "__init__.py"}) == {"symcost.fake": ["helper", "line 7"]}
