"""Render a diff for GitHub Actions: workflow-command annotations and the job summary.

An ``::error`` annotation sits on the root cause's source line (the user's file, or the
library file that set the value), a ``::notice`` names every other drifted tensor, and the
markdown report is appended to ``$GITHUB_STEP_SUMMARY`` when the runner provides it. The text
report follows on stdout, so the log reads as it does locally.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from initaudit.diff.report import DiffReport
from initaudit.render.diff import diff_markdown, diff_text, verdict_line
from initaudit.render.matrix import matrix_markdown, matrix_text


def escape_data(text: str) -> str:
    """Escape a workflow command's message (GitHub's rules: %, CR, LF)."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """Escape a workflow command's property value (also ``:`` and ``,``)."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def location(site: str | None) -> str:
    """``file=…,line=…,`` for a ``path:line`` site (empty when there is none)."""
    if not site:
        return ""
    path, _, line = site.rpartition(":")
    if not path or not line.isdigit():
        return f"file={escape_property(site)},"
    return f"file={escape_property(path)},line={line},"


def _site_of(report: DiffReport, name: str) -> str | None:
    """The line that set a tensor: inside the library that set it, else the user's line."""
    for td in report.tensors:
        if td.name == name:
            lib = td.entry.get("library")
            if isinstance(lib, dict) and lib.get("site"):
                return str(lib["site"])
            return td.entry.get("site")
    return None


def annotations(report: DiffReport, label: str = "") -> list[str]:
    """The workflow commands for a diff: an error at the root cause, a notice per other drift.

    ``label`` (e.g. ``transformers-4.57.6 → transformers-5.0.0``) prefixes each title.
    """
    out: list[str] = []
    rc = report.root_cause
    prefix = f"initaudit {label}: " if label else "initaudit: "
    if rc is not None:
        title = f"{prefix}{rc.name} ({rc.status})"
        where = location(_site_of(report, rc.name) or rc.site)
        out.append(f"::error {where}title={escape_property(title)}::{escape_data(rc.reason)}")
    elif report.drift:
        title = escape_property(prefix + "drift")
        out.append(f"::error title={title}::{escape_data(verdict_line(report))}")
    for td in report.tensors:
        if td.status == "identical" or (rc is not None and td.name == rc.name):
            continue
        title = f"{prefix}{td.name} ({td.status})"
        out.append(
            f"::notice {location(_site_of(report, td.name))}title={escape_property(title)}::"
            + escape_data(td.reason)
        )
    return out


def diff_github(report: DiffReport) -> None:
    """Append the markdown to the job summary; print the annotations and the text report."""
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:  # first: a log reader that stops early (| head) must not cost the summary
        with Path(summary).open("a", encoding="utf-8") as f:
            f.write(diff_markdown(report) + "\n")
    for line in annotations(report):
        sys.stdout.write(line + "\n")
    sys.stdout.flush()
    diff_text(report)


def matrix_github(result: Any) -> None:
    """``diff DIR`` / ``matrix`` under Actions: each drifting step's annotations, the markdown
    report in the job summary, then the usual text."""

    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        with Path(summary).open("a", encoding="utf-8") as f:
            f.write(matrix_markdown(result) + "\n")
    for pair in result.pairs:
        if pair.drift:
            for line in annotations(pair.report, f"{pair.before} → {pair.after}"):
                sys.stdout.write(line + "\n")
    sys.stdout.flush()
    matrix_text(result)
