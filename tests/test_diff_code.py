"""diff / check name the code that changed (a library's version, the user's source) and
report renamed tensors as ``renamed``: real installs of a real tiny distribution, real builds."""

from __future__ import annotations

import json
import os

from click.testing import CliRunner
from torch import nn

from initaudit import snapshot
from initaudit._cli import main
from initaudit.diff import diff_snapshots, report_to_json
from initaudit.freeze import freeze
from initaudit.render.diff import diff_markdown, diff_plain
from initaudit.target import Target

from .conftest import ROOT, run_cli
from .models import tinydist

MODEL = "import tinyinit\n\n\ndef build_model():\n    return tinyinit.Block()\n"


def _freeze_with(site, proj, out):
    env = {"PYTHONPATH": os.pathsep.join([str(ROOT), str(site)])}
    run_cli("freeze", "model.py", "--out", str(out), "-q", cwd=proj, env=env, check=0)
    return out


def test_library_version_change_is_named_as_the_root_cause(tmp_path):
    """tinyinit 1.0 → 2.0 changes Block.init_weights' std: the cause names library and versions."""
    sites = {}
    for version, std in (("1.0", 0.02), ("2.0", 0.01), ("3.0", 0.01)):
        src = tinydist.write_project(tmp_path / f"src{version}", version, std)
        sites[version] = tinydist.install(src, tmp_path / f"site{version}")
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "model.py").write_text(MODEL)
    a, b, c = (_freeze_with(sites[v], proj, tmp_path / f"{v}.json") for v in ("1.0", "2.0", "3.0"))
    assert json.loads(a.read_text())["provenance"]["libraries"] == {"tinyinit": "1.0"}

    proc = run_cli("diff", str(a), str(b), "--format", "json")
    assert proc.returncode == 1, proc.stderr
    data = json.loads(proc.stdout)
    assert data["root_cause"] == "proj.weight"
    detail = data["root_cause_detail"]
    assert detail["status"] == "recipe-drift"
    assert detail["library"] == {
        "name": "tinyinit", "function": "Block.init_weights", "before": "1.0", "after": "2.0"
    }  # fmt: skip
    assert detail["source"] is None
    assert data["environment"]["libraries"] == {"tinyinit": {"before": "1.0", "after": "2.0"}}
    text = run_cli("diff", str(a), str(b), check=1).stdout
    assert "root cause proj.weight (recipe-drift)" in text
    assert "set by tinyinit (Block.init_weights), tinyinit 1.0 → 2.0" in text
    assert "tinyinit: 1.0 → 2.0" in text  # the environment section
    md = run_cli("diff", str(a), str(b), "--format", "markdown", check=1).stdout
    assert "tinyinit 1.0 → 2.0" in md and "`tinyinit: 1.0 → 2.0`" in md

    # 2.0 → 3.0 changed no init: identical, and the version change is still listed.
    same = json.loads(run_cli("diff", str(b), str(c), "--format", "json", check=0).stdout)
    assert same["verdict"] == "identical" and same["root_cause"] is None
    assert same["environment"]["libraries"] == {"tinyinit": {"before": "2.0", "after": "3.0"}}


def test_user_source_change_is_named_instead(tmp_path):
    proj = tmp_path / "proj"
    proj.mkdir()
    model = proj / "model.py"
    body = "from torch import nn\n\n\ndef build_model():\n    m = nn.Linear(3, 3)\n    nn.init.normal_(m.weight, std={})\n    return m\n"
    model.write_text(body.format(0.02))
    run_cli("freeze", "model.py", "--out", str(tmp_path / "a.json"), "-q", cwd=proj, check=0)
    model.write_text(body.format(0.03))
    run_cli("freeze", "model.py", "--out", str(tmp_path / "b.json"), "-q", cwd=proj, check=0)
    a, b = snapshot.read(tmp_path / "a.json"), snapshot.read(tmp_path / "b.json")
    report = diff_snapshots(a, b)
    rc = report.root_cause
    assert (rc.name, rc.status, rc.library) == ("weight", "recipe-drift", None)
    assert rc.source["path"] == "model.py" and rc.source["before"] != rc.source["after"]
    assert "your source model.py changed" in diff_plain(report)
    assert set(report.environment["sources"]) == {"model.py"}
    assert report_to_json(report)["root_cause_detail"]["source"]["path"] == "model.py"


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
