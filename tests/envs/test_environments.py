"""Isolated per-torch-version environments: real venvs, real pip, real failures.

The torch 2.13.0 environment is built once per test session (about a minute: pip unpacks the
CPU wheel) into a temporary cache that starts out holding the leftovers of an interrupted build,
so the build itself proves that broken environments are cleaned up and rebuilt. Set
INITAUDIT_TEST_ENV_DIR to a folder to keep that cache between sessions while developing.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from initaudit.envs import environments as E
from initaudit.errors import EnvironmentSetupError, UsageError
from tests.conftest import EXAMPLES, run_cli

VERSION = "2.13.0"
_SESSION: dict[str, Path] = {}


def session_env_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's environment cache holding torch 2.13.0 (built on first use, once)."""
    if "dir" in _SESSION:
        return _SESSION["dir"]
    keep = os.environ.get("INITAUDIT_TEST_ENV_DIR")
    env_dir = Path(keep) if keep else tmp_path_factory.mktemp("envs")
    env_dir.mkdir(parents=True, exist_ok=True)
    slug = E.env_slug(VERSION)
    planted = not (env_dir / slug / E.MARKER).exists()
    if planted:
        # What a killed build leaves: a temporary folder, and an environment without marker.
        (env_dir / f".tmp-{slug}-killed" / "lib").mkdir(parents=True, exist_ok=True)
        (env_dir / slug / "bin").mkdir(parents=True, exist_ok=True)
        (env_dir / slug / "half-installed.txt").write_text("interrupted", encoding="utf-8")
    messages: list[str] = []
    env = E.ensure(VERSION, env_dir, log=messages.append)
    _SESSION.update(dir=env_dir)
    _SESSION["messages"] = messages  # type: ignore[assignment]
    _SESSION["planted"] = planted  # type: ignore[assignment]
    _SESSION["env"] = env  # type: ignore[assignment]
    return env_dir


@pytest.fixture(scope="session")
def env_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return session_env_dir(tmp_path_factory)


def pip_lines(env_dir: Path) -> list[str]:
    """The pip invocations recorded in the cache's log."""
    log = env_dir / E.LOG_NAME
    if not log.exists():
        return []
    return [ln for ln in log.read_text(encoding="utf-8").splitlines() if " pip " in ln]


# --------------------------------------------------------------------------- pure functions


def test_versions_older_than_supported_are_refused_before_installing():
    with pytest.raises(EnvironmentSetupError, match="older than initaudit supports"):
        E.check_supported("2.0.1")
    with pytest.raises(EnvironmentSetupError, match="nothing was installed"):
        E.check_supported("1.13.1")
    assert E.check_supported("2.1.0") == "2.1.0"
    assert E.check_supported("2.13.0+cpu") == "2.13.0+cpu"
    with pytest.raises(UsageError, match="not a version number"):
        E.check_supported("latest")


