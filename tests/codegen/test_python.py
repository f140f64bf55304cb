"""``initaudit explicit``: generated init code reproduces real builds bit for bit.

Every corpus model is traced, turned into code, checked with ruff as written, and verified by
building fresh models (normally, and with every torch ``reset_parameters`` replaced by a NaN fill
and every tensor poisoned) and comparing every tensor bitwise and the RNG state afterwards.
"""

from __future__ import annotations

import sys

import pytest

from initaudit import codegen
from initaudit.errors import AuditFailure

from .conftest import CORPUS, MODERN, assert_ruff_clean, program_for

CORPUS_MODELS = [
    "Recurrent",
    "PaddedEmbedding",
    "Attention",
    "Encoder",
    "Normed",
    "Tied",
    "RawParams",
    "Applied",
    "build_gpt2",
]


@pytest.mark.parametrize("unroll", [False, True], ids=["folded", "unrolled"])
@pytest.mark.parametrize("name", CORPUS_MODELS)
def test_corpus_bitwise_default_independent_and_ruff_clean(name, unroll, tmp_path):
    target, program = program_for(f"{CORPUS}:{name}")
    source = codegen.generate(program, unroll=unroll)
    assert_ruff_clean(source, tmp_path)
    result = codegen.verify_source(program, source, target.build)
    assert result.modes == ["torch defaults on", "torch defaults replaced by NaN"]
    assert result.ok, result.mismatches


@pytest.mark.parametrize(
    "spec",
    [
        f"{MODERN}:LayerScale",
        f"{MODERN}:SwinRelativePosition",
        f"{MODERN}:WhisperSinusoids",
        f"{MODERN}:SlicedBackbone",
        f"{CORPUS}:build_swin",
        f"{CORPUS}:build_whisper",
    ],
)
def test_modern_models_bitwise_and_ruff_clean(spec, tmp_path):
    """Views of tensors made inline (meshgrid, ``arange(L).view(-1, 1)``), ``contiguous()``
    after a permute, sliced Sequentials, a build-time eval forward."""
    if "build_" in spec:
        pytest.importorskip("transformers")
    target, program = program_for(spec)
    source = codegen.generate(program)
    assert_ruff_clean(source, tmp_path)
    result = codegen.verify_source(program, source, target.build)
    assert result.ok, result.mismatches


def test_inline_tensor_keeps_its_view():
    _, program = program_for(f"{MODERN}:WhisperSinusoids")
    source = codegen.generate(program)
    assert "torch.arange(32).view([32, 1])" in source


def test_sliced_sequential_is_addressed_by_its_real_keys():
    """``backbone[1:]`` keeps keys '1', '2', '3': position 1 is key '2', the SE block."""
    _, program = program_for(f"{MODERN}:SlicedBackbone")
    source = codegen.generate(program)
    assert 'model.get_buffer("features.1.1.running_mean")' in source
    assert "model.features[1][1]" not in source and "model.features[1][2]" not in source
    assert "model.features[0][0].weight" in source  # positions that are the keys stay readable


def test_generation_failure_names_the_tensor():
    _, program = program_for(f"{CORPUS}:DtypeView")
    with pytest.raises(AuditFailure, match=r"cannot generate the code for w \(op fill_ at "):
        codegen.generate(program)


def test_lazy_linear_with_example_input(tmp_path):
    target, program = program_for("tests/models/lazy.py", example_input=(2, 3))
    source = codegen.generate(program)
    assert_ruff_clean(source, tmp_path)
    assert codegen.verify_source(program, source, target.build, (2, 3)).ok
    assert "model.fc.weight" in source


def test_mlp_code_is_readable_and_in_rng_order(tmp_path):
    _, program = program_for("examples/mlp.py")
    source = codegen.generate(program)
    assert "a=math.sqrt(5)" in source
    assert 'mode="fan_in"' in source
    assert "bound = 1 / math.sqrt(3)" in source and "fan_in=3" in source
    assert "nn.init.uniform_(model.hid1.bias, a=-bound, b=bound)" in source
    # record order, not name order: hid1, hid2, oupt
    assert source.index("model.hid1.weight") < source.index("model.hid2.weight")
    assert source.index("model.hid2.weight") < source.index("model.oupt.weight")


def test_order_is_rng_order_not_name_order():
    _, program = program_for(f"{CORPUS}:Applied")
    source = codegen.generate(program)
    # b is built first: its draws come first although "a" sorts first
    assert source.index("model.b.weight") < source.index("model.a.weight")
    assert "nn.init.trunc_normal_(" in source and "nn.init.orthogonal_(model.a.weight" in source


def test_thrown_away_draws_and_copies_are_replayed():
    _, program = program_for(f"{CORPUS}:Encoder")
    source = codegen.generate(program, unroll=True)
    assert "model.enc.layers[1].linear1.weight.copy_(" in source  # the deepcopy
    assert "model.enc.layers[i].linear1.weight.copy_(" in codegen.generate(program)
    _, program = program_for(f"{CORPUS}:Tied")
    source = codegen.generate(program)
    assert "thrown away" in source and "torch.empty([12, 6])" in source


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
