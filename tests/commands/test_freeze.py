"""``initaudit freeze`` as a user runs it: files, summary, JSON, and one-line errors."""

from __future__ import annotations

import json

import pytest
import torch

from initaudit import snapshot as snap_mod

from ..conftest import EXAMPLES, ROOT


def test_freeze_default_path_and_summary(cli, tmp_path):
    proc = cli("freeze", str(EXAMPLES / "mlp.py"), cwd=tmp_path, check=0)
    expected = tmp_path / "snapshots" / "mlp" / f"torch-{torch.__version__}-seed0.json"
    assert expected.exists() and snap_mod.values_path_for(expected).exists()
    assert "hid1.weight" in proc.stdout and "kaiming_uniform_(a=√5" in proc.stdout
    assert "6 tensors" in proc.stdout and "6 default" in proc.stdout
    again = cli("freeze", str(EXAMPLES / "mlp.py"), cwd=tmp_path)
    assert again.returncode == 2 and "--force" in again.stderr
    cli("freeze", str(EXAMPLES / "mlp.py"), "--force", cwd=tmp_path, check=0)


def test_freeze_json_and_digest_only(cli, tmp_path):
    out = tmp_path / "h.json"
    proc = cli(
        "freeze",
        str(EXAMPLES / "highway.py"),
        "--out",
        str(out),
        "--digest-only",
        "--format",
        "json",
        "--seed",
        "5",
        check=0,
    )
    manifest = json.loads(proc.stdout)
    assert manifest["seed"] == 5 and manifest["values"] is None
    assert snap_mod.values_path_for(out) is None and not list(tmp_path.glob("*.safetensors"))
    assert json.loads(out.read_text())["tensors"] == manifest["tensors"]


def test_freeze_args_and_dtype(cli, tmp_path):
    out = tmp_path / "h.json"
    cli(
        "freeze",
        f"{EXAMPLES / 'highway.py'}:build_model",
        "--arg",
        "depth=14",
        "--dtype",
        "float64",
        "--out",
        str(out),
        check=0,
    )
    m = json.loads(out.read_text())
    assert m["target"]["kwargs"] == {"depth": 14}
    assert m["provenance"]["default_dtype"] == "float64"
    assert {t["dtype"] for t in m["tensors"] if t["kind"] == "parameter"} == {"float64"}


BAD = {
    "missing file": (["freeze", "nope/missing.py"], "does not exist"),
    "syntax error": (["freeze", "{bad}"], "syntax error in"),
    "constructor raises": (["freeze", "{boom}"], "building M raised ValueError: bad width (at"),
    "no such name": (["freeze", "{mlp}:Nope"], "has no attribute 'Nope'"),
    "not a module": (["freeze", "{highway}:F"], "not an nn.Module"),
    "args do not fit": (["freeze", "{mlp}", "--arg", "width=3"], "arguments do not fit"),
    "bad literal": (["freeze", "{mlp}", "--arg", "width=x y"], "not a Python literal"),
    "unwritable out": (["freeze", "{mlp}", "--out", "/proc/nope/x.json"], "cannot write"),
    "bad dtype": (["freeze", "{mlp}", "--dtype", "float7"], "unknown dtype"),
    "bad device": (["freeze", "{mlp}", "--device", "warp9"], "--device"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_one_line_exit_2(case, cli, tmp_path):
    (tmp_path / "bad.py").write_text("import torch\n\ndef build_model(:\n")
    (tmp_path / "boom.py").write_text(
        "from torch import nn\n\nclass M(nn.Module):\n    def __init__(self):\n"
        "        super().__init__()\n        raise ValueError('bad width')\n"
    )
    args, needle = BAD[case]
    fmt = {
        "bad": tmp_path / "bad.py",
        "boom": tmp_path / "boom.py",
        "mlp": EXAMPLES / "mlp.py",
        "highway": EXAMPLES / "highway.py",
    }
    args = [a.format(**fmt) for a in args]
    proc = cli(*args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert needle in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not list(tmp_path.glob("snapshots/**/*.json"))


def test_debug_shows_traceback(cli, tmp_path):
    proc = cli("freeze", str(tmp_path / "missing.py"), "--debug")
    assert proc.returncode == 2 and "Traceback" in proc.stderr


def test_help_has_examples(cli):
    proc = cli("freeze", "--help", check=0)
    assert "Examples:" in proc.stdout and "--digest-only" in proc.stdout
    assert "Exit codes" in cli("--help", check=0).stdout


def test_lazy_model_needs_example_input_and_check_reuses_it(cli, tmp_path):
    lazy = str(ROOT / "tests" / "models" / "lazy.py")
    out = tmp_path / "lazy.json"
    proc = cli("freeze", lazy, "--out", str(out))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "fc.weight" in proc.stderr and "--example-input" in proc.stderr
    assert not out.exists()
    proc = cli("freeze", lazy, "--out", str(out), "--example-input", "2,3", "--format", "json")
    manifest = json.loads(proc.stdout)
    assert manifest["target"]["example_input"] == [2, 3]
    assert [t["name"] for t in manifest["tensors"]][-2:] == ["fc.weight", "fc.bias"]
    # check rebuilds with the same forward and finds the committed values bit for bit
    cli("check", lazy, "--against", str(out), "--example-input", "2,3", "-q", check=0)
    bad = cli("freeze", lazy, "--example-input", "2,x", "--out", str(tmp_path / "x.json"))
    assert bad.returncode == 2 and "not a shape" in bad.stderr


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["freeze", "examples/mlp.py", "--out", "."], "'--out': File '.' is a directory"),
        (["explicit"], "Missing argument 'TARGET'"),  # a bare freeze acts on [tool.initaudit]
        (["freeze", "examples/mlp.py", "--seed", "x"], "'--seed': 'x' is not a valid integer"),
        (["frobnicate"], "No such command 'frobnicate'"),
    ],
)
def test_click_usage_errors_are_one_line_too(cli, args, needle):
    proc = cli(*args, cwd=ROOT)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()], proc.stderr
    assert needle in proc.stderr and "--help" in proc.stderr