def test_env_dir_default_and_override(monkeypatch, tmp_path):
    monkeypatch.setenv("INITAUDIT_ENV_DIR", str(tmp_path / "x"))
    assert E.default_env_dir() == tmp_path / "x"
    monkeypatch.delenv("INITAUDIT_ENV_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert E.default_env_dir() == tmp_path / "cache" / "initaudit" / "envs"


def test_slug_names_torch_python_and_extras():
    py = f"py{sys.version_info[0]}{sys.version_info[1]}"
    assert E.env_slug("2.13.0") == f"torch-2.13.0-{py}"
    assert E.env_slug("2.13.0", ("transformers",)).startswith(f"torch-2.13.0-{py}-x")
    assert E.env_slug("2.13.0", ("a",)) != E.env_slug("2.13.0", ("b",))


def test_pip_error_line_is_pips_own_summary():
    out = (
        "Looking in indexes: https://pypi.org/simple\n"
        "ERROR: Could not find a version that satisfies the requirement torch==99.0.0 "
        "(from versions: 2.13.0)\n"
        "ERROR: No matching distribution found for torch==99.0.0\n"
    )
    assert E.pip_error_line(out) == "ERROR: No matching distribution found for torch==99.0.0"


def test_marker_missing_or_garbage_means_incomplete(tmp_path):
    assert E.read_marker(tmp_path) is None
    (tmp_path / E.MARKER).write_text("{not json", encoding="utf-8")
    assert E.read_marker(tmp_path) is None
    (tmp_path / E.MARKER).write_text(json.dumps({"format": E.MARKER_FORMAT}), encoding="utf-8")
    assert E.read_marker(tmp_path) is None  # no interpreter inside: still incomplete


def test_wheel_of_the_running_initaudit(tmp_path):
    wheel = E.build_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        record = zf.read(next(n for n in names if n.endswith("RECORD"))).decode()
    assert "initaudit/__init__.py" in names and "initaudit/envs/environments.py" in names
    assert not any("__pycache__" in n for n in names)
    assert "initaudit/__init__.py,sha256=" in record


# --------------------------------------------------------------------------- real environments


def test_build_cleans_up_an_interrupted_build_and_is_complete(env_dir):
    env = _SESSION["env"]
    path = env_dir / E.env_slug(VERSION)
    assert env.path == path and E.read_marker(path) is not None
    assert env.torch_version.startswith(VERSION)
    assert not list(env_dir.glob(".tmp-*")), "temporary build folders were left behind"
    if not _SESSION["planted"]:
        pytest.skip("reused cache from INITAUDIT_TEST_ENV_DIR: nothing was planted")
    assert not env.reused
    assert not (path / "half-installed.txt").exists()
    said = "\n".join(_SESSION["messages"])  # type: ignore[arg-type]
    assert "incomplete" in said and "rebuilding" in said
    assert "removing an interrupted build" in said


def test_environment_is_isolated_and_holds_the_requested_torch(env_dir, tmp_path):
    python = E.env_python(env_dir / E.env_slug(VERSION))
    code = (
        "import json, sys, torch, initaudit, importlib.util as u; "
        "print(json.dumps([torch.__version__, torch.__file__, initaudit.__file__, "
        "u.find_spec('transformers') is None, sys.prefix]))"
    )
    out = subprocess.run(
        [str(python), "-c", code],
        env=E.child_environ(),
        cwd=tmp_path,  # not the repository root, whose initaudit/ would shadow the installed one
        capture_output=True,
        text=True,
        check=True,
    )
    version, torch_file, ia_file, no_transformers, prefix = json.loads(out.stdout)
    root = str(env_dir / E.env_slug(VERSION))
    assert version.startswith(VERSION)
    assert torch_file.startswith(root) and ia_file.startswith(root)  # not the outer install
    assert no_transformers, "the outer site-packages leak into the environment"
    assert prefix == root


def test_second_use_installs_nothing(env_dir):
    E.ensure(VERSION, env_dir)  # in sync with the current source (others may edit it)
    before = pip_lines(env_dir)
    fingerprint = E.source_fingerprint()
    env = E.ensure(VERSION, env_dir)
    assert env.reused
    if E.source_fingerprint() != fingerprint:  # someone edited initaudit meanwhile
        pytest.skip("initaudit's source changed during the test")
    assert pip_lines(env_dir) == before, "pip ran although the environment was complete"
    assert (
        (env_dir / E.LOG_NAME)
        .read_text(encoding="utf-8")
        .splitlines()[-1]
        .endswith(f"reuse {env.path}")
    )


def test_a_changed_initaudit_is_reinstalled_alone(env_dir, monkeypatch):
    monkeypatch.setattr(E, "source_fingerprint", lambda: "changed-source")
    before = pip_lines(env_dir)
    env = E.ensure(VERSION, env_dir)
    new = pip_lines(env_dir)[len(before) :]
    assert env.reused
    assert len(new) == 1 and "--no-deps" in new[0] and "initaudit-" in new[0]
    assert E.read_marker(env.path)["initaudit_source"] == "changed-source"


def test_an_environment_with_extras_hard_links_the_torch_one(env_dir, tmp_path):
    """torch is unpacked once per version: an environment with extra requirements starts as
    hard links to the torch-only one, which pip then never modifies."""
    base = env_dir / E.env_slug(VERSION)
    own = tmp_path / "envs"
    own.mkdir()
    subprocess.run(["cp", "-al", str(base), str(own / base.name)], check=True)
    try:
        env = E.ensure(VERSION, own, extra=("iniconfig",))
    except EnvironmentSetupError as exc:
        if "could not reach a package index" in str(exc) or "no release at all" in str(exc):
            pytest.skip(f"iniconfig must come from an index: {exc}")
        raise
    marker = E.read_marker(env.path)
    assert marker["linked_from"] == str(own / base.name)
    torch_init = Path("torch") / "__init__.py"
    linked = E.site_packages(env.path) / torch_init
    original = E.site_packages(own / base.name) / torch_init
    assert linked.stat().st_ino == original.stat().st_ino  # one copy of torch on disk
    assert E.check_env(env.path, marker) is None
    assert E.check_env(own / base.name, E.read_marker(own / base.name)) is None
    code = "import torch, iniconfig, initaudit; print(torch.__version__)"
    out = subprocess.run([str(env.python), "-c", code], env=E.child_environ(), cwd=tmp_path,
                         capture_output=True, text=True)  # fmt: skip
    assert out.returncode == 0 and out.stdout.startswith(VERSION), out.stderr
    base_has = subprocess.run(
        [str(E.env_python(own / base.name)), "-c", "import iniconfig"], env=E.child_environ(),
        cwd=tmp_path, capture_output=True,
    )  # fmt: skip
    assert base_has.returncode != 0, "installing the extra changed the torch-only environment"


# --------------------------------------------------------------------------- failures


def test_version_pip_cannot_find_shows_pips_line(tmp_path):
    """Whatever pip says (no such release, or a constraints file ruling it out), the error is
    one line naming the version and quoting a line of pip's own output; nothing is left."""
    proc = run_cli(
        "matrix", str(EXAMPLES / "mlp.py"), "--torch", "99.0.0", "--torch", VERSION,
        "--env-dir", str(tmp_path / "envs"), cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    (line,) = [ln for ln in proc.stderr.splitlines() if ln.startswith("initaudit: error:")]
    assert "pip could not install torch==99.0.0: " in line
    quoted = line.split("pip could not install torch==99.0.0: ", 1)[1]
    (log,) = (tmp_path / "envs" / "logs").glob("*99.0.0*.log")
    pip_said = [ln.strip() for ln in log.read_text().splitlines() if len(ln.strip()) > 8]
    assert any(ln in quoted for ln in pip_said if not ln.startswith("$ ")), (quoted, pip_said)
    assert "for help visit" not in quoted  # pip's generic last line says nothing
    left = [p.name for p in (tmp_path / "envs").iterdir() if p.name.startswith(("torch-", ".tmp"))]
    assert left == [], "a failed install left an environment behind"
    assert not (tmp_path / "snapshots").exists()


#: pip 25's output when a constraints file (here one capping torch) rules the request out.
_CONFLICT = """\
Looking in indexes: https://pypi.org/simple, file:///opt/pypi/simple
ERROR: Cannot install torch==99.0.0 because these package versions have conflicting dependencies.

The conflict is caused by:
    The user requested torch==99.0.0
    The user requested (constraint) torch<=2.14.1

To fix this you could try to:
1. loosen the range of package versions you've specified
2. remove package versions to allow pip attempt to solve the dependency conflict

ERROR: ResolutionImpossible: for help visit https://pip.pypa.io/en/latest/topics/dependency-resolution/#dealing-with-dependency-conflicts
"""


def test_pip_error_line_quotes_the_constraint_not_the_generic_line():
    assert E.pip_error_line(_CONFLICT) == "The user requested (constraint) torch<=2.14.1"
    no_constraint = _CONFLICT.replace("(constraint) torch<=2.14.1", "torch==98.0.0")
    assert E.pip_error_line(no_constraint) == (
        "The user requested torch==99.0.0; The user requested torch==98.0.0"
    )
    generic_only = "ERROR: ResolutionImpossible: for help visit https://pip.pypa.io/x\n"
    assert E.pip_error_line(generic_only).startswith("ERROR: ResolutionImpossible")


def test_requirements_are_validated_before_pip_sees_them():
    assert E.check_requirement("Transformers == 5.0.0") == "transformers==5.0.0"
    assert E.check_requirement("timm>=1.0,<2") == "timm<2,>=1.0"
    for option in ("-e .", "--index-url=http://evil", "-r requirements.txt", " -U"):
        with pytest.raises(UsageError, match="is a pip option, not a requirement"):
            E.check_requirement(option)
    for bad in ("./local/pkg", "transformers 5.0.0", "==5.0.0", ""):
        with pytest.raises(UsageError, match="not a pip requirement"):
            E.check_requirement(bad)
    with pytest.raises(UsageError, match="pip option"):
        E.ensure(VERSION, Path("/nonexistent/never-made"), extra=("--pre",))


def test_a_with_value_that_is_a_pip_option_never_reaches_pip(tmp_path):
    proc = run_cli(
        "matrix", str(EXAMPLES / "mlp.py"), "--torch", VERSION, "--torch", VERSION,
        "--with", "--index-url=http://127.0.0.1:9/simple", "--env-dir", str(tmp_path / "envs"),
        cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "--with '--index-url=http://127.0.0.1:9/simple' is a pip option" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "envs").exists(), "pip ran for a refused requirement"


def test_a_cached_env_whose_torch_was_deleted_is_rebuilt(env_dir, tmp_path):
    """The marker says complete, but torch's files are gone: rebuild, never reuse forever."""
    good = env_dir / E.env_slug(VERSION)
    broken_dir = tmp_path / "envs"
    broken_dir.mkdir()
    copy = broken_dir / good.name
    subprocess.run(["cp", "-al", str(good), str(copy)], check=True)  # hard links: cheap
    site = E.site_packages(copy)
    assert site is not None and (site / "torch" / "__init__.py").exists()
    subprocess.run(["rm", "-rf", str(site / "torch")], check=True)
    assert E.read_marker(copy) is not None  # the marker alone would say "complete"
    assert "torch" in (E.check_env(copy, E.read_marker(copy)) or "")
    assert E.check_env(good, E.read_marker(good)) is None  # the original is untouched
    messages: list[str] = []
    env = E.ensure(VERSION, broken_dir, log=messages.append)
    assert not env.reused
    assert any("is broken" in m and "torch" in m for m in messages), messages
    probe = subprocess.run(
        [str(env.python), "-c", "import torch; print(torch.__version__)"],
        env=E.child_environ(), cwd=tmp_path, capture_output=True, text=True,
    )  # fmt: skip
    assert probe.returncode == 0 and probe.stdout.startswith(VERSION), probe.stderr


def test_old_version_is_refused_without_installing(tmp_path):
    proc = run_cli(
        "matrix", str(EXAMPLES / "mlp.py"), "--torch", "1.13.1", "--torch", VERSION,
        "--env-dir", str(tmp_path / "envs"), cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "torch 1.13.1 is older than initaudit supports" in proc.stderr
    assert not (tmp_path / "envs").exists(), "something was installed for a refused version"


def test_no_network_says_so(tmp_path):
    env = {
        "PIP_CONFIG_FILE": os.devnull,  # ignore the machine's local indexes and wheel folders
        "PIP_INDEX_URL": "http://127.0.0.1:9/simple",  # nothing listens on the discard port
        "PIP_EXTRA_INDEX_URL": "",
        "PIP_FIND_LINKS": "",
        "PIP_RETRIES": "0",
        "PIP_TIMEOUT": "3",
    }
    proc = run_cli(
        "matrix", str(EXAMPLES / "mlp.py"), "--torch", VERSION, "--torch", VERSION,
        "--env-dir", str(tmp_path / "envs"), cwd=tmp_path, env=env,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "pip could not install torch==2.13.0" in proc.stderr
    assert "no network" in proc.stderr
    assert not list((tmp_path / "envs").glob("torch-*"))
    assert not list((tmp_path / "envs").glob(".tmp-*"))


def test_ctrl_c_during_install_leaves_nothing_half_made(tmp_path):
    env_dir = tmp_path / "envs"
    full_env = dict(os.environ, PYTHONPATH=str(Path(E.__file__).parent.parent.parent), NO_COLOR="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "initaudit", "matrix", str(EXAMPLES / "mlp.py"),
         "--torch", VERSION, "--torch", VERSION, "--env-dir", str(env_dir)],
        cwd=tmp_path, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # wait until pip is installing torch
        if any("torch==" in ln for ln in pip_lines(env_dir)):
            break
        time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("pip never started")
    # The local wheel installs in a few seconds on a quiet machine (the whole matrix then ran
    # to its end before a 2 s wait was over): interrupt as soon as pip has started.
    time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "aborted" in err or "interrupted" in err
    assert "Traceback" not in err
    assert not list(env_dir.glob("torch-*")), "an interrupted build was left in place"
    assert not list(env_dir.glob(".tmp-*")), "an interrupted build's temporary folder remains"


def test_full_disk_says_so(tmp_path):
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        pytest.skip("needs root on Linux to mount a small tmpfs as a full disk")
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(mnt)]).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        with pytest.raises(EnvironmentSetupError) as info:
            E.ensure(VERSION, mnt)
        assert "no space left" in str(info.value)
        assert not list(mnt.glob("torch-*")) and not list(mnt.glob(".tmp-*"))
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_old_torch_gets_numpy_1():
    """torch before 2.3 was built against NumPy 1.x; its Tensor.numpy() fails under NumPy 2
    (seen for real: torch 2.1.2 in a matrix environment pinned to NumPy 2.4)."""
    import numpy

    old = E.requirements("2.1.2")
    new = E.requirements("2.13.0")
    assert old[0] == "torch==2.1.2" and new[0] == "torch==2.13.0"
    if int(numpy.__version__.split(".")[0]) >= 2:
        assert "numpy<2" in old
    assert f"numpy=={numpy.__version__}" in new
