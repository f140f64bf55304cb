"""``initaudit inspect``: every finding fires on a real model that has the problem, and only there."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from initaudit.audit import inspect_target, predict
from initaudit.target import resolve

from .conftest import EXAMPLES, ROOT, run_cli

MODELS = ROOT / "tests" / "models"
ERROR_KINDS = {"uninitialized", "nondeterministic", "suspicious"}


def _line_of(path: Path, needle: str) -> int:
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if needle in line:
            return i
    raise AssertionError(f"{needle!r} not in {path}")


def _inspect(*args: str, check: int | None = None) -> dict:
    proc = run_cli("inspect", *args, "--format", "json", "-q", cwd=ROOT)
    if check is not None:
        assert proc.returncode == check, (proc.returncode, proc.stdout[-2000:], proc.stderr)
    data = json.loads(proc.stdout)
    assert data["summary"]["exit_code"] == proc.returncode
    return data


def _rows(data: dict) -> dict[str, dict]:
    return {t["name"]: t for t in data["tensors"]}


def _kinds(data: dict, severity: str | None = None) -> set[str]:
    return {f["kind"] for f in data["findings"] if severity in (None, f["severity"])}


def _finding(data: dict, kind: str, severity: str | None = None) -> dict:
    found = [f for f in data["findings"] if f["kind"] == kind and severity in (None, f["severity"])]
    assert len(found) == 1, data["findings"]
    return found[0]


# ------------------------------------------------------------------ the seed models


def test_highway_gate_biases_convs_and_batchnorms():
    data = _inspect(str(EXAMPLES / "highway.py"), check=0)
    rows = _rows(data)
    src = EXAMPLES / "highway.py"
    fill_line = _line_of(src, "self.gate.bias.data.fill_(BIAS_INIT)")
    kaiming_line = _line_of(src, 'nn.init.kaiming_normal_(m.weight, mode="fan_out"')
    gates = [n for n in rows if n.endswith("gate.bias")]
    assert len(gates) == 3
    for name in gates:
        r = rows[name]
        assert r["origin"] == "user"
        assert r["site"].endswith(f"highway.py:{fill_line}")
        assert r["call"] == "fill_" and r["args"]["value"] == -13
        assert r["stats"]["min"] == r["stats"]["max"] == -13
        assert r["source"] == f"user {r['site']}"
    convs = [n for n in rows if n.endswith(".weight") and rows[n]["module"] == "Conv2d"]
    assert len(convs) == 10
    overwritten = _finding(data, "overwritten")
    for name in convs:
        r = rows[name]
        assert (r["origin"], r["call"]) == ("user", "kaiming_normal_")
        assert r["site"].endswith(f"highway.py:{kaiming_line}")
        assert r["wasted_draws"] == math.prod(r["shape"])  # the default draw, replaced
        assert r["check"] == "ok"
        assert name in overwritten["tensors"]
    assert overwritten["details"]["wasted_draws"] >= sum(rows[n]["wasted_draws"] for n in convs)
    assert "every tensor initialized after it" in overwritten["message"]
    bns = [n for n in rows if rows[n]["module"] == "BatchNorm2d" and rows[n]["kind"] == "parameter"]
    kept = _finding(data, "kept-default", "info")
    assert len(bns) == 14
    for name in bns:
        assert rows[name]["origin"] == "default"
        assert rows[name]["source"] == "default (BatchNorm2d.reset_parameters)"
    assert sorted(kept["tensors"]) == sorted(bns)
    assert not _kinds(data, "error")
    assert data["rerun"]["ran"] and data["rerun"]["compared"] == len(rows)
    assert data["rerun"]["differing"] == []


def test_highway_text_output_names_sites(tmp_path):
    proc = run_cli("inspect", str(EXAMPLES / "highway.py"), "--no-rerun", "-q", cwd=ROOT, check=0)
    line = _line_of(EXAMPLES / "highway.py", "self.gate.bias.data.fill_(BIAS_INIT)")
    assert f"user highway.py:{line}" in proc.stdout
    assert "fill_(value=-13)" in proc.stdout
    assert "kept-default" in proc.stdout and "overwritten" in proc.stdout
    assert "what to do:" in proc.stdout
    assert "skipped (--no-rerun)" in proc.stdout


def test_mlp_require_explicit_fails_on_every_default():
    data = _inspect(str(EXAMPLES / "mlp.py"), "--require-explicit", "--no-rerun", check=1)
    kept = _finding(data, "kept-default", "error")
    assert sorted(kept["tensors"]) == sorted(
        f"{m}.{p}" for m in ("hid1", "hid2", "oupt") for p in ("weight", "bias")
    )
    assert "--require-explicit" in kept["advice"]
    rows = _rows(data)
    assert rows["hid1.weight"]["init"] == (
        "kaiming_uniform_(a=√5, mode='fan_in', nonlinearity='leaky_relu')"
    )
    # the recipe's prediction: std of kaiming_uniform_ is gain*sqrt(3/fan_in)/sqrt(3)
    gain = math.sqrt(2.0 / (1 + 5))
    assert rows["hid2.weight"]["expected"]["std"] == pytest.approx(gain / math.sqrt(4))


@pytest.mark.parametrize("name", ["mlp.py", "cnn.py"])
def test_examples_have_no_error_findings(name):
    data = _inspect(str(EXAMPLES / name), check=0)
    assert not _kinds(data) & ERROR_KINDS
    assert not _kinds(data, "error")
    # silent where the problem is absent: no ties, no lazy modules, nothing suspicious
    assert not _kinds(data) & {"tied", "lazy", "suspicious", "uninitialized", "nondeterministic"}
    # the MLP keeps every default; the CNN's initialize_weights covers every parameter
    assert ("kept-default" in _kinds(data)) == (name == "mlp.py")
    assert data["rerun"]["ran"] and data["rerun"]["differing"] == []
    assert all(t["check"] != "off" for t in data["tensors"])


# ------------------------------------------------------------------ models with the bugs


def test_forgotten_empty_parameter_is_uninitialized():
    data = _inspect(str(MODELS / "forgot_empty.py"), check=1)
    f = _finding(data, "uninitialized", "error")
    assert f["tensors"] == ["scale"]
    line = _line_of(MODELS / "forgot_empty.py", "self.scale = nn.Parameter(torch.empty")
    assert f"forgot_empty.py:{line}" in f["message"]
    rows = _rows(data)
    assert rows["scale"]["origin"] == "uninitialized"
    assert rows["weight"]["origin"] == "user"
    # garbage is reported once, as uninitialized, not again as nondeterministic or suspicious
    assert _kinds(data, "error") == {"uninitialized"}


def test_numpy_global_rng_is_nondeterministic():
    data = _inspect(str(MODELS / "numpy_init.py"), check=1)
    f = _finding(data, "nondeterministic", "error")
    assert f["tensors"] == ["head.weight"]  # named exactly by the fresh-process rebuild
    assert "NumPy" in f["message"]
    assert data["rerun"]["differing"] == ["head.weight"]
    # without the rebuild the trace still knows the build drew from NumPy
    data = _inspect(str(MODELS / "numpy_init.py"), "--no-rerun", check=1)
    f = _finding(data, "nondeterministic", "error")
    assert "NumPy" in f["message"] and "head.weight" in f["tensors"]


def test_tied_weights_listed_once_with_aliases():
    data = _inspect(str(MODELS / "tied.py"), "--no-rerun", check=0)
    rows = _rows(data)
    assert "lm_head.weight" not in rows
    assert rows["embed.weight"]["aliases"] == ["lm_head.weight"]
    f = _finding(data, "tied", "info")
    assert f["tensors"] == ["embed.weight"]
    assert "embed.weight = lm_head.weight" in f["message"]
    # lm_head's own default draw was thrown away by the tie
    assert _finding(data, "overwritten")["details"]["orphan_draws"] == 16 * 50


def test_lazy_linear_needs_and_uses_example_input():
    data = _inspect(str(MODELS / "lazy.py"), "--no-rerun", check=1)
    f = _finding(data, "lazy", "error")
    assert f["tensors"] == ["fc.weight", "fc.bias"]
    assert "--example-input" in f["advice"]
    assert "fc.weight" not in _rows(data)
    data = _inspect(str(MODELS / "lazy.py"), "--example-input", "2,3", check=0)
    rows = _rows(data)
    assert rows["fc.weight"]["shape"] == [4, 3]
    assert rows["fc.weight"]["call"] == "kaiming_uniform_"
    assert rows["fc.weight"]["source"] == "default (LazyLinear.reset_parameters)"
    # materialized after every construction-time draw
    assert rows["fc.weight"]["order"] > rows["out.bias"]["order"]
    assert _finding(data, "lazy", "info")["tensors"] == ["fc.weight", "fc.bias"]
    assert data["rerun"]["differing"] == []


BUGS = MODELS / "init_bugs.py"


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


# ------------------------------------------------------------------ recipes, inputs, errors


def test_predictions_follow_the_init_formulas():
    p = predict("kaiming_uniform_", {"a": math.sqrt(5), "bound": 0.25})
    assert (p.low, p.high, p.std) == (-0.25, 0.25, pytest.approx(0.25 / math.sqrt(3)))
    assert predict("uniform_", {"from": -1.0, "to": 3.0}).mean == 1.0
    assert predict("normal_", {"mean": 0.0, "std": 0.02}).std == 0.02
    tn = predict("trunc_normal_", {"mean": 0.0, "std": 1.0, "a": -2.0, "b": 2.0})
    assert tn.std == pytest.approx(0.8796, abs=1e-4)
    assert predict("orthogonal_", {}) is None


def test_audit_a_frozen_snapshot(tmp_path):
    snap = tmp_path / "mlp.json"
    run_cli("freeze", str(EXAMPLES / "mlp.py"), "--out", str(snap), "-q", cwd=ROOT, check=0)
    data = _inspect(str(snap), "--require-explicit", check=1)
    assert len(_finding(data, "kept-default", "error")["tensors"]) == 6
    assert data["rerun"] == {"ran": False, "skipped": "a snapshot is audited as recorded"}
    text = run_cli("inspect", str(snap), cwd=ROOT).stdout
    assert "skipped (a snapshot is audited as recorded)" in text and "--no-rerun" not in text


def test_help_gives_each_finding_the_severity_inspect_reports():
    """``lazy`` is an error without --example-input (what `inspect lazy.py` reports)."""
    help_text = " ".join(run_cli("inspect", "--help", check=0).stdout.split())
    assert "lazy (an error without --example-input, info with it)" in help_text
    assert "lazy (info)" not in help_text and "tied, lazy" not in help_text
    proc = run_cli("inspect", str(MODELS / "lazy.py"), "--no-rerun", cwd=ROOT)
    assert proc.returncode == 1 and "ERROR lazy" in proc.stdout, (proc.returncode, proc.stdout)


@pytest.mark.parametrize(
    "args",
    [
        ("examples/mlp.py", "--example-input", "two,three"),
        ("examples/lazy_missing.py",),
        ("examples/mlp.py", "--example-input", "2,5", "--no-rerun"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args):
    proc = run_cli("inspect", *args, cwd=ROOT, check=2)
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "error" in proc.stderr


# ------------------------------------------------------------------ modern real-model patterns

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
