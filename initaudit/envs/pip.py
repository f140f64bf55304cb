"""The processes an environment is built with: pip (run by the running interpreter where it
can drive the environment), its most useful error line and a hint, the probe that imports
torch inside, the environment variables they all run with, and the cache's log of it all."""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from initaudit.errors import EnvironmentSetupError

LOG_NAME = "initaudit-envs.log"


def child_environ() -> dict[str, str]:
    """The environment variables for processes inside an environment: no leaks from outside."""
    env = dict(os.environ)
    for key in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "PYTHONUSERBASE"):
        env.pop(key, None)
    env["PYTHONNOUSERSITE"] = "1"
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PIP_NO_INPUT"] = "1"
    env.setdefault("PYTHONIOENCODING", "utf-8")
    return env


_NETWORK_SIGNS = (
    "NewConnectionError",
    "Temporary failure in name resolution",
    "Network is unreachable",
    "Connection refused",
    "Max retries exceeded",
    "Failed to establish a new connection",
    "ConnectTimeoutError",
)


_GENERIC_PIP_LINES = ("ResolutionImpossible", "for help visit")


def _conflict_causes(lines: list[str]) -> list[str]:
    """The lines under pip's ``The conflict is caused by:`` (one requirement each)."""
    causes: list[str] = []
    inside = False
    for ln in lines:
        if ln.strip() == "The conflict is caused by:":
            inside = True
            continue
        if inside:
            if not ln.strip() or not ln[:1].isspace():
                inside = False
                continue
            causes.append(ln.strip())
    return causes


def pip_error_line(output: str) -> str:
    """pip's most useful error line: a constraint or conflict it names, else its last ``ERROR:``.

    A resolver conflict ends in a generic ``ERROR: ResolutionImpossible: for help visit …``;
    the line that says what conflicts (``The user requested (constraint) torch<=2.14.1``)
    is quoted instead.
    """
    lines = output.splitlines()
    causes = _conflict_causes(lines)
    if causes:
        constrained = [c for c in causes if "(constraint)" in c]
        line = "; ".join(constrained or causes)
    else:
        errors = [ln.strip() for ln in lines if ln.strip().startswith("ERROR:")]
        useful = [e for e in errors if not all(g in e for g in _GENERIC_PIP_LINES)]
        if useful or errors:
            line = (useful or errors)[-1]
        else:
            tail = [ln.strip() for ln in lines if ln.strip()]
            line = tail[-1] if tail else "pip failed without a message"
    return line if len(line) <= 400 else line[:397] + "..."


def _pip_hint(output: str, env_dir: Path) -> str | None:
    if "No space left on device" in output or "[Errno 28]" in output:
        return f"no space left on the disk of {env_dir}; free space or choose --env-dir"
    if any(sign in output for sign in _NETWORK_SIGNS):
        return (
            "pip could not reach a package index (no network?); point pip at a reachable "
            "index or wheel folder with PIP_INDEX_URL / PIP_FIND_LINKS or pip.conf"
        )
    if "(constraint)" in output:
        return (
            "a pip constraints file (pip.conf 'constraint' or PIP_CONSTRAINT) rules this version "
            "out; see 'pip config list'"
        )
    if "(from versions: none)" in output:
        return (
            "pip found no release at all on its indexes: no network, or indexes without it? "
            "Point pip at a reachable index or wheel folder with PIP_INDEX_URL / "
            "PIP_FIND_LINKS or pip.conf"
        )
    return None


def append_log(env_dir: Path, line: str) -> None:
    """Append a time-stamped line to the cache's log (``LOG_NAME`` in ``env_dir``)."""
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    with contextlib.suppress(OSError), open(env_dir / LOG_NAME, "a", encoding="utf-8") as f:
        f.write(f"{stamp} {line}\n")


def run_pip(python: Path, args: list[str], env_dir: Path, what: str, build_log: Path) -> None:
    """Run ``python -m pip ARGS``; a failure raises with pip's own error line."""
    cmd = [*pip_command(python), *args]
    append_log(env_dir, "pip " + " ".join(args))
    with open(build_log, "a", encoding="utf-8") as log:
        log.write("$ " + " ".join(cmd) + "\n")
        log.flush()
        proc = subprocess.run(
            cmd,
            env=child_environ(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        )
        log.write(proc.stdout)
    if proc.returncode != 0:
        raise EnvironmentSetupError(
            f"pip could not install {what}: {pip_error_line(proc.stdout)}",
            hint=_pip_hint(proc.stdout, env_dir) or f"full pip output in {build_log}",
        )


def outer_pip_drives_envs() -> bool:
    """Whether the running interpreter's pip can install into another one (``--python``)."""
    from importlib import metadata

    from packaging.version import Version

    try:
        return Version(metadata.version("pip")) >= Version("22.3")
    except (metadata.PackageNotFoundError, ValueError):
        return False


def pip_command(python: Path) -> list[str]:
    """How to run pip for an environment: the running pip with ``--python``, else its own."""
    if outer_pip_drives_envs():
        return [sys.executable, "-m", "pip", "--python", str(python)]
    return [str(python), "-m", "pip"]


def probe(python: Path) -> dict[str, Any]:
    """Import torch and initaudit inside an environment; return what it reports."""
    code = (
        "import json, sys, torch, initaudit; "
        "print(json.dumps({'torch': torch.__version__, 'initaudit': initaudit.__version__, "
        "'python': sys.version.split()[0]}))"
    )
    proc = subprocess.run(
        [str(python), "-c", code], env=child_environ(), capture_output=True, text=True
    )
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise EnvironmentSetupError(f"the new environment cannot import torch: {last}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
