"""A user's Python file, as archscope reports on it: the models it defines (read with ``ast``,
without running it) and the line of it where an exception was raised.

No torch import: ``archscope summary net.py`` (a forgotten ``:Name``) is answered before anything
heavy loads.
"""

from __future__ import annotations

import ast
import sysconfig
import traceback
from pathlib import Path

#: how many names a suggestion lists before ``…``.
_SHOW = 6

#: the base classes (last dotted component) that make a class a model: ``nn.Module``,
#: ``torch.nn.Module``, ``Module`` imported from ``torch.nn``, and the containers users derive from.
_MODULE_BASES = {"Module", "Sequential"}


def defined_models(path: str | Path) -> list[str]:
    """The names ``path`` defines that can be a model, read without running it.

    ``nn.Module`` subclasses first (a class whose base is ``nn.Module``, ``nn.Sequential``,
    another ``torch.nn`` class, or such a class of the same file), then public top-level
    functions (factories), then top-level assignments of a module instance
    (``model = nn.Sequential(…)``), each in file order. A file that cannot be read or parsed
    defines nothing here (importing it says why).
    """
    try:
        tree = ast.parse(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, SyntaxError, ValueError):
        return []
    modules: list[str] = []
    changed = True
    while changed:  # a subclass of a subclass defined further down the file
        changed = False
        for node in tree.body:
            if isinstance(node, ast.ClassDef) and node.name not in modules and any(
                    _is_module_base(b, modules) for b in node.bases):
                modules.append(node.name)
                changed = True
    order = {n.name: i for i, n in enumerate(tree.body) if isinstance(n, ast.ClassDef)}
    modules.sort(key=order.__getitem__)
    functions = [n.name for n in tree.body
                 if isinstance(n, ast.FunctionDef) and not n.name.startswith("_")]
    instances = [t.id for n in tree.body if isinstance(n, ast.Assign)
                 and isinstance(n.value, ast.Call) and _is_module_base(n.value.func, modules)
                 for t in n.targets if isinstance(t, ast.Name) and not t.id.startswith("_")]
    return [*modules, *functions, *instances]


def _is_module_base(node: ast.expr, modules: list[str]) -> bool:
    name = _dotted(node)
    if not name:
        return False
    last = name.rsplit(".", 1)[-1]
    return (last in _MODULE_BASES or name in modules
            or (name.startswith(("nn.", "torch.nn.")) and last[:1].isupper()))


def _dotted(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        head = _dotted(node.value)
        return f"{head}.{node.attr}" if head else ""
    return ""


def name_hint(path: str) -> str:
    """``net.py:Net (net.py defines Net, build)``: how to name a model of the file ``path``, with
    the names it really defines; ``""`` when it defines none that can be a model."""
    names = defined_models(path)
    if not names:
        return ""
    listed = ", ".join(names[:_SHOW]) + (", …" if len(names) > _SHOW else "")
    return f"{path}:{names[0]} ({path} defines {listed})"


def _library_roots() -> tuple[Path, ...]:
    """Where code that is not the user's lives: Python's library, site-packages, archscope."""
    paths = sysconfig.get_paths()
    roots = {Path(paths[key]).resolve() for key in ("stdlib", "platstdlib", "purelib", "platlib")
             if key in paths}
    roots.add(Path(__file__).resolve().parent)  # archscope itself (the zoo is ours too)
    roots.add(Path(__file__).resolve().parent.parent / "zoo")  # an editable install's zoo/
    return tuple(roots)


def user_location(exc: BaseException, file: str | Path | None = None, shown: str = "") -> str:
    """Where in the user's code ``exc`` was raised: ``net.py, line 12: `self.fc = foo```, or
    ``""`` when no frame of its traceback is the user's.

    The innermost frame outside Python's library, site-packages and archscope is the user's
    line. A frame in ``file`` is shown under ``shown`` (the path as the user typed it); any other
    relative to the working directory where it lies below it.
    """
    user = None
    roots = _library_roots()
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename.startswith("<"):
            continue  # <frozen importlib._bootstrap>, <string>
        path = Path(frame.filename).resolve()
        if not any(path.is_relative_to(root) for root in roots):
            user = frame
    if user is None or user.lineno is None:
        return ""
    path = Path(user.filename).resolve()
    if file is not None and path == Path(file).resolve() and shown:
        name = shown
    else:
        try:
            name = str(path.relative_to(Path.cwd()))
        except ValueError:
            name = str(path)
    code = (user.line or "").strip()
    return f"{name}, line {user.lineno}" + (f": `{code}`" if code else "")


__all__ = ["defined_models", "name_hint", "user_location"]
