"""Recording a build's program: values a torch seed alone does not fix are found."""

from __future__ import annotations

import re

import pytest

from ..conftest import ROOT, run_cli


@pytest.mark.parametrize(
    ("name", "message"),
    [
        # a Python scalar would otherwise be written into the code as this build's constant
        ("PythonRandomBias", r"fc\.bias: its value changes with Python's random"),
        ("ClockInit", r"scale: its value differs between two builds under the same torch seed"),
    ],
)
def test_scalars_from_other_rngs_or_the_clock_cannot_be_made_explicit(name, message, tmp_path):
    out = tmp_path / "init.py"
    proc = run_cli("explicit", f"tests/models/init_bugs.py:{name}", "--out", str(out), cwd=ROOT)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert re.search(message, proc.stderr), proc.stderr
    assert "fc.weight" not in proc.stderr  # torch-seeded tensors are fine
    assert not out.exists()
