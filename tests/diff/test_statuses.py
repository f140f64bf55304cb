"""Per-tensor statuses: renamed tensors are ``renamed``, not removed plus added
(:mod:`initaudit.diff.statuses`)."""

from __future__ import annotations

import json

from click.testing import CliRunner
from torch import nn

from initaudit import snapshot
from initaudit._cli import main
from initaudit.diff import diff_snapshots, report_to_json
from initaudit.freeze import freeze
from initaudit.render.diff import diff_markdown, diff_plain
from initaudit.target import Target


class _Old(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc = nn.Linear(4, 4)
        self.dec = nn.Linear(4, 2)
        nn.init.zeros_(self.enc.bias)
        nn.init.zeros_(self.dec.bias)


class _New(nn.Module):
    """_Old refactored: the same layers under other names."""

    def __init__(self):
        super().__init__()
        self.encoder = nn.Linear(4, 4)
        self.decoder = nn.Linear(4, 2)
        nn.init.zeros_(self.encoder.bias)
        nn.init.zeros_(self.decoder.bias)


class _NewChanged(_New):
    """Renamed, and the decoder's weight now drawn differently."""

    def __init__(self):
        super().__init__()
        nn.init.normal_(self.decoder.weight, std=0.5)


def _snap(cls):
    snap, _ = freeze(Target(spec="refactor.py", name="build", builder=cls), 0)
    return snap


def test_renamed_tensors_are_renamed_not_removed_plus_added(tmp_path):
    old, new = _snap(_Old), _snap(_New)
    report = diff_snapshots(old, new)
    st = {t.name: (t.status, t.renamed_from) for t in report.tensors}
    assert st == {
        "encoder.weight": ("renamed", "enc.weight"),
        "encoder.bias": ("renamed", "enc.bias"),  # zero biases: paired in build order
        "decoder.weight": ("renamed", "dec.weight"),
        "decoder.bias": ("renamed", "dec.bias"),
    }
    assert report.counts() == {"renamed": 4}
    assert report.verdict == "drift" and report.exit_code == 1  # by default a rename is drift
    assert report.root_cause is None
    assert "enc.weight → encoder.weight" in diff_plain(report)
    allowed = diff_snapshots(old, new, allow_renames=True)
    assert allowed.verdict == "identical" and allowed.exit_code == 0
    assert "4 renamed, allowed by --allow-renames" in diff_plain(allowed)
    data = report_to_json(allowed)
    assert data["verdict"] == "identical" and data["counts"] == {"renamed": 4}
    assert {t["renamed_from"] for t in data["tensors"]} == {
        "enc.weight", "enc.bias", "dec.weight", "dec.bias"
    }  # fmt: skip
    assert "`enc.weight → encoder.weight`" in diff_markdown(report)

    a = snapshot.write(old, tmp_path / "old.json")
    b = snapshot.write(new, tmp_path / "new.json")
    runner = CliRunner()
    plain = runner.invoke(main, ["diff", str(a), str(b)])
    assert plain.exit_code == 1, plain.output
    ok = runner.invoke(main, ["diff", str(a), str(b), "--allow-renames", "--format", "json"])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.output)["counts"] == {"renamed": 4}


def test_a_rename_with_a_real_change_is_still_drift_with_the_right_root_cause():
    report = diff_snapshots(_snap(_Old), _snap(_NewChanged), allow_renames=True)
    st = {t.name: t.status for t in report.tensors}
    assert st["encoder.weight"] == st["encoder.bias"] == st["decoder.bias"] == "renamed"
    assert st["decoder.weight"] == "added" and st["dec.weight"] == "removed"
    assert report.exit_code == 1
    assert report.root_cause.name in ("decoder.weight", "dec.weight")
