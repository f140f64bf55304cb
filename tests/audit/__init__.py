"""Tests of :mod:`initaudit.audit`, and the helpers they share to run ``initaudit inspect``."""

from __future__ import annotations

import json
from pathlib import Path

from ..conftest import ROOT, run_cli

MODELS = ROOT / "tests" / "models"
ERROR_KINDS = {"uninitialized", "nondeterministic", "suspicious"}
BUGS = MODELS / "init_bugs.py"


def line_of(path: Path, needle: str) -> int:
    """The 1-based number of the first line of ``path`` that contains ``needle``."""
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if needle in line:
            return i
    raise AssertionError(f"{needle!r} not in {path}")


def inspect_json(*args: str, check: int | None = None) -> dict:
    """Run ``initaudit inspect ARGS --format json`` in a fresh process; return its report."""
    proc = run_cli("inspect", *args, "--format", "json", "-q", cwd=ROOT)
    if check is not None:
        assert proc.returncode == check, (proc.returncode, proc.stdout[-2000:], proc.stderr)
    data = json.loads(proc.stdout)
    assert data["summary"]["exit_code"] == proc.returncode
    return data


def rows_of(data: dict) -> dict[str, dict]:
    """The report's tensor rows by name."""
    return {t["name"]: t for t in data["tensors"]}


def kinds_of(data: dict, severity: str | None = None) -> set[str]:
    """The kinds of the report's findings (of one severity, if given)."""
    return {f["kind"] for f in data["findings"] if severity in (None, f["severity"])}


def finding_of(data: dict, kind: str, severity: str | None = None) -> dict:
    """The one finding of a kind (and severity, if given); fails unless there is exactly one."""
    found = [f for f in data["findings"] if f["kind"] == kind and severity in (None, f["severity"])]
    assert len(found) == 1, data["findings"]
    return found[0]
