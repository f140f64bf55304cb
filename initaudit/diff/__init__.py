"""Comparing snapshots: per-tensor statuses, root causes, and the gate that checks a target."""

from initaudit.diff.compare import DiffReport, diff_snapshots, report_to_json, value_error

__all__ = ["DiffReport", "diff_snapshots", "report_to_json", "value_error"]
