"""``initaudit inspect`` on the seed models and on bad input: :mod:`initaudit.audit.inspect`."""

from __future__ import annotations

import math

import pytest

from ..conftest import EXAMPLES, ROOT, run_cli
from . import ERROR_KINDS, MODELS, finding_of, inspect_json, kinds_of, line_of, rows_of


def test_highway_gate_biases_convs_and_batchnorms():
    data = inspect_json(str(EXAMPLES / "highway.py"), check=0)
    rows = rows_of(data)
    src = EXAMPLES / "highway.py"
    fill_line = line_of(src, "self.gate.bias.data.fill_(BIAS_INIT)")
    kaiming_line = line_of(src, 'nn.init.kaiming_normal_(m.weight, mode="fan_out"')
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
    overwritten = finding_of(data, "overwritten")
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
    kept = finding_of(data, "kept-default", "info")
    assert len(bns) == 14
    for name in bns:
        assert rows[name]["origin"] == "default"
        assert rows[name]["source"] == "default (BatchNorm2d.reset_parameters)"
    assert sorted(kept["tensors"]) == sorted(bns)
    assert not kinds_of(data, "error")
    assert data["rerun"]["ran"] and data["rerun"]["compared"] == len(rows)
    assert data["rerun"]["differing"] == []


def test_highway_text_output_names_sites(tmp_path):
    proc = run_cli("inspect", str(EXAMPLES / "highway.py"), "--no-rerun", "-q", cwd=ROOT, check=0)
    line = line_of(EXAMPLES / "highway.py", "self.gate.bias.data.fill_(BIAS_INIT)")
    assert f"user highway.py:{line}" in proc.stdout
    assert "fill_(value=-13)" in proc.stdout
    assert "kept-default" in proc.stdout and "overwritten" in proc.stdout
    assert "what to do:" in proc.stdout
    assert "skipped (--no-rerun)" in proc.stdout


def test_mlp_require_explicit_fails_on_every_default():
    data = inspect_json(str(EXAMPLES / "mlp.py"), "--require-explicit", "--no-rerun", check=1)
    kept = finding_of(data, "kept-default", "error")
    assert sorted(kept["tensors"]) == sorted(
        f"{m}.{p}" for m in ("hid1", "hid2", "oupt") for p in ("weight", "bias")
    )
    assert "--require-explicit" in kept["advice"]
    rows = rows_of(data)
    assert rows["hid1.weight"]["init"] == (
        "kaiming_uniform_(a=√5, mode='fan_in', nonlinearity='leaky_relu')"
    )
    # the recipe's prediction: std of kaiming_uniform_ is gain*sqrt(3/fan_in)/sqrt(3)
    gain = math.sqrt(2.0 / (1 + 5))
    assert rows["hid2.weight"]["expected"]["std"] == pytest.approx(gain / math.sqrt(4))


@pytest.mark.parametrize("name", ["mlp.py", "cnn.py"])
def test_examples_have_no_error_findings(name):
    data = inspect_json(str(EXAMPLES / name), check=0)
    assert not kinds_of(data) & ERROR_KINDS
    assert not kinds_of(data, "error")
    # silent where the problem is absent: no ties, no lazy modules, nothing suspicious
    assert not kinds_of(data) & {"tied", "lazy", "suspicious", "uninitialized", "nondeterministic"}
    # the MLP keeps every default; the CNN's initialize_weights covers every parameter
    assert ("kept-default" in kinds_of(data)) == (name == "mlp.py")
    assert data["rerun"]["ran"] and data["rerun"]["differing"] == []
    assert all(t["check"] != "off" for t in data["tensors"])


def test_audit_a_frozen_snapshot(tmp_path):
    snap = tmp_path / "mlp.json"
    run_cli("freeze", str(EXAMPLES / "mlp.py"), "--out", str(snap), "-q", cwd=ROOT, check=0)
    data = inspect_json(str(snap), "--require-explicit", check=1)
    assert len(finding_of(data, "kept-default", "error")["tensors"]) == 6
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
