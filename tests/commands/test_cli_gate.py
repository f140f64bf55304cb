"""The CLI edge as a CI gate: a build that exits, a closed stdout pipe, a snapshot path that looks
like a model spec, a model that prints, a model that leaves a thread running torch ops."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from initaudit import snapshot as snap_mod
from initaudit.audit import rerun_fresh
from initaudit.envs.environments import TorchEnv, child_environ, freeze_in
from initaudit.errors import InitAuditError, TargetError
from initaudit.freeze import freeze
from initaudit.target import resolve

from ..conftest import EXAMPLES, ROOT

MODELS = ROOT / "tests" / "models"
EXITS = MODELS / "exits.py"

#: Exit codes of a process that died by SIGABRT (Python reports -6, a shell 134).
_ABORTED = (-6, 134)


def _one_line_error(proc: subprocess.CompletedProcess[str], *words: str) -> None:
    """Exit 2, nothing on stdout, and exactly one ``initaudit: error:`` line holding ``words``."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("initaudit: error: "), proc.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*"))


# ------------------------------------------------------------------------------ builds that exit


@pytest.mark.parametrize("command", [["freeze"], ["check"], ["check", "--update"]])
@pytest.mark.parametrize(
    "spec, words",
    [
        (f"{EXITS}:exit_zero", ("building exit_zero", "sys.exit(0)", "exits.py")),
        (str(MODELS / "exit_on_import.py"), ("exit_on_import.py", "sys.exit(0)")),
    ],
    ids=["in-build", "at-import"],
)
def test_sys_exit_zero_is_an_error_and_writes_nothing(cli, tmp_path, command, spec, words):
    # no committed snapshot anywhere under tmp_path: exit 0 here would be a gate passing unchecked
    proc = cli(*command, spec, cwd=tmp_path)
    _one_line_error(proc, *words)
    assert _files(tmp_path) == []


@pytest.mark.parametrize(
    "name, words",
    [("exit_three", ("sys.exit(3)",)), ("custom_base", ("Halt: stop the build here",))],
)
def test_sys_exit_n_and_base_exception_give_one_line_exit_2(cli, tmp_path, name, words):
    proc = cli("freeze", f"{EXITS}:{name}", cwd=tmp_path)
    _one_line_error(proc, f"building {name}", *words)
    assert "Traceback" not in proc.stderr and _files(tmp_path) == []


@pytest.mark.parametrize("name", ["exit_zero", "exit_three", "custom_base"])
def test_build_that_exits_raises_target_error_in_process(name):
    with pytest.raises(TargetError, match=f"building {name}"):
        resolve(f"{EXITS}:{name}").build()


def test_import_that_exits_raises_target_error_in_process():
    with pytest.raises(TargetError, match=r"importing .*exit_on_import\.py called sys\.exit\(0\)"):
        resolve(str(MODELS / "exit_on_import.py"))


@pytest.mark.parametrize(
    "name, pattern",
    [
        ("exit_three", r"building exit_three called sys\.exit\(3\)"),
        ("custom_base", r"building custom_base raised Halt: stop the build here"),
        ("os_exit", r"exited with code 0 without writing its result.*os\._exit"),
    ],
)
def test_inspect_fresh_process_rebuild_reports_exits(name, pattern):
    # the fresh-process rebuild alone: the build here would leave this process too
    with pytest.raises(TargetError, match=f"fresh-process rebuild .* failed: .*{pattern}"):
        rerun_fresh(resolve(f"{EXITS}:{name}"))


def test_inspect_reports_os_exit_in_its_fresh_process(cli, tmp_path):
    proc = cli("inspect", f"{EXITS}:os_exit_in_fresh_process", cwd=tmp_path)
    _one_line_error(proc, "fresh-process rebuild", "os._exit", "--no-rerun")


class _ThisInterpreter(TorchEnv):
    """The running interpreter's own environment, as a matrix environment (no venv to build)."""

    @property
    def python(self) -> Path:
        return Path(sys.executable)


def _here_env() -> TorchEnv:
    return _ThisInterpreter(
        requested=torch.__version__,
        path=Path(sys.prefix),
        torch_version=torch.__version__,
        reused=True,
    )


@pytest.mark.parametrize(
    "name, pattern",
    [
        ("exit_three", r"building exit_three called sys\.exit\(3\)"),
        ("custom_base", r"building custom_base raised Halt"),
        ("os_exit", r"failed \(exit 0\): no snapshot and no message .*os\._exit"),
    ],
)
def test_matrix_freeze_subprocess_reports_exits(tmp_path, name, pattern):
    probe = subprocess.run(
        [sys.executable, "-c", "import initaudit"], env=child_environ(), capture_output=True
    )
    if probe.returncode != 0:
        pytest.skip("initaudit is not installed in this interpreter (freeze_in drops PYTHONPATH)")
    out = tmp_path / "s.json"
    with pytest.raises(InitAuditError, match=f"freezing under torch .*{pattern}"):
        freeze_in(_here_env(), f"{EXITS}:{name}", out, cwd=tmp_path)
    assert not out.exists()


def test_matrix_reports_os_exit_in_a_real_environment(cli, tmp_path, tmp_path_factory):
    from ..envs.test_environments import VERSION, session_env_dir

    env_dir = session_env_dir(tmp_path_factory)  # shared with the matrix tests, built once
    proc = cli(
        "matrix", f"{EXITS}:os_exit", "--torch", VERSION, "--torch", VERSION,
        "--env-dir", str(env_dir), "-q", cwd=tmp_path,
    )  # fmt: skip
    _one_line_error(proc, f"freezing under torch {VERSION}", "os._exit")
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


# ------------------------------------------------------------------------------ broken pipe


