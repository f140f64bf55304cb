"""Value comparison figures: :mod:`initaudit.diff.values`."""

from __future__ import annotations

import torch

from initaudit.diff import value_error


def test_value_error_figures():
    a = torch.tensor([1.0, 2.0, -0.0, 4.0])
    b = torch.tensor([1.0, torch.nextafter(torch.tensor(2.0), torch.tensor(3.0)).item(), 0.0, 5.0])
    e = value_error(a, b)
    # -0.0 and +0.0 differ bitwise (0 ULP apart); 2 → next float is 1 ULP; 4 → 5 is 2**21 ULPs
    assert e["differing"] == 3 and e["numel"] == 4
    assert e["max_abs"] == 1.0 and e["max_rel"] == 0.25 and e["max_ulp"] == 2**21
    ints = value_error(torch.tensor([1, 2, 3]), torch.tensor([1, 5, 3]))
    assert ints["differing"] == 1 and ints["max_ulp"] == 3
