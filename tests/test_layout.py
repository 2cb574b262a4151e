"""The package's shape, read from its source (AST, nothing imported): layers import downward only,
no import cycle at load time, no private name imported from another module, and the size limits
that keep modules and functions readable."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "live_seg"

RANK = {"base": 0, "model": 1, "media": 1, "render": 1, "pipeline": 1, "analysis": 2, "jobs": 3, "cli": 4}
"""Folders are layers: ``cli → jobs → analysis → pipeline, model, media, render → base``. A module may
import its own folder and folders of a lower rank; folders of one rank are siblings and import none of
each other."""
MAX_TOP_MODULES = 3
MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 80
MAX_PARAMETERS = 12
NARROW = {("jobs/video.py", "process_video"): 8}


def modules() -> dict[str, Path]:
    """Dotted module name (``live_seg.x.y``) → file."""
    found = {}
    for path in sorted(PKG.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def resolve(name: str, path: Path, node: ast.ImportFrom) -> list[str]:
    """The ``live_seg`` modules one ``from … import …`` names (a name may itself be a module)."""
    if node.level:
        package = name.split(".") if is_package(path) else name.split(".")[:-1]
        base = package[: len(package) - node.level + 1]
        target = ".".join([*base, *([node.module] if node.module else [])])
    else:
        target = node.module or ""
    if not target.startswith("live_seg"):
        return []
    known = modules()
    submodules = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in known]
    return submodules or [target]


def type_checking_nodes(tree: ast.AST) -> set[int]:
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for n in ast.walk(node))
    return skip


def imports(load_time_only: bool) -> dict[str, set[str]]:
    """Module → the ``live_seg`` modules it imports (all of them, or only those run at import time)."""
    graph: dict[str, set[str]] = {}
    for name, path in modules().items():
        tree = ast.parse(path.read_text())
        skip = type_checking_nodes(tree)
        nodes = tree.body if load_time_only else list(ast.walk(tree))
        targets: set[str] = set()
        for node in nodes:
            if id(node) in skip:
                continue
            if isinstance(node, ast.ImportFrom):
                targets.update(resolve(name, path, node))
            elif isinstance(node, ast.Import):
                targets.update(a.name for a in node.names if a.name.startswith("live_seg"))
        graph[name] = targets - {name}
    return graph


def layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in RANK else None


def test_layers_import_downward_only():
    wrong = []
    for module, targets in imports(load_time_only=False).items():
        own = layer(module)
        if own is None:  # live_seg/__init__.py: the lazy public API over every layer
            continue
        for target in targets:
            other = layer(target)
            if other is None or other == own or RANK[other] < RANK[own]:
                continue
            wrong.append(f"{module} imports {target}")
    assert not wrong, "upward or sideways imports:\n" + "\n".join(sorted(wrong))


def test_no_import_cycle_at_load_time():
    graph = imports(load_time_only=True)
    state: dict[str, int] = {}
    cycles: list[str] = []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if nxt not in graph:
                continue
            if state.get(nxt) == 1:
                cycles.append(" → ".join([*trail[trail.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    # a package importing its own submodules at load time is fine (its __init__ runs first)
    real = [c for c in cycles if not all(part.startswith(c.split(" → ")[0]) for part in c.split(" → "))]
    assert not real, "import cycles at load time:\n" + "\n".join(real)


def test_no_private_name_imported_from_another_module():
    wrong = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("live_seg")):
                wrong += [f"{name}: {a.name}" for a in node.names if a.name.startswith("_") and a.name != "__version__"]
    assert not wrong, "private names imported:\n" + "\n".join(wrong)


def test_folders_and_sizes():
    top = [p.name for p in PKG.glob("*.py")]
    folders = [p.name for p in PKG.iterdir() if (p / "__init__.py").exists()]
    assert len(top) <= MAX_TOP_MODULES, top
    assert len(folders) >= 5 and set(RANK) <= set(folders), folders
    readme = (ROOT / "README.md").read_text()
    assert all(f"`{folder}/`" in readme for folder in folders), "every folder is named in the README"
    for folder in folders:
        assert ast.get_docstring(ast.parse((PKG / folder / "__init__.py").read_text())), folder
    too_long = [
        str(p.relative_to(PKG)) for p in PKG.rglob("*.py") if len(p.read_text().splitlines()) > MAX_MODULE_LINES
    ]
    assert not too_long, f"modules over {MAX_MODULE_LINES} lines: {too_long}"


def functions():
    for path in sorted(PKG.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                yield path.relative_to(PKG).as_posix(), node


def count_parameters(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    a = node.args
    names = [*a.posonlyargs, *a.args, *a.kwonlyargs] + [x for x in (a.vararg, a.kwarg) if x]
    return len([n for n in names if n.arg not in ("self", "cls")])


def test_functions_are_short_and_narrow():
    long = []
    wide = []
    for where, node in functions():
        lines = node.end_lineno - node.lineno + 1
        if lines > MAX_FUNCTION_LINES:
            long.append(f"{where}:{node.name} {lines} lines")
        limit = NARROW.get((where, node.name), MAX_PARAMETERS)
        if count_parameters(node) > limit:
            wide.append(f"{where}:{node.name} {count_parameters(node)} parameters (at most {limit})")
    assert not long and not wide, "\n".join(long + wide)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from ..base.errors import X", ["live_seg.base.errors"]),
        ("from .. import base", ["live_seg.base"]),
        ("from .file_run import run_file", ["live_seg.pipeline.file_run"]),
    ],
)
def test_resolve_reads_relative_imports(source, expected):
    path = PKG / "pipeline" / "infer.py"
    node = ast.parse(source).body[0]
    assert resolve("live_seg.pipeline.infer", path, node) == expected
