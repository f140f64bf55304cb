"""Shared fixtures: paths to the bundled examples and a helper to run the real CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
MLP_SNAPSHOT = ROOT / "snapshots" / "mlp" / "torch-2.13.0+cpu-seed0.json"

#: A changed torch default, as an upgrade could bring: ``nn.Linear``'s bias starts at zero.
#: Installed as a ``sitecustomize`` in the freezing process, it is a real recipe drift.
ZERO_BIAS = """\
import math

import torch.nn as nn


def reset_parameters(self):
    nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
    if self.bias is not None:
        nn.init.zeros_(self.bias)


nn.Linear.reset_parameters = reset_parameters
"""


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


@pytest.fixture(scope="session")
def zero_bias_drift(tmp_path_factory) -> tuple[Path, Path]:
    """(committed examples/mlp.py snapshot, the same model frozen under ZERO_BIAS)."""
    tmp = tmp_path_factory.mktemp("zero-bias")
    site = tmp / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(ZERO_BIAS)
    out = tmp / "zero" / "mlp.json"
    run_cli(
        "freeze", str(EXAMPLES / "mlp.py"), "--out", str(out), "-q",
        env={"PYTHONPATH": str(site)}, check=0,
    )  # fmt: skip
    return MLP_SNAPSHOT, out


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


#: Free disk the slow cross-version tests need: torch 2.14.1 and 2.1.2 environments are ~5.5 and
#: ~4.7 GB (CUDA builds), the 2.14.1 + torchvision 0.29.1 one for the real torchvision models
#: another ~5.5 GB, plus pip's cache and the 2.13.0 environment.
SLOW_DISK_BYTES = 26 * 2**30


def slow_tests_reason(config) -> str | None:
    """Why the slow cross-version tests are skipped in this run (None: they run).

    They run with ``--run-slow`` or ``INITAUDIT_SLOW=1``, and in CI (``CI`` set) when the disk
    has room for the environments they build; ``INITAUDIT_SLOW=0`` turns them off everywhere.
    """
    flag = os.environ.get("INITAUDIT_SLOW")
    if config.getoption("--run-slow") or flag == "1":
        return None
    if flag == "0":
        return "slow cross-version test: INITAUDIT_SLOW=0"
    if os.environ.get("CI", "").lower() in ("", "0", "false"):
        return "slow cross-version test: pass --run-slow or INITAUDIT_SLOW=1 (CI runs it)"
    free = shutil.disk_usage(tempfile.gettempdir()).free
    if free < SLOW_DISK_BYTES:
        need = SLOW_DISK_BYTES // 2**30
        return f"slow cross-version test: only {free / 2**30:.1f} GiB free, needs {need} GiB"
    return None


def pytest_collection_modifyitems(config, items):
    reason = slow_tests_reason(config)
    if reason is None:
        return
    skip = pytest.mark.skip(reason=reason)
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
