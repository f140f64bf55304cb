"""What init recipes predict: :mod:`initaudit.audit.predict`."""

from __future__ import annotations

import math

import pytest

from initaudit.audit import predict


def test_predictions_follow_the_init_formulas():
    p = predict("kaiming_uniform_", {"a": math.sqrt(5), "bound": 0.25})
    assert (p.low, p.high, p.std) == (-0.25, 0.25, pytest.approx(0.25 / math.sqrt(3)))
    assert predict("uniform_", {"from": -1.0, "to": 3.0}).mean == 1.0
    assert predict("normal_", {"mean": 0.0, "std": 0.02}).std == 0.02
    tn = predict("trunc_normal_", {"mean": 0.0, "std": 1.0, "a": -2.0, "b": 2.0})
    assert tn.std == pytest.approx(0.8796, abs=1e-4)
    assert predict("orthogonal_", {}) is None
