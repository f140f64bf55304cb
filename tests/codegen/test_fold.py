"""Repeated blocks fold into loops that still reproduce the build bit for bit."""

from __future__ import annotations

from pathlib import Path

from initaudit import codegen
from initaudit.codegen.fold import fold
from initaudit.target import resolve

from ..conftest import ROOT, run_cli
from .conftest import CORPUS, assert_ruff_clean, load_source, program_for


def _independently_reproduces(source: str, build, tmp_path: Path) -> None:
    """Not codegen.verify: a fresh model, every tensor NaN, initialize, torch.equal each."""
    import torch

    torch.manual_seed(0)
    reference = build()
    after = torch.get_rng_state()
    model = build()
    with torch.no_grad():
        for t in list(model.parameters()) + list(model.buffers()):
            t.fill_(float("nan")) if t.is_floating_point() else t.fill_(7)
    torch.manual_seed(0)
    load_source(source, tmp_path)(model)
    ref = dict(reference.state_dict())
    got = dict(model.state_dict())
    assert ref.keys() == got.keys()
    assert all(torch.equal(ref[k], got[k]) for k in ref), [
        k for k in ref if not torch.equal(ref[k], got[k])
    ]
    assert torch.equal(torch.get_rng_state(), after)


def test_repeated_blocks_fold_into_loops(tmp_path):
    """The depth-110 highway net (18 blocks a stage) costs at most 3x the depth-8 file."""
    lines = {}
    for depth in (8, 110):
        target = resolve(f"{ROOT / 'examples/highway.py'}:build_model", {"depth": depth})
        program = codegen.trace_program(target.build, 0, label=target.name, spec="highway")
        source = codegen.generate(program)
        lines[depth] = len(source.splitlines())
        if depth == 110:
            # per stage: the construction defaults, then the user init pass (highway.py:55)
            assert source.count("for i in range(") == 6
            assert "for i in range(18):" in source and "blocks[i].gate.bias" in source
            assert "blocks = list(model.stage_1)" in source  # a Sequential: indexed once
            assert_ruff_clean(source, tmp_path)
            _independently_reproduces(source, target.build, tmp_path)
            unrolled = codegen.generate(program, unroll=True)
            assert "for i in" not in unrolled and len(unrolled.splitlines()) > 2500
    assert lines[110] <= 3 * lines[8], lines


def test_gpt2_blocks_are_one_loop_per_phase(tmp_path):
    """Construction defaults, then _init_weights: each phase one loop over transformer.h."""
    target, program = program_for(f"{CORPUS}:build_gpt2")
    source = codegen.generate(program)
    assert source.count("for i in range(") == 2
    assert "model.transformer.h[i]" in source
    _independently_reproduces(source, target.build, tmp_path)


def test_cli_unroll_flag(tmp_path):
    spec = f"{ROOT / 'examples/highway.py'}:build_model"
    folded = run_cli("explicit", spec, "--arg", "depth=20", "-q", check=0).stdout
    unrolled = run_cli("explicit", spec, "--arg", "depth=20", "-q", "--unroll", check=0).stdout
    assert "for i in range(" in folded and "for i in range(" not in unrolled
    assert len(folded.splitlines()) < len(unrolled.splitlines())


def _many_linears():
    from torch import nn

    return nn.Sequential(*[nn.Linear(4, 4) for _ in range(300)])


def test_a_long_top_level_sequential_is_one_loop_over_a_list(tmp_path):
    """``model[i]`` walks a Sequential from the start: the loop indexes a list made once."""
    program = codegen.trace_program(_many_linears, 0, label="many", spec="many")
    source = codegen.generate(program)
    body = source.split("def initialize", 1)[1]
    assert body.count("for i in range(300):") == 1
    assert "blocks = list(model)" in body and "blocks[i].weight" in body
    assert "model[" not in body
    assert "# i (Linear)" in body  # the block's own comment, generic in its index
    assert_ruff_clean(source, tmp_path)
    _independently_reproduces(source, _many_linears, tmp_path)


def test_a_loop_list_never_takes_a_name_the_code_uses():
    body = [
        "blocks = model.blocks",
        "nn.init.ones_(blocks.scale)",
        "nn.init.zeros_(model.seq[0].bias)",
        "nn.init.zeros_(model.seq[1].bias)",
        "nn.init.ones_(blocks.shift)",
    ]
    folded, loops = fold(body, frozenset({"model.seq"}))
    assert loops == 1
    assert "blocks_2 = list(model.seq)" in folded
    assert "    nn.init.zeros_(blocks_2[i].bias)" in folded
    assert folded[-1] == "nn.init.ones_(blocks.shift)"  # still the alias
