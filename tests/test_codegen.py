"""``initaudit explicit``: generated init code reproduces real builds bit for bit.

Every corpus model is traced, turned into code, checked with ruff as written, and verified by
building fresh models (normally, and with every torch ``reset_parameters`` replaced by a NaN fill
and every tensor poisoned) and comparing every tensor bitwise and the RNG state afterwards.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from initaudit import codegen
from initaudit.errors import AuditFailure
from initaudit.target import resolve

from .conftest import ROOT, run_cli

CORPUS = "tests/models/codegen_corpus.py"
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


def _program(spec: str, example_input=None):
    target = resolve(str(ROOT / spec) if ":" not in spec else _abs(spec))
    program = codegen.trace_program(
        target.build, 0, label=target.name, spec=spec, example_input=example_input
    )
    return target, program


def _abs(spec: str) -> str:
    path, _, name = spec.partition(":")
    return f"{ROOT / path}:{name}"


def _ruff(source: str, tmp_path: Path) -> None:
    ruff = shutil.which("ruff")
    assert ruff is not None, "ruff is part of the test extras: pip install -e '.[test]'"
    path = tmp_path / "generated_init.py"
    path.write_text(source, encoding="utf-8")
    # ruff's defaults (a user's project with no config: 88 columns), plus the stricter rule
    # set this repository lints itself with (which, like ruff's defaults, leaves E501 to the
    # formatter: a long command in the docstring or an unbreakable chain stays long)
    cfg = ["--isolated", "--line-length", "88"]
    check = subprocess.run(
        [ruff, "check", *cfg, "--select", "E,F,W,I,B,UP,RUF", "--ignore", "E501", str(path)],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    check = subprocess.run([ruff, "check", *cfg, str(path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    fmt = subprocess.run(
        [ruff, "format", "--check", "--diff", *cfg, str(path)], capture_output=True, text=True
    )
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


def _load(source: str, tmp_path: Path):
    path = tmp_path / "explicit_mod.py"
    path.write_text(source, encoding="utf-8")
    return codegen.load_initializer(path)


@pytest.mark.parametrize("unroll", [False, True], ids=["folded", "unrolled"])
@pytest.mark.parametrize("name", CORPUS_MODELS)
def test_corpus_bitwise_default_independent_and_ruff_clean(name, unroll, tmp_path):
    target, program = _program(f"{CORPUS}:{name}")
    source = codegen.generate(program, unroll=unroll)
    _ruff(source, tmp_path)
    result = codegen.verify_source(program, source, target.build)
    assert result.modes == ["torch defaults on", "torch defaults replaced by NaN"]
    assert result.ok, result.mismatches


MODERN = "tests/models/modern_vision.py"


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
    target, program = _program(spec)
    source = codegen.generate(program)
    _ruff(source, tmp_path)
    result = codegen.verify_source(program, source, target.build)
    assert result.ok, result.mismatches


def test_inline_tensor_keeps_its_view():
    _, program = _program(f"{MODERN}:WhisperSinusoids")
    source = codegen.generate(program)
    assert "torch.arange(32).view([32, 1])" in source


def test_sliced_sequential_is_addressed_by_its_real_keys():
    """``backbone[1:]`` keeps keys '1', '2', '3': position 1 is key '2', the SE block."""
    _, program = _program(f"{MODERN}:SlicedBackbone")
    source = codegen.generate(program)
    assert 'model.get_buffer("features.1.1.running_mean")' in source
    assert "model.features[1][1]" not in source and "model.features[1][2]" not in source
    assert "model.features[0][0].weight" in source  # positions that are the keys stay readable


def test_generation_failure_names_the_tensor():
    _, program = _program(f"{CORPUS}:DtypeView")
    with pytest.raises(AuditFailure, match=r"cannot generate the code for w \(op fill_ at "):
        codegen.generate(program)


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


def test_lazy_linear_with_example_input(tmp_path):
    target, program = _program("tests/models/lazy.py", example_input=(2, 3))
    source = codegen.generate(program)
    _ruff(source, tmp_path)
    assert codegen.verify_source(program, source, target.build, (2, 3)).ok
    assert "model.fc.weight" in source


def test_default_independence_directly(tmp_path):
    """With torch's defaults NaN-filled the model is garbage until initialize sets it."""
    target, program = _program("examples/cnn.py")
    initialize = _load(codegen.generate(program), tmp_path)
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
    target, program = _program(f"{CORPUS}:RawParams")
    initialize = _load(codegen.generate(program), tmp_path)
    torch.manual_seed(0)
    target.build()
    expected = torch.rand(4)
    model = target.build()
    torch.manual_seed(0)
    initialize(model)
    assert torch.equal(torch.rand(4), expected)


