"""The layers, read from the import graph: every import of every module under src/tether.

Imports are read with ``ast``, function-local ones too. Those under
``if TYPE_CHECKING:`` never run, so they are left out of the cycle check, but
they still count for the layer rules: a type from the wrong layer is a
dependency on it all the same.

The direction is ``cli`` -> ``session`` -> ``client``, ``auth`` -> ``classify``
-> ``errors``, ``text``, ``protocol``, ``durations``; the gateway stands beside
them on the shared modules alone; nothing imports ``cli``.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "tether"
TERMINAL_LIBRARIES = frozenset({"typer", "click", "rich"})
SHARED = frozenset({"tether.errors", "tether.text", "tether.protocol", "tether.durations",
                    "tether.replay", "tether.ttymodes"})
#: The gateway's persistence layer (SQLite or PostgreSQL): used by the gateway alone.
STORE = "tether.store"
ENTRY_POINT = "tether.__main__"
#: Modules this long under cli/ are engines unless they use a terminal library.
ENGINE_LINES = 150
#: The largest share of the source lines any one folder may hold.
FOLDER_SHARE = 0.30


@dataclass(frozen=True)
class Import:
    """One import statement's target, as the module that runs it sees it."""

    module: str  # the importing module, e.g. tether.cli.app
    target: str  # fully qualified: tether.cli.options, typer.main, websocket
    line: int
    typing_only: bool  # under `if TYPE_CHECKING:`

    @property
    def top(self) -> str:
        """The top-level name of the target: ``typer`` for ``typer.main``."""
        return self.target.partition(".")[0]

    def __str__(self) -> str:
        where = "under TYPE_CHECKING " if self.typing_only else ""
        return f"{self.module} imports {self.target} ({where}line {self.line})"


@dataclass(frozen=True)
class Module:
    """One source file of the package."""

    name: str
    path: Path
    lines: int
    is_package: bool


def in_layer(name: str, layer: str) -> bool:
    """Whether module ``name`` is ``layer`` or inside it."""
    return name == layer or name.startswith(layer + ".")


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


class _Reader(ast.NodeVisitor):
    """Every import in a module, at any depth, and whether only type checkers run it."""

    def __init__(self, module: str, is_package: bool, known: frozenset[str]) -> None:
        self.module = module
        self.package = module if is_package else module.rpartition(".")[0]
        self.known = known
        self.found: list[Import] = []
        self._typing_only = 0

    def _add(self, target: str, node: ast.stmt) -> None:
        self.found.append(Import(self.module, target, node.lineno, self._typing_only > 0))

    def visit_If(self, node: ast.If) -> None:
        if not _is_type_checking(node.test):
            self.generic_visit(node)
            return
        self._typing_only += 1
        for child in node.body:
            self.visit(child)
        self._typing_only -= 1
        for child in node.orelse:
            self.visit(child)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name, node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = node.module or ""
        if node.level:
            parts = self.package.split(".")
            parent = ".".join(parts[:len(parts) - node.level + 1])
            base = f"{parent}.{base}" if base else parent
        for alias in node.names:
            submodule = f"{base}.{alias.name}"
            self._add(submodule if submodule in self.known else base, node)


def read_imports(module: str, source: str, *, is_package: bool = False,
                 known: Iterable[str] = ()) -> list[Import]:
    """The imports of ``source``, the text of ``module``; ``known`` names its sibling modules."""
    reader = _Reader(module, is_package, frozenset(known))
    reader.visit(ast.parse(source))
    return list(dict.fromkeys(reader.found))


@cache
def modules() -> dict[str, Module]:
    """Every module under src/tether, by dotted name."""
    found: dict[str, Module] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        lines = len(path.read_text(encoding="utf-8").splitlines())
        found[".".join(parts)] = Module(".".join(parts), path, lines, is_package)
    return found