_BIG = '''
import torch
from torch import nn


def build():
    return nn.Sequential(*[nn.Linear(1024, 1024) for _ in range(6)])  # 24 MiB


class Reads(nn.Module):
    """Reads computed values while it builds (like timm's drop-path rates)."""

    def __init__(self):
        super().__init__()
        self.rates = torch.linspace(0, 0.1, 6).tolist()
        self.layers = nn.ModuleList(nn.Linear(1024, 1024) for _ in self.rates)
'''


@pytest.mark.parametrize("name", ["build", "Reads"])
def test_digest_only_streams_once_the_build_outgrows_max_memory(cli, tmp_path, name):
    """No sizing pass: the in-memory build is watched; past --max-memory it is dropped and the
    model streamed, with digests equal to the in-memory ones (a value-reading build too)."""
    (tmp_path / "big.py").write_text(_BIG)
    spec = f"{tmp_path / 'big.py'}:{name}"
    whole, streamed = tmp_path / "whole.json", tmp_path / "streamed.json"
    quiet = cli("freeze", spec, "--digest-only", "--out", str(whole), check=0)
    assert "streaming" not in quiet.stderr
    proc = cli(
        "freeze", spec, "--digest-only", "--max-memory", "4M", "--out", str(streamed), check=0
    )
    assert "grew past 4.0 MiB while building in memory" in proc.stderr
    assert "streaming it one tensor at a time instead" in proc.stderr
    a, b = (json.loads(p.read_text()) for p in (whole, streamed))
    assert not a["provenance"].get("streamed") and b["provenance"]["streamed"] is True
    assert [t["hash"] for t in a["tensors"]] == [t["hash"] for t in b["tensors"]]
    assert a["rng"]["torch_after"] == b["rng"]["torch_after"]
    cli("diff", str(whole), str(streamed), check=0)


def test_max_memory_is_checked(cli, tmp_path):
    bad = cli("freeze", str(EXAMPLES / "mlp.py"), "--digest-only", "--max-memory", "4X")
    assert bad.returncode == 2 and "expected a size such as 8G" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    alone = cli("freeze", str(EXAMPLES / "mlp.py"), "--max-memory", "8G", cwd=tmp_path)
    assert alone.returncode == 2 and "--max-memory needs --digest-only" in alone.stderr


def test_a_model_that_outgrows_memory_and_cannot_stream_says_both(cli, tmp_path):
    (tmp_path / "reads.py").write_text(
        "import torch\nfrom torch import nn\n\n\n"
        "def build():\n"
        "    m = nn.Sequential(*[nn.Linear(1024, 1024) for _ in range(6)])\n"
        "    if float(m[0].weight.abs().max()) > 1:  # reads a parameter's value\n"
        "        raise SystemExit('unreachable')\n"
        "    return m\n"
    )
    spec = f"{tmp_path / 'reads.py'}:build"
    proc = cli("freeze", spec, "--digest-only", "--max-memory", "4M")
    assert proc.returncode == 2, proc.stderr
    err = proc.stderr.strip().splitlines()[-1]
    assert "outgrew 4.0 MiB in memory and cannot be streamed either" in err
    assert "raise --max-memory" in err and "Traceback" not in proc.stderr
