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
