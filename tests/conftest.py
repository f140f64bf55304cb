"""Shared fixtures: paths to the bundled examples and a helper to run the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None, check: int | None = None):
    """Run ``python -m initaudit ARGS`` in a fresh process; return the CompletedProcess."""
    full_env = dict(os.environ)
    full_env.pop("INITAUDIT_DEBUG", None)
    full_env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT)] + ([full_env["PYTHONPATH"]] if full_env.get("PYTHONPATH") else [])
    )
    full_env.setdefault("NO_COLOR", "1")
    if env:
        full_env.update(env)
    proc = subprocess.run(
        [sys.executable, "-m", "initaudit", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if check is not None:
        assert proc.returncode == check, (proc.returncode, proc.stdout, proc.stderr)
    return proc


@pytest.fixture
def cli():
    """The ``run_cli`` helper as a fixture."""
    return run_cli


@pytest.fixture
def examples() -> Path:
    """The bundled examples folder."""
    return EXAMPLES


def pytest_addoption(parser):
    parser.addoption(
        "--run-slow", action="store_true", help="run slow cross-version tests (installs torch)"
    )


def pytest_collection_modifyitems(config, items):
    if config.getoption("--run-slow") or os.environ.get("INITAUDIT_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow cross-version test: pass --run-slow or INITAUDIT_SLOW=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
