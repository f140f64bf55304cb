"""``initaudit explicit``: nothing unverified is written; ``--check`` catches tampering."""

from __future__ import annotations

import sys

import pytest

from initaudit import codegen
from initaudit.errors import AuditFailure
from initaudit.target import resolve

from ..conftest import ROOT, run_cli
from .conftest import MODERN


def test_generated_code_that_fails_names_its_line_and_tensor(monkeypatch):
    """Any exception from running the generated code is a failed audit naming the line."""
    target = resolve(str(ROOT / MODERN) + ":SlicedBackbone")
    real = codegen.generate
    explicit_module = sys.modules[codegen.explicit.__module__]  # where explicit looks generate up
    bad = 'model.get_buffer("features.1.1.running_mean")'
    monkeypatch.setattr(
        explicit_module,
        "generate",
        lambda p, **kw: real(p, **kw).replace(bad, "model.features[1][1].running_mean"),
    )
    with pytest.raises(AuditFailure) as info:
        codegen.explicit(target, 0)
    msg = str(info.value)
    assert "model.features[1][1].running_mean" in msg and "features.1.1 (BatchNorm2d)" in msg
    assert "AttributeError" in msg and "nothing written" in msg


def test_nothing_written_when_verification_fails(tmp_path, monkeypatch):
    target = resolve(str(ROOT / "examples/mlp.py"))
    real = codegen.generate
    explicit_module = sys.modules[codegen.explicit.__module__]  # where explicit looks generate up
    monkeypatch.setattr(
        explicit_module,
        "generate",
        lambda p, **kw: real(p, **kw).replace("math.sqrt(3)", "math.sqrt(4)"),
    )
    out = tmp_path / "mlp_init.py"
    with pytest.raises(AuditFailure, match=r"hid1\.bias.*nothing written"):
        codegen.explicit(target, 0, out=out)
    assert not out.exists()


@pytest.mark.parametrize("name", ["mlp", "highway", "cnn"])
def test_committed_example_code_still_verifies(name):
    proc = run_cli(
        "explicit",
        f"examples/{name}.py",
        "--check",
        f"examples/explicit/{name}_init.py",
        "-q",
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    assert "bit for bit" in proc.stdout


def test_cli_writes_verified_code_and_check_catches_tampering(tmp_path):
    out = tmp_path / "mlp_init.py"
    proc = run_cli("explicit", str(ROOT / "examples/mlp.py"), "--out", str(out), "-q")
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    tampered = text.replace("bound = 1 / math.sqrt(5)", "bound = 1 / math.sqrt(6)")
    out.write_text(tampered)
    proc = run_cli("explicit", str(ROOT / "examples/mlp.py"), "--check", str(out), "-q")
    assert proc.returncode == 1
    assert "oupt.bias" in proc.stderr and "hid1" not in proc.stderr


def test_cli_errors_exit_codes(tmp_path):
    proc = run_cli("explicit", str(ROOT / "tests/models/numpy_init.py"), "-q")
    assert proc.returncode == 1 and "head.weight" in proc.stderr and "NumPy" in proc.stderr
    proc = run_cli("explicit", str(ROOT / "tests/models/lazy.py"), "-q")
    assert proc.returncode == 2 and "--example-input" in proc.stderr
    proc = run_cli(
        "explicit", str(ROOT / "tests/models/lazy.py"), "--example-input", "2,3", "--format", "json"
    )
    assert proc.returncode == 0, proc.stderr
    assert '"verified": true' in proc.stdout