def _spawn(*args: str, cwd: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env.pop("INITAUDIT_DEBUG", None)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    )
    return subprocess.Popen(
        [sys.executable, "-m", "initaudit", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


@pytest.fixture
def mlp_snapshots(tmp_path, cli) -> Path:
    snaps = tmp_path / "snaps"
    cli("freeze", str(EXAMPLES / "mlp.py"), "--snapshot-dir", str(snaps), "-q", check=0)
    return snaps


def test_broken_pipe_after_one_line_never_says_drift(tmp_path, mlp_snapshots):
    """``initaudit check examples/mlp.py | head -1``, seven times: quiet, exit 0 or 141."""
    codes = []
    for _ in range(7):
        proc = _spawn(
            "check", str(EXAMPLES / "mlp.py"), "--snapshot-dir", str(mlp_snapshots), cwd=tmp_path
        )
        assert proc.stdout is not None and proc.stderr is not None
        first = proc.stdout.readline()
        proc.stdout.close()  # the reader goes away, as `head -1` does
        err = proc.stderr.read().decode()
        proc.wait(timeout=300)
        codes.append(proc.returncode)
        assert first.startswith(b"IDENTICAL"), first
        assert proc.returncode in (0, 141), (proc.returncode, err)
        assert "Traceback" not in err and "error" not in err, err
    assert 1 not in codes


def test_closed_pipe_before_any_output_exits_141_quietly(tmp_path, mlp_snapshots):
    """``initaudit check X | true``: the first write fails, deterministically."""
    proc = _spawn(
        "check", str(EXAMPLES / "mlp.py"), "--snapshot-dir", str(mlp_snapshots), cwd=tmp_path
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    err = proc.stderr.read().decode()
    proc.wait(timeout=300)
    assert proc.returncode == 141, (proc.returncode, err)
    assert err == ""


# ------------------------------------------------------------------------------ snapshot paths


_EVIL = """\
from pathlib import Path
Path(__file__).with_name("MARKER").write_text("imported")
from torch import nn
v1 = nn.Linear
"""


def test_snapshot_path_with_colon_is_read_never_imported(cli, tmp_path):
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "evil.py").write_text(_EVIL)
    snap, _ = freeze(resolve(str(EXAMPLES / "mlp.py")), 0)
    snap_mod.write(snap, tmp_path / "c" / "evil.py:v1" / "m.json")
    marker = tmp_path / "c" / "MARKER"

    proc = cli("inspect", "c/evil.py:v1/m.json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "hid1.weight" in proc.stdout and not marker.exists()

    # an existing file that is not a .py is a snapshot too, whatever its name
    manifest = tmp_path / "c" / "evil.py:v1" / "m.json"
    (tmp_path / "c" / "evil.py:Net").write_bytes(manifest.read_bytes())
    values = snap_mod.values_path_for(manifest)  # m.<hash>.safetensors, named in the manifest
    (tmp_path / "c" / values.name).write_bytes(values.read_bytes())
    renamed = cli("inspect", "c/evil.py:Net", "--no-rerun", cwd=tmp_path)
    assert renamed.returncode == 0 and "hid1.weight" in renamed.stdout, renamed.stderr

    missing = cli("inspect", "c/evil.py:v2/m.json", cwd=tmp_path)
    _one_line_error(missing, "snapshot c/evil.py:v2/m.json does not exist")
    for command in ("freeze", "check", "explicit"):
        _one_line_error(cli(command, "c/evil.py:v1/m.json", cwd=tmp_path), "snapshot file")
    assert not marker.exists()


def test_resolve_refuses_snapshot_paths_and_bad_names_before_importing(tmp_path):
    (tmp_path / "evil.py").write_text(_EVIL)
    for spec in (
        f"{tmp_path}/evil.py:v1/m.json",
        f"{tmp_path}/evil.py:v1.safetensors",
        f"{tmp_path}/evil.py:v1/x",
    ):
        with pytest.raises(TargetError):
            resolve(spec)
    assert not (tmp_path / "MARKER").exists()


# ------------------------------------------------------------------------------ stdout purity


def test_printing_model_keeps_json_stdout_valid(cli, tmp_path):
    out = tmp_path / "chatty.json"
    spec = str(MODELS / "chatty.py")
    said = ("chatty: importing", "chatty: building", "chatty: fd-level write")
    runs = [
        cli("freeze", spec, "--out", str(out), "--format", "json", check=0),
        cli("check", spec, "--against", str(out), "--format", "json", check=0),
        cli("inspect", spec, "--no-rerun", "--format", "json", check=0),
    ]
    for proc in runs:
        json.loads(proc.stdout)  # the JSON and nothing else
        assert all(s in proc.stderr for s in said), proc.stderr
    assert json.loads(runs[0].stdout)["tensors"][0]["name"] == "fc.weight"


# ------------------------------------------------------------------------------ threads


def test_daemon_thread_running_torch_ops_does_not_abort(cli, tmp_path):
    spec = str(MODELS / "daemon_thread.py")
    out = tmp_path / "d.json"
    runs = [
        cli("freeze", spec, "--out", str(out), "--format", "json"),
        cli("check", spec, "--against", str(out)),
        cli("inspect", spec),  # its fresh-process rebuild leaves the same thread behind
    ]
    for proc in runs:
        assert proc.returncode == 0 and proc.returncode not in _ABORTED, (
            proc.returncode,
            proc.stderr,
        )
        assert "terminate called" not in proc.stderr
        assert "model-spinner" in proc.stderr  # the warning names the thread left running
    assert json.loads(runs[0].stdout)["tensors"][0]["name"] == "weight"
    assert snap_mod.read(out).manifest["tensors"]