def test_mlp_code_is_readable_and_in_rng_order(tmp_path):
    _, program = _program("examples/mlp.py")
    source = codegen.generate(program)
    assert "a=math.sqrt(5)" in source
    assert 'mode="fan_in"' in source
    assert "bound = 1 / math.sqrt(3)" in source and "fan_in=3" in source
    assert "nn.init.uniform_(model.hid1.bias, a=-bound, b=bound)" in source
    # record order, not name order: hid1, hid2, oupt
    assert source.index("model.hid1.weight") < source.index("model.hid2.weight")
    assert source.index("model.hid2.weight") < source.index("model.oupt.weight")


def test_order_is_rng_order_not_name_order():
    _, program = _program(f"{CORPUS}:Applied")
    source = codegen.generate(program)
    # b is built first: its draws come first although "a" sorts first
    assert source.index("model.b.weight") < source.index("model.a.weight")
    assert "nn.init.trunc_normal_(" in source and "nn.init.orthogonal_(model.a.weight" in source


def test_thrown_away_draws_and_copies_are_replayed():
    _, program = _program(f"{CORPUS}:Encoder")
    source = codegen.generate(program, unroll=True)
    assert "model.enc.layers[1].linear1.weight.copy_(" in source  # the deepcopy
    assert "model.enc.layers[i].linear1.weight.copy_(" in codegen.generate(program)
    _, program = _program(f"{CORPUS}:Tied")
    source = codegen.generate(program)
    assert "thrown away" in source and "torch.empty([12, 6])" in source


def test_unexplainable_models_name_tensor_and_reason():
    _, program = _program("tests/models/numpy_init.py")
    with pytest.raises(AuditFailure, match=r"head\.weight: .*NumPy"):
        codegen.generate(program)
    _, program = _program(f"{CORPUS}:PrivateGenerator")
    with pytest.raises(AuditFailure, match=r"fc\.weight: drawn from a private torch\.Generator"):
        codegen.generate(program)
    _, program = _program("tests/models/forgot_empty.py")
    with pytest.raises(AuditFailure, match=r"scale: never fully written"):
        codegen.generate(program)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        # a Python scalar would otherwise be written into the code as this build's constant
        ("PythonRandomBias", r"fc\.bias: its value changes with Python's random"),
        ("ClockInit", r"scale: its value differs between two builds under the same torch seed"),
    ],
)
def test_scalars_from_other_rngs_or_the_clock_cannot_be_made_explicit(name, message, tmp_path):
    out = tmp_path / "init.py"
    proc = run_cli("explicit", f"tests/models/init_bugs.py:{name}", "--out", str(out), cwd=ROOT)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert re.search(message, proc.stderr), proc.stderr
    assert "fc.weight" not in proc.stderr  # torch-seeded tensors are fine
    assert not out.exists()


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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))


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
    _load(source, tmp_path)(model)
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
            assert "for i in range(18):" in source and "model.stage_1[i].gate.bias" in source
            _ruff(source, tmp_path)
            _independently_reproduces(source, target.build, tmp_path)
            unrolled = codegen.generate(program, unroll=True)
            assert "for i in" not in unrolled and len(unrolled.splitlines()) > 2500
    assert lines[110] <= 3 * lines[8], lines


def test_gpt2_blocks_are_one_loop_per_phase(tmp_path):
    """Construction defaults, then _init_weights: each phase one loop over transformer.h."""
    target, program = _program(f"{CORPUS}:build_gpt2")
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
