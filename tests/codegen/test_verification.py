"""Verification: torch defaults NaN-filled, every tensor and the RNG state compared."""

from __future__ import annotations

import torch
from torch import nn

from initaudit import codegen

from .conftest import CORPUS, load_source, program_for


def test_default_independence_directly(tmp_path):
    """With torch's defaults NaN-filled the model is garbage until initialize sets it."""
    target, program = program_for("examples/cnn.py")
    initialize = load_source(codegen.generate(program), tmp_path)
    with codegen.defaults_disabled() as n:
        assert n > 10  # Linear, Conv*, BatchNorm*, RNNs, MultiheadAttention, …
        model = target.build()
    assert torch.isnan(model.conv2_bn.running_var).all()  # the check can fail
    torch.manual_seed(0)
    initialize(model)
    assert codegen.compare_model(program.trace.model, model, program.trace.rng_after) == []
    # and the defaults are back afterwards
    assert not torch.isnan(nn.Linear(2, 2).weight).any()


def test_rng_stream_after_initialize_matches_the_build(tmp_path):
    target, program = program_for(f"{CORPUS}:RawParams")
    initialize = load_source(codegen.generate(program), tmp_path)
    torch.manual_seed(0)
    target.build()
    expected = torch.rand(4)
    model = target.build()
    torch.manual_seed(0)
    initialize(model)
    assert torch.equal(torch.rand(4), expected)
