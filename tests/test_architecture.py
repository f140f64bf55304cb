"""The package's shape: folders are layers, imports go only downward, no cycle, no giant module.

Every import counts, the function-local ones too: a cycle hidden inside a function is still a
cycle. The rules are the README's "Layout" section, checked on the source with :mod:`ast`.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "initaudit"

#: Layer of each top-level module or folder; a module may import only its own layer or lower.
LAYERS = {
    "errors": 0,
    "tensors": 0,
    "libraries": 0,
    "recipes": 0,
    "provenance": 1,
    "config": 1,
    "target": 1,
    "trace": 2,
    "snapshot": 3,
    "freeze": 4,
    "diff": 5,
    "audit": 5,
    "codegen": 5,
    "envs": 6,
    "render": 7,
    "commands": 8,
    "_cli": 9,
    "pytest_plugin": 9,
    "__main__": 10,
    "": 0,  # initaudit/__init__.py: the version, and lazy re-exports resolved at attribute access
}

#: The only modules that may import inside a function: the entry points and the commands
#: (``initaudit.commands.*``), which keep ``initaudit --help``, ``initaudit CMD --help`` and
#: pytest's plugin loading from importing torch.
LOCAL_IMPORTS_ALLOWED = {"initaudit._cli", "initaudit.pytest_plugin", "initaudit"}
LOCAL_IMPORTS_ALLOWED_UNDER = ("initaudit.commands.",)


def _local_imports_allowed(module: str) -> bool:
    return module in LOCAL_IMPORTS_ALLOWED or module.startswith(LOCAL_IMPORTS_ALLOWED_UNDER)

#: Modules allowed a function-local import of one named module, each for a stated reason.
LOCAL_IMPORT_EXCEPTIONS = {
    # reading and diffing snapshots must not import torch; only writing values does
    ("initaudit.snapshot.write", "initaudit.snapshot.values"),
}

MAX_LINES = 600


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _resolve(module: str, node: ast.ImportFrom) -> list[str]:
    """The initaudit modules an ``import from`` loads (the package, and submodules named)."""
    if node.level:
        base = module.split(".")
        is_pkg = MODULES[module].name == "__init__.py"
        base = base[: len(base) - node.level + (1 if is_pkg else 0)]
        name = ".".join(base + ([node.module] if node.module else []))
    else:
        name = node.module or ""
    if name != "initaudit" and not name.startswith("initaudit."):
        return []
    out = [name] if name in MODULES else []
    out += [f"{name}.{a.name}" for a in node.names if f"{name}.{a.name}" in MODULES]
    return out


def _imports(module: str) -> list[tuple[str, ast.stmt, bool, list[str]]]:
    """``(imported module, node, inside a function, names)`` for every import in a module."""
    tree = ast.parse(MODULES[module].read_text())
    found: list[tuple[str, ast.stmt, bool, list[str]]] = []

    def visit(node: ast.AST, local: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = local or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.ImportFrom):
                for target in _resolve(module, child):
                    found.append((target, child, local, [a.name for a in child.names]))
            elif isinstance(child, ast.Import):
                for alias in child.names:
                    if alias.name in MODULES:
                        found.append((alias.name, child, local, []))
            visit(child, inner)

    visit(tree, False)
    return found


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for m in MODULES:
        for target, *_ in _imports(m):
            if target != m:
                graph[m].add(target)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def strong(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10_000)
    for v in sorted(graph):
        if v not in index:
            strong(v)
    return out


def _layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS[parts[1] if len(parts) > 1 else ""]


def test_every_module_has_a_layer():
    unknown = {m.split(".")[1] for m in MODULES if "." in m and m.split(".")[1] not in LAYERS}
    assert not unknown, f"add these to LAYERS (and the README's layout section): {unknown}"


def test_no_import_cycle():
    assert _cycles(_graph()) == []


def test_the_cycle_check_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]


def test_imports_only_go_down():
    upward = [
        f"{m} (layer {_layer(m)}) imports {t} (layer {_layer(t)})"
        for m in MODULES
        for t, *_ in _imports(m)
        if _layer(t) > _layer(m)
    ]
    assert upward == []


def test_function_local_imports_only_at_the_entry_points():
    local = [
        f"{m}:{node.lineno} imports {t}"
        for m in MODULES
        if not _local_imports_allowed(m)
        for t, node, inside, _ in _imports(m)
        if inside and (m, t) not in LOCAL_IMPORT_EXCEPTIONS
    ]
    assert local == []


def test_no_private_name_crosses_modules():
    private = [
        f"{m}:{node.lineno} imports {name} from {t}"
        for m in MODULES
        for t, node, _, names in _imports(m)
        for name in names
        if name.startswith("_") and name != "__version__" and t != m
    ]
    assert private == []


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_a_reader_cannot_hold_in_mind(module):
    lines = len(MODULES[module].read_text().splitlines())
    assert lines <= MAX_LINES, f"{module} has {lines} lines (at most {MAX_LINES}): split it"


def test_help_does_not_import_torch():
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from initaudit._cli import main\n"
        "r = CliRunner().invoke(main, ['--help'])\n"
        "assert r.exit_code == 0, r.output\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def _subcommands() -> list[str]:
    from initaudit._cli import main

    return sorted(main.commands)


def test_the_subcommands_are_found():
    assert set(_subcommands()) == {
        "freeze", "diff", "check", "explicit", "rewrite", "inspect", "matrix"
    }  # fmt: skip


@pytest.mark.parametrize("command", _subcommands())
def test_command_help_does_not_import_torch(command):
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from initaudit._cli import main\n"
        f"r = CliRunner().invoke(main, [{command!r}, '--help'])\n"
        "assert r.exit_code == 0, r.output\n"
        f"assert r.output.startswith('Usage: main {command} '), r.output\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
