"""The tracer records how every tensor got its value, and never changes the values."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from initaudit.target import resolve
from initaudit.trace import trace_build

from ..conftest import EXAMPLES
from ..models import corpus


def _plain(build, seed=0):
    torch.manual_seed(seed)
    model = build()
    return model, torch.get_rng_state()


def _gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=100, n_positions=16)
    return GPT2LMHeadModel(cfg)


def _bert():
    from transformers import BertConfig, BertModel

    cfg = BertConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        vocab_size=100,
        max_position_embeddings=32,
    )
    return BertModel(cfg)


BUILDS = {
    "mlp": resolve(str(EXAMPLES / "mlp.py")).build,
    "highway": resolve(str(EXAMPLES / "highway.py")).build,
    "cnn": resolve(str(EXAMPLES / "cnn.py")).build,
    "kitchen": corpus.Kitchen,
    "applied": corpus.Applied,
    "gru": lambda: nn.GRU(5, 7, num_layers=2),
    "spectral": lambda: nn.utils.parametrizations.spectral_norm(nn.Linear(6, 5)),
    "gpt2": _gpt2,
    "bert": _bert,
}


@pytest.mark.parametrize("name", list(BUILDS))
@pytest.mark.parametrize("seed", [0, 7])
def test_trace_is_bitwise_invisible(name, seed):
    build = BUILDS[name]
    plain, plain_rng = _plain(build, seed)
    trace = trace_build(build, seed)
    traced_rng = torch.get_rng_state()
    expected = plain.state_dict()
    got = trace.model.state_dict()
    assert expected.keys() == got.keys()
    for key in expected:
        assert torch.equal(expected[key], got[key]), key
    assert torch.equal(plain_rng, traced_rng), "tracing changed the RNG stream"
    names = {t.name for t in trace.tensors} | {a for t in trace.tensors for a in t.aliases}
    assert set(expected) <= names
    for t in trace.tensors:
        assert t.record is not None, t.name
        assert t.events, f"{t.name} has no recorded events"
        assert all(e.origin in ("default", "library", "user") for e in t.events)


def line_of(text: str, path=EXAMPLES / "highway.py") -> int:
    """The 1-based line of ``text`` in an example file."""
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def _by_name(trace):
    return {t.name: t for t in trace.tensors}


def test_linear_default_recipe_is_resolved():
    trace = trace_build(BUILDS["mlp"], 0)
    w = _by_name(trace)["hid1.weight"]
    ev = [e for e in w.events if e.kind != "alloc"][-1]
    assert ev.call == "kaiming_uniform_"
    assert ev.args["a"] == pytest.approx(math.sqrt(5))
    assert ev.args["mode"] == "fan_in" and ev.args["nonlinearity"] == "leaky_relu"
    assert ev.args["fan"] == 3
    assert ev.args["bound"] == pytest.approx(1 / math.sqrt(3))
    assert ev.origin == "default" and ev.scope == "Linear.reset_parameters"
    assert ev.rng == "global" and ev.rng_before
    b = _by_name(trace)["hid1.bias"]
    assert [e.call for e in b.events if e.kind != "alloc"] == ["uniform_"]


def test_user_fill_site_and_overwrite_recorded():
    trace = trace_build(BUILDS["highway"], 0)
    tensors = _by_name(trace)
    gate = tensors["stage_1.0.gate.bias"]
    last = gate.events[-1]
    assert last.call == "fill_" and last.args == {"value": -13}
    assert last.origin == "user" and last.site.endswith(f"highway.py:{line_of('fill_(BIAS_INIT)')}")
    conv = tensors["stage_1.0.conv_a.weight"]
    calls = [(e.call, e.origin) for e in conv.events if e.kind != "alloc"]
    assert calls == [("kaiming_uniform_", "default"), ("kaiming_normal_", "user")]
    assert tensors["bn_1.weight"].events[-1].origin == "default"


def test_rng_order_not_name_order():
    trace = trace_build(lambda: nn.MultiheadAttention(8, 2), 0)
    order = [t.name for t in trace.tensors]
    # MultiheadAttention draws out_proj before in_proj_weight (its __init__ builds out_proj first)
    assert order.index("out_proj.weight") < order.index("in_proj_weight")
    applied = trace_build(corpus.Applied, 0)
    names = [t.name for t in applied.tensors]
    assert names.index("b.weight") < names.index("a.weight")


def test_kitchen_sink_provenance():
    trace = trace_build(corpus.Kitchen, 0)
    t = _by_name(trace)
    # tied weights are one record with an alias
    assert t["emb.weight"].aliases == ["head.weight"]
    # a thrown-away randn, and head.weight's own default draw, are orphan draws
    orphans = [(e.call, e.origin) for e in trace.orphan_draws()]
    assert ("randn", "user") in orphans and ("kaiming_uniform_", "default") in orphans
    # nn.Parameter(torch.randn(...) * 0.02): randn then mul, from user code
    assert [e.op for e in t["p"].events] == ["randn", "mul"]
    # TransformerEncoder deep-copies its layer: each copy's history includes the clone
    ops = [e.op for e in t["enc.layers.1.linear1.weight"].events]
    assert ops[-1] == "clone" and "uniform_" in ops
    # weight_norm: g is derived (norm) from the default-initialized weight
    g = t["wn.parametrizations.weight.original0"]
    assert [e.call for e in g.events if e.kind != "alloc"][-1] == "norm"
    assert any(e.call == "kaiming_uniform_" for e in g.events)
    # .data assignment binds to the new storage
    assert t["replaced.weight"].events[-1].op in ("full", "fill_")
    assert t["replaced.weight"].events[-1].origin == "user"
    # a torch.tensor(...) buffer enters as an external value at the user's line
    assert t["steps"].events[0].kind == "external"
    # LSTM defaults are uniform_ draws from its own reset_parameters
    assert t["lstm.weight_ih_l0"].events[-1].scope == "LSTM.reset_parameters"


def test_numpy_draws_are_detected():
    trace = trace_build(corpus.NumpyInit, 0)
    assert trace.drew_from["numpy"] is True
    assert trace.drew_from["python"] is False
    clean = trace_build(BUILDS["mlp"], 0)
    assert clean.drew_from == {"python": False, "numpy": False}


def test_private_generator_is_flagged():
    def build():
        m = nn.Linear(3, 3)
        g = torch.Generator().manual_seed(123)
        with torch.no_grad():
            m.weight.normal_(generator=g)
        return m

    trace = trace_build(build, 0)
    assert trace.private_generators
    w = _by_name(trace)["weight"]
    assert w.events[-1].rng == "private"


def test_dtype_option_builds_in_that_dtype():
    trace = trace_build(BUILDS["mlp"], 0, dtype=torch.float64)
    assert all(t.tensor.dtype == torch.float64 for t in trace.tensors)
    assert torch.get_default_dtype() == torch.float32
