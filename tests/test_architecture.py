"""The house rules of ARCHITECTURE.md, checked on the source: rooms import only rooms below them,
through their public ``__init__``, at the top of the module; no import cycles anywhere."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Rooms, lowest first: a room imports only rooms before it in this list. A module of a room is
# ``featurizer.<room>._<module>``; a module room (``featurizer.transformer``) is one file.
ROOMS = (
    "featurizer.base",
    "featurizer.storage",
    "featurizer.spec",
    "featurizer.cache",
    "featurizer.inputs",
    "featurizer.backbones",
    "featurizer.engine",
    "featurizer.transformer",
    "featurizer",
    "pipelines.demo_data",
    "pipelines.report",
    "pipelines.heads",
    "pipelines.models",
    "pipelines.adapt",
    "pipelines.fit",
    "pipelines.evaluate",
    "pipelines.audit",
    "pipelines.index",
    "pipelines.finetune",
    "pipelines",
    "commands",
    "cli",
    "benchmarks",
)
PROJECT = ("featurizer", "pipelines", "commands", "cli", "benchmarks")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def room_of(module: str) -> str:
    """The room a module belongs to: the longest room name it starts with."""
    best = None
    for room in ROOMS:
        if module == room or module.startswith(room + "."):
            best = room if best is None or len(room) > len(best) else best
    assert best is not None, f"{module} is in no room: add it to ROOMS and ARCHITECTURE.md"
    return best


def sources() -> list[Path]:
    files = [ROOT / "cli.py", *sorted((ROOT / "benchmarks").glob("*.py"))]
    for package in ("featurizer", "pipelines", "commands"):
        files += sorted((ROOT / package).rglob("*.py"))
    return files


def imports(path: Path) -> list[tuple[str, int, bool, bool]]:
    """(imported module, line, inside a function, inside a package's PEP 562 ``__getattr__``) for
    each import of a project module."""
    tree = ast.parse(path.read_text())
    found = []

    def visit(node, function: str | None) -> None:
        for child in ast.iter_child_nodes(node):
            inner = child.name if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef) else function
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue  # names for type hints only: never run
            targets = []
            if isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                targets = [child.module]
            elif isinstance(child, ast.Import):
                targets = [a.name for a in child.names]
            for target in targets:
                if target.split(".")[0] in PROJECT:
                    lazy_init = path.name == "__init__.py" and function == "__getattr__"
                    found.append((target, child.lineno, function is not None, lazy_init))
            visit(child, inner)

    visit(tree, None)
    return found


def violations() -> list[str]:
    found = []
    for path in sources():
        me = module_name(path)
        mine = room_of(me)
        for target, line, in_function, lazy_init in imports(path):
            where = f"{path.relative_to(ROOT)}:{line}"
            theirs = room_of(target)
            if in_function and not (lazy_init and target.startswith(me + ".")):
                found.append(
                    f"{where}: imports {target} inside a function (only optional third-party libraries may be)"
                )
            if theirs == mine:
                continue
            if ROOMS.index(theirs) > ROOMS.index(mine):
                found.append(f"{where}: {mine} imports {target}, a room above it")
            elif target != theirs and not (theirs == "featurizer" and me == "featurizer"):
                found.append(f"{where}: imports {target}: another room is imported through its __init__ ({theirs})")
    return found


AREAS = {
    "featurizer": "featurizer/",
    "pipelines": "pipelines/",
    "commands and cli": ("commands/", "cli.py"),
    "benchmarks": "benchmarks/",
}


@pytest.mark.parametrize("area", AREAS)
def test_rooms_import_only_rooms_below_them_through_their_init(area):
    found = [v for v in violations() if v.startswith(AREAS[area])]
    assert not found, f"{len(found)} imports break the house rules:\n" + "\n".join(found)


def test_there_are_no_import_cycles():
    graph: dict[str, set[str]] = {}
    names = {module_name(p) for p in sources()}
    for path in sources():
        me = module_name(path)
        graph[me] = set()
        for target, _, in_function, _ in imports(path):
            while target not in names and "." in target:
                target = target.rsplit(".", 1)[0]
            if target in names and target != me and not in_function:
                graph[me].add(target)
    # a package imports its __init__ first: a module of featurizer.storage depends on featurizer.storage
    cycles = _cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]

    def strong(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return out


@pytest.mark.parametrize("room", [r for r in ROOMS if r.count(".") == 1 and (ROOT / r.replace(".", "/")).is_dir()])
def test_every_room_has_a_sorted_public_all(room):
    import importlib

    module = importlib.import_module(room)
    names = list(module.__all__)
    style = sorted(names, key=lambda n: (0 if n.isupper() else 1 if n[:1].isupper() else 2, n))  # ruff RUF022
    assert names == style, f"{room}.__all__ is not sorted"
    assert all(hasattr(module, n) for n in names), f"{room}.__all__ names what it does not have"


def test_module_paths_from_before_the_rooms_import_as_what_they_became():
    """Model files saved before the move name their classes by the old paths: they still load."""
    import importlib

    from featurizer._moved import MOVED
    from pipelines.models import TRUSTED_TYPES

    for old, new in MOVED.items():
        assert importlib.import_module(old) is importlib.import_module(new), old
    for name in TRUSTED_TYPES:
        module, _, cls = name.rpartition(".")
        assert isinstance(getattr(importlib.import_module(module), cls), type), name
