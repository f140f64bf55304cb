"""``[tool.initaudit]``: a repository with configured models is gated by a bare ``check``
(and frozen by a bare ``freeze``), with one summary and one exit code; the pytest plugin
collects one test per model; unknown keys are an error naming the key."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from .conftest import EXAMPLES, run_cli

pytest_plugins = ["pytester"]

PYPROJECT = """\
[project]
name = "demo"
version = "0"

[tool.initaudit]
snapshot-dir = "frozen"

[[tool.initaudit.models]]
target = "models/mlp.py"

[[tool.initaudit.models]]
target = "models/highway.py:build_model"
args = {{ depth = 8 }}
seed = {seed}
"""


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository with two configured models (copies of the bundled examples)."""
    (tmp_path / "models").mkdir()
    shutil.copy(EXAMPLES / "mlp.py", tmp_path / "models" / "mlp.py")
    shutil.copy(EXAMPLES / "highway.py", tmp_path / "models" / "highway.py")
    (tmp_path / "pyproject.toml").write_text(PYPROJECT.format(seed=1))
    (tmp_path / "sub").mkdir()
    return tmp_path


def test_bare_freeze_then_check_gates_every_model(repo: Path):
    proc = run_cli("freeze", "-q", cwd=repo, check=0)
    written = sorted(p.relative_to(repo).as_posix() for p in (repo / "frozen").rglob("*.json"))
    assert len(written) == 2 and all(w.startswith("frozen/") for w in written)
    assert proc.stdout.count("wrote ") == 2
    # from a subfolder too: the nearest pyproject.toml, paths relative to it
    proc = run_cli("check", "-q", cwd=repo / "sub", check=0)
    assert "IDENTICAL: 2 configured model(s) checked (2 identical)" in proc.stdout
    data = json.loads(run_cli("check", "-q", "--format", "json", cwd=repo, check=0).stdout)
    assert data["verdict"] == "identical" and [m["verdict"] for m in data["models"]] == [
        "identical",
        "identical",
    ]
    assert data["models"][1]["seed"] == 1 and data["models"][1]["args"] == {"depth": 8}
    # a real change in one model's init code: that model drifts, the other stays identical
    mlp = repo / "models" / "mlp.py"
    src = mlp.read_text()
    assert "T.nn.Linear(4, 5)" in src
    mlp.write_text(src.replace("T.nn.Linear(4, 5)", "T.nn.Linear(4, 5, bias=False)"))
    proc = run_cli("check", "-q", "--format", "json", cwd=repo)
    assert proc.returncode == 1, proc.stderr
    data = json.loads(proc.stdout)
    assert [m["verdict"] for m in data["models"]] == ["drift", "identical"]
    assert data["models"][0]["diff"]["counts"].get("removed") == 1
    text = run_cli("check", "-q", cwd=repo, env={"COLUMNS": "200"}).stdout
    assert "DRIFT: 2 configured model(s) checked (1 drift, 1 identical)" in text
    # --update accepts it; the next bare check passes again
    run_cli("check", "-q", "--update", cwd=repo, check=0)
    run_cli("check", "-q", cwd=repo, check=0)


def test_a_model_that_cannot_build_is_an_error_not_a_pass(repo: Path):
    run_cli("freeze", "-q", cwd=repo, check=0)
    (repo / "models" / "mlp.py").write_text("raise RuntimeError('broken on purpose')\n")
    proc = run_cli("check", "-q", "--format", "json", cwd=repo)
    assert proc.returncode == 2
    data = json.loads(proc.stdout)
    assert [m["verdict"] for m in data["models"]] == ["error", "identical"]
    assert "broken on purpose" in data["models"][0]["error"]


def test_config_errors_are_one_line(repo: Path, tmp_path_factory):
    (repo / "pyproject.toml").write_text(
        PYPROJECT.format(seed=0).replace('snapshot-dir = "frozen"', 'snapshot_dir = "frozen"')
    )
    proc = run_cli("check", cwd=repo)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "unknown key 'snapshot_dir'" in proc.stderr and "did you mean 'snapshot-dir'" in proc.stderr
    (repo / "pyproject.toml").write_text(
        PYPROJECT.format(seed=0) + "\n[[tool.initaudit.models]]\ntarget = 'x.py'\nsed = 1\n"
    )
    proc = run_cli("check", cwd=repo)
    assert proc.returncode == 2 and "unknown key 'sed' in [[tool.initaudit.models]] #3" in proc.stderr
    empty = tmp_path_factory.mktemp("empty")
    (empty / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    proc = run_cli("check", cwd=empty)
    assert proc.returncode == 2 and "check needs a TARGET" in proc.stderr
    proc = run_cli("check", "--arg", "depth=3", cwd=repo)
    assert proc.returncode == 2


def test_config_defaults_apply_to_a_single_target(repo: Path):
    (repo / "pyproject.toml").write_text(
        PYPROJECT.format(seed=0).replace('snapshot-dir = "frozen"', 'snapshot-dir = "frozen"\nformat = "json"')
    )
    run_cli("freeze", "models/mlp.py", "-q", cwd=repo, check=0)
    assert list((repo / "frozen").rglob("*.json"))  # the configured snapshot-dir
    proc = run_cli("check", "models/mlp.py", "-q", cwd=repo, check=0)
    assert json.loads(proc.stdout)["verdict"] == "identical"  # the configured format
    proc = run_cli("check", "models/mlp.py", "-q", "--format", "text", cwd=repo, check=0)
    assert proc.stdout.startswith("IDENTICAL")


def test_pytest_plugin_collects_one_test_per_model(pytester, repo: Path):
    for item in repo.iterdir():
        dest = pytester.path / item.name
        if item.is_dir():
            shutil.copytree(item, dest)
        else:
            shutil.copy(item, dest)
    result = pytester.runpytest_subprocess("--initaudit-models", "-p", "no:cacheprovider", "-v")
    result.assert_outcomes(failed=2)  # nothing frozen yet: both fail, saying how to fix it
    result.stdout.fnmatch_lines(["*initaudit*models/mlp.py*FAILED*", "*--initaudit-update*"])
    result = pytester.runpytest_subprocess("--initaudit-models", "--initaudit-update")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*initaudit snapshots*", "wrote *mlp*", "*2 wrote, 0 updated, 0 unchanged*"])
    assert len(list((pytester.path / "frozen").rglob("*.json"))) == 2
    pytester.runpytest_subprocess("--initaudit-models").assert_outcomes(passed=2)
    result = pytester.runpytest_subprocess("--initaudit-models", "--initaudit-update")
    result.stdout.fnmatch_lines(["unchanged *", "*0 wrote, 0 updated, 2 unchanged*"])
