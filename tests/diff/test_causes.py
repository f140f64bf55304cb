"""diff names the code that changed behind a root cause (a library's version, the user's source):
real installs of a real tiny distribution, real builds (:mod:`initaudit.diff.causes`)."""

from __future__ import annotations

import json
import os

from initaudit import snapshot
from initaudit.diff import diff_snapshots, report_to_json
from initaudit.render.diff import diff_plain

from ..conftest import ROOT, run_cli
from ..models import tinydist

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
