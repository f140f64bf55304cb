"""Edit a model's own source so its ``__init__`` initializes every tensor explicitly.

The class's ``__init__`` keeps its code; libcst adds two things to it: a first statement saving
torch's RNG state, and a block at the end that restores that state and replays every draw and
write of the construction as explicit ``nn.init`` calls (the code :mod:`initaudit.codegen`
generates, on ``self``). Construction then gives bitwise the same tensors and leaves the RNG in
the same state as before, whatever torch's module defaults do. The edit is verified on the
rewritten source before the file is replaced (atomically); a second run regenerates the same
block and changes nothing.
"""

from __future__ import annotations

import difflib
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import libcst as cst
import torch

from initaudit.codegen.program import Program, trace_program
from initaudit.codegen.python import generate_body
from initaudit.codegen.verification import (
    Verification,
    compare_model,
    defaults_disabled,
    failure_message,
)
from initaudit.codegen.wrap import wrap_lines
from initaudit.errors import AuditFailure, TargetError, UsageError
from initaudit.snapshot.layout import atomic_write
from initaudit.target import resolve

STATE_VAR = "_initaudit_rng"
MARKER = "# initaudit: explicit initialization"


@dataclass
class RewriteResult:
    """The rewritten source, the diff against the file, and whether anything changed."""

    path: Path
    cls: str
    old: str
    new: str
    written: bool

    @property
    def changed(self) -> bool:
        """True when the rewrite differs from the file."""
        return self.old != self.new

    def diff(self) -> str:
        """A unified diff from the file to the rewrite."""
        name = str(self.path)
        return "".join(
            difflib.unified_diff(
                self.old.splitlines(keepends=True),
                self.new.splitlines(keepends=True),
                fromfile=f"a/{name}",
                tofile=f"b/{name}",
            )
        )


def parse_spec(spec: str) -> tuple[Path, str | None]:
    """Split ``FILE.py[:CLASS]``."""
    path, _, cls = spec.partition(":")
    if not path.endswith(".py"):
        raise UsageError(f"rewrite needs FILE.py[:CLASS], got {spec!r}")
    p = Path(path)
    if not p.is_file():
        raise TargetError(f"model file {p} does not exist")
    return p, cls or None


# ------------------------------------------------------------------------------ libcst edits


def _is_state_save(stmt: cst.CSTNode) -> bool:
    if not isinstance(stmt, cst.SimpleStatementLine) or len(stmt.body) != 1:
        return False
    node = stmt.body[0]
    return (
        isinstance(node, cst.Assign)
        and len(node.targets) == 1
        and isinstance(node.targets[0].target, cst.Name)
        and node.targets[0].target.value == STATE_VAR
    )


def _is_restore(stmt: cst.CSTNode) -> bool:
    if not isinstance(stmt, cst.SimpleStatementLine) or len(stmt.body) != 1:
        return False
    node = stmt.body[0]
    return (
        isinstance(node, cst.Expr)
        and isinstance(node.value, cst.Call)
        and any(
            isinstance(a.value, cst.Name) and a.value.value == STATE_VAR for a in node.value.args
        )
    )


def _strip(body: list[cst.BaseStatement]) -> list[cst.BaseStatement]:
    """``__init__``'s statements without a block added by an earlier rewrite."""
    out: list[cst.BaseStatement] = []
    skip_with = False
    for stmt in body:
        if _is_state_save(stmt):
            continue
        if _is_restore(stmt):
            skip_with = True
            continue
        if skip_with and isinstance(stmt, cst.With):
            skip_with = False
            continue
        skip_with = False
        out.append(stmt)
    return out


class _InitEditor(cst.CSTTransformer):
    def __init__(self, cls: str, block: list[cst.BaseStatement] | None) -> None:
        self.cls = cls
        self.block = block
        self.found = False
        self.depth = 0

    def visit_ClassDef(self, node: cst.ClassDef) -> bool:
        self.depth += 1
        return node.name.value == self.cls and self.depth == 1

    def leave_ClassDef(self, original: cst.ClassDef, updated: cst.ClassDef) -> cst.ClassDef:
        self.depth -= 1
        return updated

    def leave_FunctionDef(
        self, original: cst.FunctionDef, updated: cst.FunctionDef
    ) -> cst.FunctionDef:
        if updated.name.value != "__init__" or not isinstance(updated.body, cst.IndentedBlock):
            return updated
        self.found = True
        body = _strip(list(updated.body.body))
        if self.block is not None:
            first = 1 if body and _is_docstring(body[0]) else 0
            save = cst.parse_statement(f"{STATE_VAR} = torch.get_rng_state()\n")
            body = [*body[:first], save, *body[first:], *self.block]
        return updated.with_changes(body=updated.body.with_changes(body=body))


