"""Every finding kind fires on a real model that has the problem, and only there.

:mod:`initaudit.audit.findings` (``nondeterministic`` is in ``test_nondeterminism.py``).
"""

from __future__ import annotations

import pytest

from initaudit.audit import inspect_target
from initaudit.target import resolve

from . import BUGS, ERROR_KINDS, MODELS, finding_of, inspect_json, kinds_of, line_of, rows_of


def test_forgotten_empty_parameter_is_uninitialized():
    data = inspect_json(str(MODELS / "forgot_empty.py"), check=1)
    f = finding_of(data, "uninitialized", "error")
    assert f["tensors"] == ["scale"]
    line = line_of(MODELS / "forgot_empty.py", "self.scale = nn.Parameter(torch.empty")
    assert f"forgot_empty.py:{line}" in f["message"]
    rows = rows_of(data)
    assert rows["scale"]["origin"] == "uninitialized"
    assert rows["weight"]["origin"] == "user"
    # garbage is reported once, as uninitialized, not again as nondeterministic or suspicious
    assert kinds_of(data, "error") == {"uninitialized"}


def test_tied_weights_listed_once_with_aliases():
    data = inspect_json(str(MODELS / "tied.py"), "--no-rerun", check=0)
    rows = rows_of(data)
    assert "lm_head.weight" not in rows
    assert rows["embed.weight"]["aliases"] == ["lm_head.weight"]
    f = finding_of(data, "tied", "info")
    assert f["tensors"] == ["embed.weight"]
    assert "embed.weight = lm_head.weight" in f["message"]
    # lm_head's own default draw was thrown away by the tie
    assert finding_of(data, "overwritten")["details"]["orphan_draws"] == 16 * 50


def test_lazy_linear_needs_and_uses_example_input():
    data = inspect_json(str(MODELS / "lazy.py"), "--no-rerun", check=1)
    f = finding_of(data, "lazy", "error")
    assert f["tensors"] == ["fc.weight", "fc.bias"]
    assert "--example-input" in f["advice"]
    assert "fc.weight" not in rows_of(data)
    data = inspect_json(str(MODELS / "lazy.py"), "--example-input", "2,3", check=0)
    rows = rows_of(data)
    assert rows["fc.weight"]["shape"] == [4, 3]
    assert rows["fc.weight"]["call"] == "kaiming_uniform_"
    assert rows["fc.weight"]["source"] == "default (LazyLinear.reset_parameters)"
    # materialized after every construction-time draw
    assert rows["fc.weight"]["order"] > rows["out.bias"]["order"]
    assert finding_of(data, "lazy", "info")["tensors"] == ["fc.weight", "fc.bias"]
    assert data["rerun"]["differing"] == []


@pytest.mark.parametrize(
    ("name", "rerun", "kind", "severity", "tensors"),
    [
        ("PythonRandomBias", True, "nondeterministic", "error", ["fc.bias"]),
        ("PrivateGenerator", False, "nondeterministic", "error", ["fc.weight"]),
        ("ClockInit", True, "nondeterministic", "error", ["scale"]),
        ("ConstantMatrix", False, "suspicious", "error", ["fc.weight"]),
        ("ZeroMatrix", False, "suspicious", "info", ["proj.weight"]),
        ("NormalizedZeros", False, "suspicious", "error", ["fc.weight"]),
        ("RescaledRows", False, "suspicious", "error", ["fc.weight"]),
    ],
)
def test_bug_models(name, rerun, kind, severity, tensors):
    report = inspect_target(resolve(f"{BUGS}:{name}"), 0, rerun=rerun)
    found = [f for f in report.findings if f.kind in ERROR_KINDS]
    assert [(f.kind, f.severity, f.tensors) for f in found] == [(kind, severity, tensors)]
    assert report.exit_code == (1 if severity == "error" else 0)


def test_rescaled_rows_judged_against_sampling_error():
    report = inspect_target(resolve(f"{BUGS}:RescaledRows"), 0, rerun=False)
    row = report.row("fc.weight")
    assert row.call == "kaiming_uniform_" and row.check == "off" and row.z_std > 6
    assert row.later_partial  # the in-place scale of the first rows is named
    # the untouched bias of the same model passes the same test
    assert report.row("fc.bias").check == "ok"


def test_gpt2_from_transformers_has_no_error_findings():
    pytest.importorskip("transformers")
    from transformers import GPT2Config, GPT2LMHeadModel

    from initaudit.target import Target

    def build():
        cfg = GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=100, n_positions=16)
        return GPT2LMHeadModel(cfg)

    report = inspect_target(Target(spec="gpt2", name="gpt2", builder=build), 0, rerun=False)
    assert report.exit_code == 0, [f.to_json() for f in report.errors]
    assert report.row("lm_head.weight").name == "transformer.wte.weight"
    assert {f.kind for f in report.findings} >= {"tied", "overwritten"}
    tested = [r for r in report.tensors if r.z_std is not None]
    assert len(tested) >= 8 and all(r.check == "ok" for r in tested)


MODERN = MODELS / "modern_vision.py"


def test_per_channel_constants_are_not_a_symmetry_problem():
    """ConvNeXt's layer scale (C,1,1), NF-RegNet's gain (C,1,1,1), Swin-v2's logit scale."""
    report = inspect_target(resolve(f"{MODERN}:LayerScale"), 0, rerun=False)
    assert report.exit_code == 0, [f.to_json() for f in report.errors]
    assert not report.by_kind("suspicious")
    assert report.row("layer_scale").stats["min"] == report.row("layer_scale").stats["max"]
    # the same check still fires on a real weight matrix whose elements are all equal
    report = inspect_target(resolve(f"{BUGS}:ConstantMatrix"), 0, rerun=False)
    assert [f.severity for f in report.by_kind("suspicious")] == ["error"]


@pytest.mark.parametrize("name", ["SwinRelativePosition", "WhisperSinusoids", "SlicedBackbone"])
def test_modern_patterns_have_no_error_findings(name):
    report = inspect_target(resolve(f"{MODERN}:{name}"), 0, rerun=False)
    assert report.exit_code == 0, [f.to_json() for f in report.errors]


def test_transformers_swin_v2_has_no_error_findings():
    pytest.importorskip("transformers")
    from transformers import Swinv2Config, Swinv2Model

    from initaudit.target import Target

    def build():
        cfg = Swinv2Config(
            image_size=16, patch_size=4, embed_dim=8, depths=[1, 1], num_heads=[1, 2], window_size=2
        )
        return Swinv2Model(cfg)

    report = inspect_target(Target(spec="swinv2", name="swinv2", builder=build), 0, rerun=False)
    assert report.exit_code == 0, [f.to_json() for f in report.errors]
    assert any(r.name.endswith("logit_scale") for r in report.tensors)