@cache
def imports() -> tuple[Import, ...]:
    """Every import of every module under src/tether."""
    known = frozenset(modules())
    out: list[Import] = []
    for module in modules().values():
        out += read_imports(module.name, module.path.read_text(encoding="utf-8"),
                            is_package=module.is_package, known=known)
    return tuple(out)


def _owner(target: str) -> str | None:
    """The module of the package that ``target`` names (its longest known prefix)."""
    parts = target.split(".")
    for end in range(len(parts), 0, -1):
        name = ".".join(parts[:end])
        if name in modules():
            return name
    return None


def _report(title: str, offenders: Iterable[object]) -> str:
    return title + ":\n  " + "\n  ".join(str(o) for o in offenders)


# --- the reader itself --------------------------------------------------------------------


def test_the_reader_sees_local_relative_and_typing_only_imports() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "import typing\n"
        "from . import sibling\n"
        "from ..errors import Code\n"
        "if TYPE_CHECKING:\n"
        "    from rich.console import Console\n"
        "else:\n"
        "    import json\n"
        "if typing.TYPE_CHECKING:\n"
        "    import websocket\n"
        "def later():\n"
        "    import typer.main\n"
        "    class Inner:\n"
        "        from tether.cli import app\n"
    )
    found = read_imports("tether.cli.thing", source,
                         known={"tether.cli.sibling", "tether.cli.app", "tether.errors"})
    seen = {(i.target, i.typing_only) for i in found}
    assert seen == {("typing", False), ("tether.cli.sibling", False), ("tether.errors", False),
                    ("rich.console", True), ("json", False), ("websocket", True),
                    ("typer.main", False), ("tether.cli.app", False)}
    assert {i.top for i in found} >= {"rich", "typer", "websocket"}


def test_every_module_is_read() -> None:
    assert "tether.cli.app" in modules() and "tether.errors" in modules()
    assert any(i.module == "tether.cli.app" and i.top == "typer" for i in imports())


# --- the rules ----------------------------------------------------------------------------


def _cycles() -> Iterator[tuple[list[str], list[Import]]]:
    """Each group of modules that import each other in a circle, and one cycle through it.

    Only imports that run count (not those under TYPE_CHECKING).
    """
    edges: dict[str, dict[str, Import]] = defaultdict(dict)
    for imp in imports():
        owner = _owner(imp.target)
        if owner is not None and owner != imp.module and not imp.typing_only:
            edges[imp.module].setdefault(owner, imp)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def connect(node: str) -> None:  # Tarjan's algorithm
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in edges[node]:
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group: list[str] = []
            while not group or group[-1] != node:
                group.append(stack.pop())
            groups.append(group)

    for node in sorted(modules()):
        if node not in index:
            connect(node)
    for group in groups:
        if len(group) > 1:
            yield sorted(group), _cycle_in(sorted(group), edges)


def _cycle_in(group: list[str], edges: dict[str, dict[str, Import]]) -> list[Import]:
    """The shortest cycle from the group's first module back to itself, as its imports."""
    members = set(group)
    start = group[0]
    came: dict[str, Import] = {}
    frontier = [start]
    for _ in range(len(group)):
        following: list[str] = []
        for node in frontier:
            for nxt, imp in sorted(edges[node].items()):
                if nxt not in members or nxt in came:
                    continue
                came[nxt] = imp
                following.append(nxt)
        if start in came:
            break
        frontier = following
    path = [came[start]]
    while path[-1].module != start:
        path.append(came[path[-1].module])
    return path[::-1]


def test_no_import_cycle() -> None:
    cycles = list(_cycles())
    assert not cycles, "\n".join(
        _report(f"import cycle among {', '.join(group)}; one way round", cycle)
        for group, cycle in cycles)


def test_terminal_libraries_only_under_cli() -> None:
    bad = [i for i in imports()
           if i.top in TERMINAL_LIBRARIES and not in_layer(i.module, "tether.cli")]
    assert not bad, _report("typer, click and rich belong to tether.cli alone", bad)


