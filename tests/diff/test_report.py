"""The diff report's JSON form: :mod:`initaudit.diff.report`."""

from __future__ import annotations

import json

from initaudit import snapshot
from initaudit.diff import diff_snapshots, report_to_json

from ..conftest import ROOT

MLP = ROOT / "snapshots" / "mlp" / "torch-2.13.0+cpu-seed0.json"


def test_json_report_schema():
    report = diff_snapshots(snapshot.read(MLP), snapshot.read(MLP))
    data = report_to_json(report)
    assert {"verdict", "root_cause", "environment", "tensors", "tolerance", "counts"} <= set(data)
    assert data["format"] == "initaudit.diff" and data["verdict"] == "identical"
    assert all({"name", "status", "reason", "shape", "dtype"} <= set(t) for t in data["tensors"])
    json.dumps(data, allow_nan=False)
