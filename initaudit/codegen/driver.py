"""``initaudit explicit``: trace, generate and verify, then write the file or check one."""

from __future__ import annotations

import ast
import gc
import os
import re
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from initaudit.codegen.program import trace_program
from initaudit.codegen.python import generate
from initaudit.codegen.verification import (
    GENERATED_NAME,
    Verification,
    failure_message,
    load_initializer,
    verify,
    verify_source,
)
from initaudit.errors import AuditFailure, UsageError
from initaudit.snapshot.layout import atomic_write
from initaudit.trace import tracer as trace_mod


@dataclass
class ExplicitResult:
    """What ``initaudit explicit`` did: the code, where it went and what verification found."""

    target: str
    seed: int
    source: str
    tensors: int
    statements: int
    verification: Verification
    written: str | None = None
    checked: str | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-compatible summary (the code itself only when nothing was written)."""
        out: dict[str, Any] = {
            "target": self.target,
            "seed": self.seed,
            "torch": torch.__version__,
            "tensors": self.tensors,
            "statements": self.statements,
            "verified": self.verification.ok,
            "modes": self.verification.modes,
            "mismatches": self.verification.mismatches,
        }
        if self.written:
            out["written"] = self.written
        if self.checked:
            out["checked"] = self.checked
        elif not self.written:
            out["source"] = self.source
        return out


def _statements(source: str) -> int:
    """Number of statements in ``initialize``'s body (0 when it cannot be parsed)."""
    # The cyclic GC paused while parsing: an AST holds no cycles, and the collections its
    # millions of new nodes trigger re-scan the whole heap (the model and its trace) each time.
    enabled = gc.isenabled()
    gc.disable()
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return 0
    finally:
        if enabled:
            gc.enable()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "initialize":
            return sum(1 for n in ast.walk(node) if isinstance(n, (ast.Expr, ast.Assign))) - 1
    return 0


def explicit(
    target: Any,
    seed: int = 0,
    *,
    out: Path | None = None,
    check: Path | None = None,
    example_input: tuple[int, ...] | None = None,
    unroll: bool = False,
) -> ExplicitResult:
    """Generate and verify explicit init code for a target, or re-verify an existing file.

    Repeated blocks become loops unless ``unroll``; folded code that does not verify falls back
    to the unrolled form (which must verify).
    """

    program = trace_program(
        target.build, seed, label=target.name, spec=target.spec, example_input=example_input
    )
    tensors = len(trace_mod.named_tensors(program.trace.model))
    if check is not None:
        if not check.is_file():
            raise UsageError(f"--check {check}: no such file")
        fn = load_initializer(check)
        try:
            v = verify(program, fn, target.build, example_input)
        except Exception as exc:
            raise AuditFailure(
                f"{check}: initialize(model) raised {type(exc).__name__}: {exc}"
            ) from exc
        source = check.read_text(encoding="utf-8")
        if not v.ok:
            raise AuditFailure(failure_message(v, str(check)))
        return ExplicitResult(
            target.spec, seed, source, tensors, _statements(source), v, checked=str(check)
        )
    source = generate(program, unroll=unroll)
    v = None
    if not unroll and source != generate(program, unroll=True):
        try:  # the folded code must verify as well as the unrolled would; else unroll
            v = verify_source(program, source, target.build, example_input)
        except Exception:
            v = None
        if v is None or not v.ok:
            source, v = generate(program, unroll=True), None
    if v is None:
        try:
            v = verify_source(program, source, target.build, example_input)
        except Exception as exc:
            raise AuditFailure(
                f"the generated code failed to run{_failed_at(exc, source)} "
                f"({type(exc).__name__}: {exc}); nothing written"
            ) from exc
    if not v.ok:
        raise AuditFailure(failure_message(v, "the generated code") + "; nothing written")
    if out is not None:
        atomic_write(out, lambda tmp: tmp.write_text(source, encoding="utf-8"))
    return ExplicitResult(
        target.spec,
        seed,
        source,
        tensors,
        _statements(source),
        v,
        written=str(out) if out else None,
    )


def _failed_at(exc: BaseException, source: str) -> str:
    """`` at line N (`statement`, setting TENSOR)`` for the generated line that raised."""
    lineno = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename.endswith(os.sep + GENERATED_NAME):
            lineno = frame.lineno
    if not lineno:
        return ""
    lines = source.splitlines()
    stmt = lines[lineno - 1].strip() if lineno <= len(lines) else ""
    # the group comment above it: ``# features.1.1 (BatchNorm2d)``
    groups = (re.fullmatch(r"# ([\w.]+ \([\w.]+\))", ln.strip()) for ln in lines[: lineno - 1])
    header = [m.group(1) for m in groups if m]
    return f" at line {lineno}: `{stmt}`" + (f", setting {header[-1]}" if header else "")


def summary_line(result: ExplicitResult) -> str:
    """One human line on what was generated or checked and how it was verified."""
    if result.checked:
        head = f"{result.checked} reproduces"
    elif result.written:
        head = f"wrote {result.written} ({result.statements} statements): reproduces"
    else:
        head = f"the code above ({result.statements} statements) reproduces"
    modes = " and ".join(result.verification.modes)
    return (
        f"{head} all {result.tensors} tensors of {result.target} (seed {result.seed}) bit for "
        f"bit and the RNG state after them; verified with torch {torch.__version__} "
        f"({modes})"
    )
