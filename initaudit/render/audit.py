"""Render an :class:`~initaudit.audit.AuditReport`: a rich table and findings, or JSON."""

from __future__ import annotations

import inspect
import os
from typing import Any

from rich.console import Group
from rich.text import Text

from initaudit.audit.report import AuditReport
from initaudit.audit.rows import TensorRow, init_text
from initaudit.render.console import MAX_LINE, console, markup, print_json, safe
from initaudit.render.tables import Column, layout
from initaudit.trace.tracer import signature_of

_ORIGIN_STYLE = {
    "default": "cyan",
    "library": "blue",
    "user": "green",
    "uninitialized": "bold red",
    "unknown": "yellow",
}
_SEVERITY_STYLE = {"error": "bold red", "info": "cyan"}
_MAX_TENSORS_LISTED = 12


def _g(x: Any) -> str:
    if isinstance(x, float):
        return f"{x:.4g}"
    return str(x) if x is not None else "—"


_SHORT_DTYPE = {
    "float64": "f64",
    "float32": "f32",
    "float16": "f16",
    "bfloat16": "bf16",
    "int64": "i64",
    "int32": "i32",
    "int16": "i16",
    "int8": "i8",
    "uint8": "u8",
    "bool": "bool",
}


def short_init(row: TensorRow) -> str:
    """The final init without arguments left at their defaults, e.g. ``kaiming_uniform_(a=√5)``."""
    if row.init is None or row.call is None or not row.init.startswith(row.call + "("):
        return row.init or "—"
    sig = signature_of(row.call)
    if sig is None:
        return row.init
    args = {
        k: v
        for k, v in row.args.items()
        if k in sig.parameters
        and k != "generator"
        and not (
            sig.parameters[k].default is not inspect.Parameter.empty
            and sig.parameters[k].default == v
        )
    }
    return init_text(row.call, args)


def short_source(row: TensorRow) -> str:
    """The origin in few characters: ``user highway.py:27``, ``default (reset_parameters)``."""
    if row.origin == "library" and row.library:
        lib = row.library
        head = f"{lib['name']} {lib['version']}" if lib.get("version") else str(lib["name"])
        return f"{head} {lib.get('function') or ''}".strip()
    if row.origin == "user" and row.site:
        return f"user {os.path.basename(row.site)}"
    if row.origin == "default" and row.scope:
        cls, _, method = row.scope.partition(".")
        return f"default ({method if cls == row.module else row.scope})"
    if row.origin == "uninitialized":
        return "UNINITIALIZED"
    return row.source


def _stat_cell(row: TensorRow) -> str:
    """Observed σ against the recipe's σ, with the verdict of the sampling-error test."""
    s = row.stats
    p = row.expected
    if s.get("numel", 0) == 0:
        return "empty"
    if s.get("nan") or s.get("inf"):
        return f"[bold red]{s.get('nan', 0)} NaN {s.get('inf', 0)} Inf[/]"
    if s.get("min") == s.get("max") and s.get("min") is not None:
        return f"all {markup(_g(s['min']))}"
    cell = f"{_g(s.get('std'))}"
    if p is None or p.constant:
        return cell
    cell += f" vs {_g(p.std)}"
    check = row.check
    if check == "off":
        cell += " [bold red]OFF[/]"
        if row.z_std is not None:
            cell += f" z{row.z_std:+.0f}"
        if row.out_of_range:
            cell += " range"
    elif check == "ok":
        cell += f" ok z{row.z_std:+.1f}" if row.z_std is not None else " ok"
    else:
        cell += " (n<16)"
    return cell


#: The inspect table's columns; ``drop``: the order they leave a narrow row (highest first).
_COLUMNS = (
    Column("#", justify="right", style="dim"),
    Column("tensor", names=True),
    Column("module", drop=5),
    Column("shape", drop=3),
    Column("final init", limit=34),
    Column("origin", drop=1, limit=24),
    Column("draws (lost)", drop=4, justify="right"),
    Column("σ vs recipe", drop=2),
)


def audit_table(report: AuditReport) -> Group:
    """One row per tensor in RNG order: init, origin, draws and statistics against the recipe."""
    env = report.environment
    tgt = report.target
    title = f"{tgt.get('name', '?')} · seed {report.seed}"
    if env.get("torch"):
        title += f" · torch {env['torch']} · {env.get('device')} · {env.get('default_dtype')}"
    if report.example_input:
        title += f" · example input {'×'.join(map(str, report.example_input))}"
    title += " · tensors in RNG order"
    cells = [
        [Text.from_markup(c, emoji=False) for c in _cells(i, row, report)]
        for i, row in enumerate(report.tensors)
    ]
    return layout(_COLUMNS, cells, console().width, title=safe(title, MAX_LINE))


def _cells(i: int, row: TensorRow, report: AuditReport) -> list[str]:
    name = markup(row.name)
    if row.aliases:
        name += " [dim]= " + markup(", ".join(row.aliases)) + "[/]"
    style = _ORIGIN_STYLE.get(row.origin, "")
    origin = markup(short_source(row))
    draws = f"{row.draws:,}" if row.draws else "0"
    if row.wasted_draws:
        draws += f" [dim]({row.wasted_draws:,})[/]"
    shape = "×".join(map(str, row.shape)) or "scalar"
    if row.dtype != report.environment.get("default_dtype"):
        shape += f" {_SHORT_DTYPE.get(row.dtype, row.dtype)}"
    return [
        str(i),
        name,
        markup(row.module),
        markup(shape),
        markup(short_init(row)),
        f"[{style}]{origin}[/]" if style else origin,
        draws,
        _stat_cell(row),
    ]


def audit_text(report: AuditReport) -> None:
    """Print the audit for people: the table, each finding with what to do, and a verdict."""
    con = console()
    con.print(audit_table(report))
    if report.findings:
        con.print()
        con.print("[bold]Findings[/]")
    for f in report.findings:
        style = _SEVERITY_STYLE[f.severity]
        con.print(
            f"[{style}]{f.severity.upper():5}[/] [bold]{markup(f.kind)}[/]: "
            + markup(f.message, MAX_LINE)
        )
        if f.tensors:
            listed = f.tensors[:_MAX_TENSORS_LISTED]
            more = len(f.tensors) - len(listed)
            con.print(
                "      tensors: "
                + markup(", ".join(safe(n) for n in listed), MAX_LINE)
                + (f", … and {more} more" if more > 0 else "")
            )
        con.print(f"      what to do: {markup(f.advice, MAX_LINE)}")
    con.print()
    rerun = report.rerun
    if rerun.get("ran"):
        diff = rerun.get("differing") or []
        check = (
            f"fresh-process rebuild (only torch seeded): {rerun.get('compared', 0)} tensors "
            + (f"compared, {len(diff)} differed" if diff else "compared, all bitwise identical")
        )
    else:
        why = rerun.get("skipped")
        check = f"fresh-process rebuild: skipped ({why})" if why else "fresh-process rebuild: not run"
    errors = len(report.errors)
    infos = len(report.findings) - errors
    verdict = (
        f"[bold red]FAIL[/]: {errors} error finding(s)"
        if errors
        else "[bold green]OK[/]: no error findings"
    )
    con.print(
        f"{len(report.tensors)} tensors · {errors} error(s) · {infos} info · {check}",
        soft_wrap=True,
    )
    con.print(verdict)


def audit_json(report: AuditReport) -> None:
    """Print the audit as JSON: ``tensors`` and ``findings`` lists plus a summary."""
    print_json(report.to_json())