def _is_docstring(stmt: cst.BaseStatement) -> bool:
    return (
        isinstance(stmt, cst.SimpleStatementLine)
        and len(stmt.body) == 1
        and isinstance(stmt.body[0], cst.Expr)
        and isinstance(stmt.body[0].value, (cst.SimpleString, cst.ConcatenatedString))
    )


def _edit(source: str, cls: str, block: list[cst.BaseStatement] | None) -> str:
    module = cst.parse_module(source)
    editor = _InitEditor(cls, block)
    new = module.visit(editor)
    if not editor.found:
        raise TargetError(f"class {cls} has no __init__ to rewrite")
    return new.code


def _ensure_imports(source: str, uses_math: bool) -> str:
    """Add ``import math``, ``import torch`` and ``from torch import nn`` where missing, each
    where ruff's isort puts it (sections, straight imports before ``from``, sorted; ``nn``
    joins an existing ``from torch import …``), so a sorted import block stays sorted."""
    module = cst.parse_module(source)
    bound: dict[str, str] = {}  # name -> module it is bound to, from top-level imports
    for stmt in module.body:
        for node in _import_nodes(stmt):
            if isinstance(node, cst.Import):
                for alias in node.names:
                    dotted = module.code_for_node(alias.name)
                    if alias.asname:
                        bound[module.code_for_node(alias.asname.name)] = dotted
                    else:
                        bound[dotted.split(".")[0]] = dotted.split(".")[0]
            elif not node.relative and node.module and not isinstance(node.names, cst.ImportStar):
                mod = module.code_for_node(node.module)
                for alias in node.names:
                    name = module.code_for_node(alias.name)
                    asname = module.code_for_node(alias.asname.name) if alias.asname else name
                    bound[asname] = f"{mod}.{name}"
    needed = []
    if uses_math and bound.get("math") != "math":
        needed.append("import math")
    if bound.get("torch") != "torch":
        needed.append("import torch")
    if bound.get("nn") != "torch.nn":
        needed.append("from torch import nn")
    for line in needed:
        module = _insert_import(module, cst.parse_statement(line + "\n"))
    return module.code


def _import_nodes(stmt: cst.CSTNode) -> list[cst.Import | cst.ImportFrom]:
    if isinstance(stmt, cst.SimpleStatementLine):
        return [n for n in stmt.body if isinstance(n, (cst.Import, cst.ImportFrom))]
    return []


def _import_key(module: cst.Module, stmt: cst.CSTNode) -> tuple[int, int, str]:
    """(section, from-import, module) as ruff's isort orders a statement."""
    node = _import_nodes(stmt)[0]
    if isinstance(node, cst.Import):
        name, is_from = module.code_for_node(node.names[0].name), 0
    else:
        if node.relative:
            return (4, 1, "")
        name, is_from = module.code_for_node(node.module) if node.module else "", 1
    top = name.split(".")[0]
    section = 0 if top == "__future__" else 1 if top in sys.stdlib_module_names else 2
    return (section, is_from, name.lower())


def _insert_import(module: cst.Module, new: cst.SimpleStatementLine) -> cst.Module:
    body = list(module.body)
    start = _after_docstring(module)
    end = start
    while end < len(body) and _import_nodes(body[end]):
        end += 1
    key = _import_key(module, new)
    if start == end:  # no import block: a new one after the docstring
        return module.with_changes(body=[*body[:start], new, *body[start:]])
    # groups of the block, split at blank lines; a later group that looks like the same
    # section is the project's own (first-party) section
    groups: list[tuple[int, list[int]]] = []
    for i in range(start, end):
        if not groups or body[i].leading_lines:
            rank = _import_key(module, body[i])[0]
            if groups and rank <= groups[-1][0]:
                rank = groups[-1][0] + 1
            groups.append((rank, [i]))
        else:
            groups[-1][1].append(i)
    same = next((g for g in groups if g[0] == key[0]), None)
    if same is not None:
        members = same[1]
        if key[1] == 1 and key[2] == "torch":  # join an existing ``from torch import …``
            for i in members:
                node = _import_nodes(body[i])[0]
                if (
                    isinstance(node, cst.ImportFrom)
                    and _import_key(module, body[i])[1:] == (1, "torch")
                    and not isinstance(node.names, cst.ImportStar)
                    and node.lpar is None
                ):
                    names = [*node.names, cst.ImportAlias(name=cst.Name("nn"))]
                    names.sort(key=lambda a: _member_key(module.code_for_node(a.name)))
                    comma = cst.Comma(whitespace_after=cst.SimpleWhitespace(" "))
                    names = [a.with_changes(comma=comma) for a in names[:-1]] + [
                        names[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)
                    ]
                    stmt = body[i].with_changes(body=[node.with_changes(names=names)])
                    body[i] = stmt
                    return module.with_changes(body=body)
        at = next((i for i in members if _import_key(module, body[i])[1:] > key[1:]), None)
        if at is None:
            at = members[-1] + 1
        elif at == members[0]:  # first of its group: take over the group's leading lines
            new = new.with_changes(leading_lines=body[at].leading_lines)
            body[at] = body[at].with_changes(leading_lines=[])
        return module.with_changes(body=[*body[:at], new, *body[at:]])
    later = next((g for g in groups if g[0] > key[0]), None)
    if later is None:  # a new last section
        new = new.with_changes(leading_lines=[cst.EmptyLine()])
        return module.with_changes(body=[*body[:end], new, *body[end:]])
    at = later[1][0]
    if at == start:  # a new first section
        new = new.with_changes(leading_lines=body[at].leading_lines)
    else:
        new = new.with_changes(leading_lines=[cst.EmptyLine()])
    body[at] = body[at].with_changes(leading_lines=[cst.EmptyLine()])
    return module.with_changes(body=[*body[:at], new, *body[at:]])