def test_nothing_outside_cli_imports_cli() -> None:
    bad = [i for i in imports() if in_layer(i.target, "tether.cli")
           and not in_layer(i.module, "tether.cli") and i.module != ENTRY_POINT]
    assert not bad, _report("only tether.cli and the entry point import tether.cli", bad)


def test_nothing_imports_the_cli_root() -> None:
    bad = [i for i in imports() if in_layer(i.target, "tether.cli.app")
           and i.module != ENTRY_POINT]
    assert not bad, _report("tether.cli.app is the root: only the entry point imports it", bad)


def test_websocket_client_only_in_client() -> None:
    bad = [i for i in imports() if i.top == "websocket" and not in_layer(i.module, "tether.client")]
    assert not bad, _report("websocket-client belongs to tether.client alone", bad)


def test_gateway_imports_only_the_shared_modules_and_its_own() -> None:
    # The package root (tether/__init__.py, the version) runs before any module of it
    # anyway; it may be named as long as it imports nothing of the package itself.
    root_imports = [i for i in imports() if i.module == "tether" and in_layer(i.target, "tether")]
    bad = root_imports + [
        i for i in imports() if in_layer(i.module, "tether.gateway")
        and in_layer(i.target, "tether") and i.target != "tether"
        and not in_layer(i.target, "tether.gateway") and not in_layer(i.target, STORE)
        and not any(in_layer(i.target, shared) for shared in SHARED)]
    assert not bad, _report(
        f"the gateway imports only {', '.join(sorted(SHARED))}, {STORE} and tether.gateway", bad)


def test_the_store_imports_only_the_shared_modules_and_its_own() -> None:
    bad = [i for i in imports() if in_layer(i.module, STORE)
           and in_layer(i.target, "tether") and not in_layer(i.target, STORE)
           and not any(in_layer(i.target, shared) for shared in SHARED)]
    assert not bad, _report(f"{STORE} imports only {', '.join(sorted(SHARED))} and itself", bad)


def test_only_the_gateway_uses_the_store() -> None:
    bad = [i for i in imports() if in_layer(i.target, STORE) and not in_layer(i.module, STORE)
           and not in_layer(i.module, "tether.gateway")
           and i.module != "tether.cli.commands.gateway"]
    assert not bad, _report(f"{STORE} is the gateway's: only tether.gateway uses it", bad)


def test_long_cli_modules_use_a_terminal_library() -> None:
    uses = {i.module for i in imports() if i.top in TERMINAL_LIBRARIES and not i.typing_only}
    bad = [f"{m.name} ({m.lines} lines) imports none of typer, click, rich"
           for m in modules().values()
           if in_layer(m.name, "tether.cli") and not in_layer(m.name, "tether.cli.output")
           and m.lines >= ENGINE_LINES and m.name not in uses]
    assert not bad, _report(
        f"a cli module of {ENGINE_LINES} lines or more that needs no terminal library is an "
        "engine: move it below cli/", bad)


def _folders() -> dict[str, int]:
    """Source lines under each folder of the package (the package's own root aside)."""
    lines: dict[str, int] = defaultdict(int)
    for module in modules().values():
        folder = module.path.parent
        while folder != PACKAGE:
            lines[str(folder.relative_to(PACKAGE.parent))] += module.lines
            folder = folder.parent
    return lines


@pytest.mark.parametrize("folder", sorted(_folders()))
def test_no_folder_holds_too_much_of_the_source(folder: str) -> None:
    total = sum(m.lines for m in modules().values())
    held = _folders()[folder]
    biggest = sorted((m for m in modules().values()
                      if m.path.is_relative_to(PACKAGE.parent / folder)),
                     key=lambda m: -m.lines)[:3]
    assert held <= FOLDER_SHARE * total, (
        f"{folder}/ holds {held} of {total} source lines ({held / total:.0%}, more than "
        f"{FOLDER_SHARE:.0%}); its largest modules: "
        + ", ".join(f"{m.name} ({m.lines})" for m in biggest))
