"""Render a project check (every model of ``[tool.initaudit]``): one summary, one verdict."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from rich.table import Table
from rich.text import Text

from initaudit.diff.check import ProjectCheck
from initaudit.diff.report import report_to_json
from initaudit.render import console as render
from initaudit.render.diff import diff_markdown, diff_text
from initaudit.render.github import annotations, escape_data, escape_property

_STYLE = {
    "identical": "green",
    "created": "cyan",
    "updated": "cyan",
    "drift": "bold red",
    "error": "bold red",
}


def _root_cause(m: Any) -> str:
    if m.error is not None:
        return m.error
    report = m.result.report if m.result is not None else None
    if report is None or report.root_cause is None:
        return ""
    rc = report.root_cause
    return f"{rc.name} ({rc.status})"


def _snapshot(m: Any) -> str:
    if m.result is None:
        return ""
    path = m.result.written or m.result.against
    if path is None:
        return ""
    try:  # the CLI runs from the config's folder: paths read relative to it
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def summary_line(project: ProjectCheck) -> str:
    """``DRIFT: 1 of 3 models …`` / ``IDENTICAL: all 3 models …`` / ``ERROR: …``."""
    n = len(project.models)
    counts: dict[str, int] = {}
    for m in project.models:
        counts[m.verdict] = counts.get(m.verdict, 0) + 1
    parts = ", ".join(f"{v} {k}" for k, v in counts.items())
    head = {"identical": "IDENTICAL", "drift": "DRIFT", "error": "ERROR"}[project.verdict]
    return f"{head}: {n} configured model(s) checked ({parts}) · {project.config.path}"


def project_text(project: ProjectCheck) -> None:
    """Each drifted model's diff report, then one table and the project's verdict."""
    con = render.console()
    for m in project.models:
        if m.verdict == "drift" and m.result is not None and m.result.report is not None:
            con.print(Text(f"── {m.model.label}", style="bold"))
            diff_text(m.result.report)
            con.print()
    table = Table(title_justify="left")
    for col in ("model", "seed", "verdict", "root cause / error", "snapshot"):
        table.add_column(col, overflow="fold")
    for m in project.models:
        table.add_row(
            Text(m.model.label),
            str(m.model.seed),
            Text(m.verdict, style=_STYLE.get(m.verdict, "")),
            Text(_root_cause(m)),
            Text(_snapshot(m)),
        )
    con.print(table)
    style = "bold green" if project.exit_code == 0 else "bold red"
    con.print(Text(summary_line(project), style=style))


def project_json(project: ProjectCheck) -> None:
    """The machine-readable project check: one entry per model, its diff as ``diff`` gives it."""
    models = []
    for m in project.models:
        report = m.result.report if m.result is not None else None
        models.append(
            {
                "target": m.model.target,
                "args": m.model.args,
                "seed": m.model.seed,
                "verdict": m.verdict,
                "error": m.error,
                "snapshot": _snapshot(m) or None,
                "diff": report_to_json(report) if report is not None else None,
            }
        )
    render.print_json(
        {
            "format": "initaudit.project-check",
            "format_version": 1,
            "config": str(project.config.path),
            "verdict": project.verdict,
            "exit_code": project.exit_code,
            "models": models,
        }
    )


def project_markdown(project: ProjectCheck) -> str:
    """A markdown summary table, then each drifted model's diff report."""
    icon = "✅" if project.exit_code == 0 else "❌"
    lines = [f"### initaudit check: {len(project.models)} configured model(s)", ""]
    lines += [f"**{icon} {summary_line(project)}**", ""]
    lines += ["| model | seed | verdict | root cause / error |", "|---|---|---|---|"]
    for m in project.models:
        cause = _root_cause(m).replace("|", "\\|")
        lines.append(f"| `{m.model.label}` | {m.model.seed} | **{m.verdict}** | {cause} |")
    lines.append("")
    for m in project.models:
        if m.verdict == "drift" and m.result is not None and m.result.report is not None:
            lines.append(diff_markdown(m.result.report))
    return "\n".join(lines) + "\n"


def print_project(project: ProjectCheck, fmt: str) -> None:
    """Print a project check as ``text``, ``json``, ``markdown`` or ``github``."""
    if fmt == "json":
        project_json(project)
    elif fmt == "markdown":
        sys.stdout.write(project_markdown(project))
        sys.stdout.flush()
    elif fmt == "github":

        summary = os.environ.get("GITHUB_STEP_SUMMARY")
        if summary:
            with Path(summary).open("a", encoding="utf-8") as f:
                f.write(project_markdown(project))
        for m in project.models:
            if m.error is not None:
                title = escape_property(f"initaudit: {m.model.target}")
                sys.stdout.write(f"::error title={title}::{escape_data(m.error)}\n")
            elif m.result is not None and m.result.report is not None:
                for line in annotations(m.result.report):
                    sys.stdout.write(line + "\n")
        sys.stdout.flush()
        project_text(project)
    else:
        project_text(project)
