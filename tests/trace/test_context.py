"""The build's context: the garbage collector is left as it was found, even when a build fails."""

from __future__ import annotations

import gc

import pytest
import torch
from torch import nn

from initaudit.trace import trace_build


def test_trace_build_unfreezes_the_collector():
    assert gc.get_freeze_count() == 0
    trace = trace_build(lambda: nn.Linear(3, 2), 0)
    assert gc.get_freeze_count() == 0
    assert len(trace.tensors) == 2


def test_a_failing_build_unfreezes_it_too():
    def broken():
        torch.empty(2).normal_()
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        trace_build(broken, 0)
    assert gc.get_freeze_count() == 0
