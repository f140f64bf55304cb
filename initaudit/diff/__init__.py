"""Comparing snapshots: per-tensor statuses, root causes, and the gate that checks a target."""

from initaudit.diff.compare import diff_snapshots
from initaudit.diff.report import DiffReport, report_to_json
from initaudit.diff.values import value_error

__all__ = ["DiffReport", "diff_snapshots", "report_to_json", "value_error"]
