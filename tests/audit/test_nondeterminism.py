"""The ``nondeterministic`` finding and the fresh-process rebuild (audit/nondeterminism.py)."""

from __future__ import annotations

from . import MODELS, finding_of, inspect_json


def test_numpy_global_rng_is_nondeterministic():
    data = inspect_json(str(MODELS / "numpy_init.py"), check=1)
    f = finding_of(data, "nondeterministic", "error")
    assert f["tensors"] == ["head.weight"]  # named exactly by the fresh-process rebuild
    assert "NumPy" in f["message"]
    assert data["rerun"]["differing"] == ["head.weight"]
    # without the rebuild the trace still knows the build drew from NumPy
    data = inspect_json(str(MODELS / "numpy_init.py"), "--no-rerun", check=1)
    f = finding_of(data, "nondeterministic", "error")
    assert "NumPy" in f["message"] and "head.weight" in f["tensors"]


STDLIB_TRACE = """\
import trace

from torch import nn


def build_model():
    trace.CoverageResults  # the standard library's module, not initaudit's trace package
    return nn.Linear(3, 2)
"""


def test_fresh_process_rebuild_sees_the_standard_library_unshadowed(tmp_path):
    """The rebuild puts the folder holding ``initaudit`` on its path, not the package itself."""
    (tmp_path / "uses_trace.py").write_text(STDLIB_TRACE)
    data = inspect_json(str(tmp_path / "uses_trace.py"), check=0)
    assert data["rerun"]["ran"] and data["rerun"]["differing"] == []
