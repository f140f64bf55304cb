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

from .diff import DiffReport
from .render_diff import diff_markdown, diff_text, verdict_line


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


def annotations(report: DiffReport) -> list[str]:
    """The workflow commands for a diff: an error at the root cause, a notice per other drift."""
    out: list[str] = []
    rc = report.root_cause
    if rc is not None:
        title = f"initaudit: {rc.name} ({rc.status})"
        out.append(f"::error {location(rc.site)}title={escape_property(title)}::{escape_data(rc.reason)}")
    elif report.drift:
        out.append(f"::error title={escape_property('initaudit: drift')}::{escape_data(verdict_line(report))}")
    for td in report.tensors:
        if td.status == "identical" or (rc is not None and td.name == rc.name):
            continue
        title = f"initaudit: {td.name} ({td.status})"
        out.append(
            f"::notice {location(td.entry.get('site'))}title={escape_property(title)}::{escape_data(td.reason)}"
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
