"""The package's layout, checked: imports form no cycle and point inward, no module is over 600
lines, and the command line loads no heavy library until a command runs.

The import graph is read from the source with :mod:`ast` (nothing is imported): every ``import``
and ``from … import`` in a module, at the top, inside functions and under ``TYPE_CHECKING``
alike, since any of them runs (or is type-checked) as soon as its line is reached.
"""

from __future__ import annotations

import ast
import functools
import subprocess
import sys
import time
from collections.abc import Mapping, Set
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "archscope"

#: The most lines a module may have (docs/architecture.md): one concern a reader can hold.
MAX_LINES = 600


def _modules() -> dict[str, Path]:
    """Dotted module name → file, for every module of the package (``__init__`` as the package)."""
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _owner(name: str, modules: dict[str, Path]) -> str | None:
    """The module ``name`` is in: itself, or the nearest package or module above it
    (``archscope.render.bench.render_table`` → ``archscope.render.bench``)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _imports(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The archscope modules ``module`` imports anywhere in its file."""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                anchor = package[: len(package) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            # ``from archscope.render import table`` imports the submodule ``table``
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                     for a in node.names]
        else:
            continue
        for name in names:
            target = _owner(name, modules) if name.startswith("archscope") else None
            if target is not None and target != module:
                found.add(target)
    return found


@functools.cache
def import_graph() -> dict[str, frozenset[str]]:
    """Module → the archscope modules it imports (read once; the tests only read it)."""
    modules = _modules()
    return {m: frozenset(_imports(m, path, modules)) for m, path in modules.items()}


def cycles(graph: Mapping[str, Set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
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


def test_the_graph_reader_sees_every_kind_of_import() -> None:
    graph = import_graph()
    # a top-level import, a function-level one and one under TYPE_CHECKING, each in real modules
    assert "archscope.report" in graph["archscope.render"]           # top of render/__init__.py
    assert "archscope.render.table" in graph["archscope.render"]     # inside render()
    assert "archscope.bench.plan" in graph["archscope.bench.results"]  # under TYPE_CHECKING
    assert "archscope.commands.summary" not in graph["archscope.cli"]  # a string, imported lazily
    # and the reader finds a cycle where there is one
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle() -> None:
    """No cycle, function-level imports included. A package's ``__init__`` may import its own
    submodules (``archscope.render`` → ``archscope.render.table``), but then they must not import
    the package back: that edge is in the graph like any other."""
    assert cycles(import_graph()) == []


def test_imports_point_inward() -> None:
    """Nothing but ``python -m archscope`` imports the CLI, and only the CLI imports the
    commands: the library never depends on its command line."""
    graph = import_graph()
    for module, targets in graph.items():
        if module != "archscope.__main__":
            assert "archscope.cli" not in targets, module
        if module != "archscope.cli" and not module.startswith("archscope.commands"):
            assert not {t for t in targets if t.startswith("archscope.commands")}, module


def test_no_module_over_600_lines() -> None:
    lengths = {path.relative_to(PACKAGE.parent).as_posix():
               len(path.read_text(encoding="utf-8").splitlines())
               for path in _modules().values()}
    assert len(lengths) > 100  # the walk found the package
    assert {f: n for f, n in lengths.items() if n > MAX_LINES} == {}


def test_help_and_list_do_not_import_torch() -> None:
    """``archscope --help``, ``list`` and every command's ``--help`` load neither torch, onnx nor
    graphviz: they are imported inside the commands that need them."""
    code = ("import sys, click; from archscope.cli import main\n"
            "commands = main.list_commands(click.Context(main))\n"
            "assert len(commands) >= 9, commands\n"
            "for args in (['--help'], ['list'], *([name, '--help'] for name in commands)):\n"
            "    try: main(args)\n"
            "    except SystemExit: pass\n"
            "heavy = {'torch', 'onnx', 'graphviz'} & set(sys.modules)\n"
            "assert not heavy, heavy\n")
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    assert time.perf_counter() - start < 3  # generous on a loaded 2-core CI machine
