"""Helpers for the codegen tests: trace a model of the test tree, lint generated code, load it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from initaudit import codegen
from initaudit.target import resolve

from ..conftest import ROOT

CORPUS = "tests/models/codegen_corpus.py"
MODERN = "tests/models/modern_vision.py"


def program_for(spec: str, example_input=None):
    """The resolved target and its traced program, for a spec relative to the repository."""
    target = resolve(str(ROOT / spec) if ":" not in spec else _abs(spec))
    program = codegen.trace_program(
        target.build, 0, label=target.name, spec=spec, example_input=example_input
    )
    return target, program


def _abs(spec: str) -> str:
    path, _, name = spec.partition(":")
    return f"{ROOT / path}:{name}"


def assert_ruff_clean(source: str, tmp_path: Path) -> None:
    """Generated code passes ruff check and ruff format --check as a project without config."""
    ruff = shutil.which("ruff")
    assert ruff is not None, "ruff is part of the test extras: pip install -e '.[test]'"
    path = tmp_path / "generated_init.py"
    path.write_text(source, encoding="utf-8")
    # ruff's defaults (a user's project with no config: 88 columns), plus the stricter rule
    # set this repository lints itself with (which, like ruff's defaults, leaves E501 to the
    # formatter: a long command in the docstring or an unbreakable chain stays long)
    cfg = ["--isolated", "--line-length", "88"]
    check = subprocess.run(
        [ruff, "check", *cfg, "--select", "E,F,W,I,B,UP,RUF", "--ignore", "E501", str(path)],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    check = subprocess.run([ruff, "check", *cfg, str(path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    fmt = subprocess.run(
        [ruff, "format", "--check", "--diff", *cfg, str(path)], capture_output=True, text=True
    )
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


def load_source(source: str, tmp_path: Path):
    """Write generated code to a file and return its ``initialize``."""
    path = tmp_path / "explicit_mod.py"
    path.write_text(source, encoding="utf-8")
    return codegen.load_initializer(path)
