"""``initaudit check``: the CI gate against committed snapshots, on a real model."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from click.testing import CliRunner

from initaudit import snapshot
from initaudit._cli import main
from initaudit.diff.check import check_snapshot, find_committed

from ..conftest import ROOT, run_cli

MLP = ROOT / "snapshots" / "mlp" / "torch-2.13.0+cpu-seed0.json"
ZERO_BIAS = "        T.nn.init.zeros_(self.hid2.bias)  # a deliberate change\n"


def test_check_update_then_pass_then_fail_then_accept(tmp_path):
    model = tmp_path / "net.py"
    shutil.copy(ROOT / "examples" / "mlp.py", model)
    # no snapshot yet: a clear error, nothing written
    proc = run_cli("check", "net.py", "-q", cwd=tmp_path)
    assert (
        proc.returncode == 2
        and "no committed snapshot" in proc.stderr
        and "--update" in proc.stderr
    )
    assert not (tmp_path / "snapshots").exists()
    # --update creates it
    run_cli("check", "net.py", "-q", "--update", cwd=tmp_path, check=0)
    (written,) = (tmp_path / "snapshots" / "net").glob("*.json")
    assert snapshot.values_path_for(written).exists()
    # an unchanged model passes
    proc = run_cli("check", "net.py", "-q", cwd=tmp_path, check=0)
    assert proc.stdout.startswith("IDENTICAL")
    # a model change fails with the drift report
    src = model.read_text().replace("        self.oupt = T.nn.Linear(5, 2)\n", "")
    src = src.replace(
        "        self.hid2 = T.nn.Linear(4, 5)\n",
        "        self.hid2 = T.nn.Linear(4, 5)\n"
        + ZERO_BIAS
        + "        self.oupt = T.nn.Linear(5, 2)\n",
    )
    model.write_text(src)
    proc = run_cli("check", "net.py", "-q", "--format", "json", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    data = json.loads(proc.stdout)
    assert data["verdict"] == "drift" and data["root_cause"] == "hid2.bias"
    st = {t["name"]: t["status"] for t in data["tensors"]}
    assert st["hid2.bias"] == "recipe-drift" and st["hid1.weight"] == "identical"
    assert st["oupt.weight"] == "identical"  # zeros_ after the draw: no stream shift
    assert data["before"]["path"] == str(Path("snapshots") / "net" / written.name)
    # --update accepts it (same torch: the same file is rewritten) and the check passes again
    before = written.read_text()
    kept = tmp_path / "kept" / written.name
    kept.parent.mkdir()
    shutil.copy(written, kept)
    values = snapshot.values_path_for(written)  # the pair is copied as a pair
    shutil.copy(values, kept.parent / values.name)
    run_cli("check", "net.py", "-q", "--update", cwd=tmp_path, check=0)
    assert written.read_text() != before
    run_cli("check", "net.py", "-q", cwd=tmp_path, check=0)
    # an explicit --against: the snapshot from before the change
    proc = run_cli("check", "net.py", "-q", "--against", str(kept), cwd=tmp_path)
    assert proc.returncode == 1 and "recipe-drift" in proc.stdout


def relabel(dest: Path, torch_version: str, seed: int = 0) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    manifest = json.loads(MLP.read_text())
    manifest["provenance"]["torch"] = torch_version
    manifest["seed"] = seed
    manifest["values"] = None
    dest.write_text(json.dumps(manifest))
    return dest


def test_default_snapshot_is_newest_by_version_then_time(tmp_path):
    fresh = snapshot.read(MLP)
    root = tmp_path / "snapshots"
    assert find_committed(fresh, root) is None
    v10 = relabel(root / "mlp" / "b.json", "2.10.0")
    relabel(root / "mlp" / "s1.json", "2.99.0", seed=1)  # another seed: never picked
    time.sleep(0.01)
    relabel(root / "mlp" / "a.json", "2.9.1")  # newer file, older torch
    assert find_committed(fresh, root) == v10
    twin = relabel(root / "mlp" / "c.json", "2.10.0")
    os.utime(twin, (time.time() + 5, time.time() + 5))
    assert find_committed(fresh, root) == twin
    result = check_snapshot(fresh, snapshot_dir=root)
    assert result.against == twin and not result.drift and result.exit_code == 0
    assert not result.report.values_compared  # digests only, and nothing differed


def test_update_keeps_older_versions(tmp_path):
    """An upgrade adds a snapshot for the new torch beside the old one."""
    old = relabel(tmp_path / "snapshots" / "mlp" / "torch-2.9.1-seed0.json", "2.9.1")
    manifest = json.loads(old.read_text())
    manifest["tensors"][0]["hash"] = "sha256:" + "1" * 64  # pretend 2.9.1 built something else
    old.write_text(json.dumps(manifest))
    fresh = snapshot.read(MLP)
    fresh.values = dict(fresh.iter_values([t["name"] for t in fresh.tensors]))
    result = check_snapshot(fresh, snapshot_dir=tmp_path / "snapshots", update=True)
    assert result.drift and result.exit_code == 0
    assert result.written == tmp_path / "snapshots" / "mlp" / MLP.name
    assert old.exists() and result.written.exists()
    assert find_committed(fresh, tmp_path / "snapshots") == result.written


REFACTOR = """from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.{a} = nn.Linear(4, 4)
        self.{b} = nn.Linear(4, 2)
"""


def test_check_allow_renames_accepts_a_refactor_that_only_renames(tmp_path, monkeypatch):
    """check --allow-renames: exit 0 for renamed-only tensors; without it, exit 1."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "net.py").write_text(REFACTOR.format(a="enc", b="dec"))
    runner = CliRunner()
    made = runner.invoke(main, ["freeze", "net.py", "--out", "snap.json", "-q"])
    assert made.exit_code == 0, made.output
    (tmp_path / "net.py").write_text(REFACTOR.format(a="encoder", b="decoder"))
    strict = runner.invoke(main, ["check", "net.py", "--against", "snap.json", "-q"])
    assert strict.exit_code == 1, strict.output
    assert "enc.weight → encoder.weight" in strict.output
    ok = runner.invoke(
        main, ["check", "net.py", "--against", "snap.json", "-q", "--allow-renames", "--format", "json"]
    )
    assert ok.exit_code == 0, ok.output
    data = json.loads(ok.output)
    assert data["verdict"] == "identical" and data["counts"] == {"renamed": 4}
    # The edit is recorded: the user's source changed (and no root cause, nothing drifted).
    assert list(data["environment"]["sources"]) == ["net.py"] and data["root_cause"] is None