def _member_key(name: str) -> tuple[int, str]:
    """ruff's order-by-type for the names of a ``from`` import: CONSTANTS, Classes, others."""
    if name.isupper() and len(name) > 1:
        return (0, name)
    return (1 if name[:1].isupper() else 2, name.lower())


def _after_docstring(module: cst.Module) -> int:
    return 1 if module.body and _is_docstring(module.body[0]) else 0


# ------------------------------------------------------------------------------ the rewrite


@contextmanager
def _sibling(path: Path, text: str, tag: str) -> Iterator[Path]:
    """A temporary copy of ``text`` beside ``path`` (so its relative imports still work)."""
    tmp = path.with_name(f".{path.stem}.initaudit-{tag}-{os.getpid()}.py")
    tmp.write_text(text, encoding="utf-8")
    try:
        yield tmp
    finally:
        tmp.unlink(missing_ok=True)


def _pick_class(path: Path, cls: str | None) -> str:
    if cls is not None:
        return cls
    target = resolve(str(path))
    if not isinstance(target.builder, type):
        raise UsageError(
            f"{path}: {target.name} is a function; name the class to rewrite as {path}:CLASS"
        )
    return target.name


def rewrite(spec: str, *, seed: int = 0, write: bool = True) -> RewriteResult:
    """Rewrite the class's ``__init__`` with explicit init; verify, then replace the file."""
    path, cls = parse_spec(spec)
    try:
        old = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TargetError(f"cannot read {path}: {exc}") from None
    cls = _pick_class(path, cls)
    try:
        stripped = _edit(old, cls, None)
    except cst.ParserSyntaxError as exc:
        raise TargetError(f"cannot parse {path}: {exc.message}") from None
    with _sibling(path, stripped, "plain") as plain:
        target = resolve(f"{plain}:{cls}")
        if not isinstance(target.builder, type):
            raise UsageError(f"{cls} in {path} is not a class")
        program = trace_program(target.build, seed, label=cls, spec=spec)
    lines, uses_math = generate_body(program, root="self", line_only=True)
    block_text = "\n".join(
        [
            f"{MARKER} (initaudit rewrite, torch {torch.__version__.split('+')[0]}):",
            "# replays every draw above from the same RNG state, so nothing depends on defaults",
            f"torch.set_rng_state({STATE_VAR})",
            "with torch.no_grad():",
            *wrap_lines(lines, "    ", outer=8),
            "",
        ]
    )
    block = list(cst.parse_module(block_text).body)
    new = _ensure_imports(_edit(old, cls, block), uses_math)
    if new != old:
        _verify(path, new, cls, program)
    if write and new != old:
        atomic_write(path, lambda tmp: tmp.write_text(new, encoding="utf-8"))
    return RewriteResult(path, cls, old, new, written=write and new != old)


def _verify(path: Path, new: str, cls: str, program: Program) -> None:
    """Build the rewritten class (defaults on, then NaN-filled) and compare bitwise."""
    reference = program.trace.model
    bad: dict[str, list[str]] = {}
    saved = torch.get_rng_state()
    with _sibling(path, new, "check") as rewritten:
        target = resolve(f"{rewritten}:{cls}")
        try:
            torch.manual_seed(program.seed)
            model = target.build()
            bad["torch defaults on"] = compare_model(reference, model, program.trace.rng_after)
            with defaults_disabled():
                torch.manual_seed(program.seed)
                model = target.build()
                bad["torch defaults replaced by NaN"] = compare_model(
                    reference, model, program.trace.rng_after
                )
        finally:
            torch.set_rng_state(saved)
    v = Verification(0, bad, list(bad))
    if not v.ok:
        raise AuditFailure(failure_message(v, f"the rewritten {cls}") + "; file unchanged")
