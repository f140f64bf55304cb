"""``initaudit diff`` on real drift: separate processes, real torch, no mocks."""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from initaudit import snapshot
from initaudit._cli import main
from initaudit.diff import diff_snapshots
from initaudit.errors import UsageError
from initaudit.freeze import freeze as freeze_target
from initaudit.render.diff import diff_markdown, diff_plain

from ..conftest import ROOT, ZERO_BIAS, run_cli

MLP = ROOT / "snapshots" / "mlp" / "torch-2.13.0+cpu-seed0.json"


def freeze(model: Path, out: Path, env: dict | None = None) -> Path:
    """Freeze ``model`` in a fresh process (cwd = its folder) into ``out``."""
    run_cli("freeze", str(model), "--out", str(out), "-q", cwd=model.parent, env=env, check=0)
    return out


def diff_json(a: Path, b: Path, *extra: str, code: int = 1) -> dict:
    proc = run_cli("diff", str(a), str(b), "--format", "json", *extra)
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    return json.loads(proc.stdout)


def statuses(data: dict) -> dict[str, str]:
    return {t["name"]: t["status"] for t in data["tensors"]}


def invoke(*args: str):
    """Run the CLI in-process (fast) for input-error cases; returns click's Result."""
    return CliRunner().invoke(main, list(args))


# --------------------------------------------------------------------------- real drift


def test_same_build_twice_is_identical(tmp_path):
    """Two fresh processes build examples/mlp.py: bitwise identical, same environment; and
    identical to the committed snapshot (frozen on another machine: only its environment may
    differ, e.g. the platform string or an AVX2 vs AVX512 CPU, neither of which changes it)."""
    shutil.copy(ROOT / "examples" / "mlp.py", tmp_path / "mlp.py")
    first = freeze(tmp_path / "mlp.py", tmp_path / "one" / "mlp.json")
    second = freeze(tmp_path / "mlp.py", tmp_path / "two" / "mlp.json")
    data = diff_json(first, second, code=0)
    assert data["verdict"] == "identical" and data["root_cause"] is None
    assert set(statuses(data).values()) == {"identical"} and len(data["tensors"]) == 6
    assert data["environment"] == {} and data["tolerance"] is None
    text = run_cli("diff", str(first), str(second), check=0).stdout
    assert text.startswith("IDENTICAL: all 6 tensors bitwise identical")
    assert "environment: unchanged" in text
    committed = diff_json(MLP, second, code=0)
    assert committed["verdict"] == "identical"
    assert set(statuses(committed).values()) == {"identical"}
    # Only machine keys may differ from the committed snapshot; never torch itself.
    assert set(committed["environment"]) <= {"platform", "cpu", "cpu_capability", "num_threads"}


CAPABILITY_MODEL = """\
import torch.nn as nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(100, 16)  # normal_: vectorized for 16 or more elements
        self.tiny = nn.Embedding(3, 4)      # normal_ on 12 elements: the scalar path
        self.proj = nn.Linear(16, 8)        # uniform_: the same on every capability
"""


@pytest.mark.skipif(
    torch.backends.cpu.get_cpu_capability() == "DEFAULT" or "ATEN_CPU_CAPABILITY" in os.environ,
    reason="needs a CPU with a vectorized capability and no ATEN_CPU_CAPABILITY set",
)
def test_cpu_capability_is_kernel_drift(tmp_path):
    model = tmp_path / "net.py"
    model.write_text(CAPABILITY_MODEL)
    native = freeze(model, tmp_path / "native" / "net.json")
    default = freeze(
        model, tmp_path / "default" / "net.json", env={"ATEN_CPU_CAPABILITY": "default"}
    )
    data = diff_json(native, default)
    st = statuses(data)
    assert st == {
        "embed.weight": "kernel-drift",
        "tiny.weight": "identical",
        "proj.weight": "identical",
        "proj.bias": "identical",
    }
    assert data["root_cause"] == "embed.weight"
    env = data["environment"]
    assert env["ATEN_CPU_CAPABILITY"] == {"before": None, "after": "default"}
    assert env["cpu_capability"]["after"] == "DEFAULT"
    assert env["cpu_capability"]["before"] == torch.backends.cpu.get_cpu_capability()
    (embed,) = [t for t in data["tensors"] if t["name"] == "embed.weight"]
    err = embed["error"]
    assert 0 < err["differing"] <= err["numel"] == 1600
    assert 0 < err["max_abs"] < 1e-4 and err["max_ulp"] >= 1 and err["max_rel"] > 0
    # the text and markdown reports say the same
    text = run_cli("diff", str(native), str(default), env={"COLUMNS": "200"}).stdout
    assert "DRIFT: 1 of 4 tensors differ (1 kernel-drift)" in text
    assert "root cause embed.weight (kernel-drift)" in text and "cpu_capability" in text
    # a tolerance accepts the kernel difference, and says it was used
    tol = diff_json(native, default, "--atol", "1e-5", code=0)
    assert tol["verdict"] == "identical" and tol["tolerance"] == {"atol": 1e-5, "rtol": 0.0}
    (embed,) = [t for t in tol["tensors"] if t["name"] == "embed.weight"]
    assert embed["status"] == "identical" and embed["within_tolerance"]
    tight = diff_json(native, default, "--atol", "1e-12")
    assert statuses(tight)["embed.weight"] == "kernel-drift"


LINEAR_MODEL = """\
import torch.nn as nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(10, 8)
        self.lin1 = nn.Linear(8, 8)
        self.lin2 = nn.Linear(8, 4)
        self.tail = nn.Embedding(5, 4)
"""

# A changed torch default, as an upgrade could bring (conftest.ZERO_BIAS): Linear's bias
# starts at zero, and since zeros_ draws nothing, everything random after the first Linear shifts.


def test_changed_torch_default_is_recipe_drift_and_stream_shift(tmp_path):
    model = tmp_path / "net.py"
    model.write_text(LINEAR_MODEL)
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(ZERO_BIAS)
    old = freeze(model, tmp_path / "old" / "net.json")
    new = freeze(
        model,
        tmp_path / "new" / "net.json",
        env={"PYTHONPATH": os.pathsep.join([str(site), str(ROOT)])},
    )
    data = diff_json(old, new)
    assert statuses(data) == {
        "embed.weight": "identical",
        "lin1.weight": "identical",
        "lin1.bias": "recipe-drift",
        "lin2.weight": "stream-shift",
        "lin2.bias": "recipe-drift",
        "tail.weight": "stream-shift",
    }
    assert [t["name"] for t in data["tensors"]] == list(statuses(data))  # RNG order
    assert data["root_cause"] == "lin1.bias"
    detail = data["root_cause_detail"]
    assert detail["kind"] == "tensor" and detail["status"] == "recipe-drift"
    assert detail["shifted"] == ["lin2.weight", "tail.weight"]
    (bias,) = [t for t in data["tensors"] if t["name"] == "lin1.bias"]
    assert bias["init_before"].startswith("uniform_(") and bias["init_after"] == "zeros_()"
    (w2,) = [t for t in data["tensors"] if t["name"] == "lin2.weight"]
    assert w2["shifted_by"] == "lin1.bias" and w2["error"]["differing"] > 0
    # The same torch: only the code that ran changed (the patch in sitecustomize.py ran too).
    assert set(data["environment"]) == {"sources"}
    ((path, change),) = data["environment"]["sources"].items()
    assert path.endswith("sitecustomize.py") and change["before"] is None
    text = diff_plain(diff_snapshots(snapshot.read(old), snapshot.read(new)))
    assert "root cause lin1.bias (recipe-drift)" in text
    assert "2 later tensor(s) shifted: lin2.weight, tail.weight" in text
    md = diff_markdown(diff_snapshots(snapshot.read(old), snapshot.read(new)))
    assert "| **recipe-drift** | `lin1.bias` |" in md and "**❌ DRIFT" in md


DRAW_MODEL = """\
import torch
import torch.nn as nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 4)
{extra}
        self.b = nn.Linear(4, 3)
"""


def test_extra_draw_in_init_shifts_the_rest(tmp_path):
    model = tmp_path / "net.py"
    model.write_text(DRAW_MODEL.format(extra=""))
    old = freeze(model, tmp_path / "old" / "net.json")
    # the same file, one thrown-away draw later (a debugging leftover, a dropout probe…)
    model.write_text(DRAW_MODEL.format(extra="        torch.randn(3)"))
    orphan = freeze(model, tmp_path / "orphan" / "net.json")
    # … or a new random parameter in the middle
    model.write_text(DRAW_MODEL.format(extra="        self.noise = nn.Parameter(torch.randn(3))"))
    added = freeze(model, tmp_path / "added" / "net.json")

    data = diff_json(old, orphan)
    assert statuses(data) == {
        "a.weight": "identical",
        "a.bias": "identical",
        "b.weight": "stream-shift",
        "b.bias": "stream-shift",
    }
    assert data["root_cause"] == "net.py:9"
    assert data["root_cause_detail"]["kind"] == "orphan-draw"
    assert data["root_cause_detail"]["shifted"] == ["b.weight", "b.bias"]
    assert data["orphan_draws"] == [
        {
            "change": "added",
            "call": "randn",
            "op": "randn",
            "numel": 3,
            "site": "net.py:9",
            "scope": None,
            "library": None,  # the user's own draw: no library made it
            "function": None,
        }
    ]
    text = run_cli("diff", str(old), str(orphan), env={"COLUMNS": "200"}).stdout
    assert "root cause thrown-away draw at net.py:9" in text

    data = diff_json(old, added)
    assert statuses(data) == {
        "a.weight": "identical",
        "a.bias": "identical",
        "noise": "added",
        "b.weight": "stream-shift",
        "b.bias": "stream-shift",
    }
    assert data["root_cause"] == "noise"
    assert data["root_cause_detail"]["shifted"] == ["b.weight", "b.bias"]

    # and back: the draw removed is the root cause the other way round
    back = diff_snapshots(snapshot.read(added), snapshot.read(old))
    assert back.root_cause.name == "noise" and back.root_cause.status == "removed"
    assert [t.status for t in back.tensors if t.name.startswith("b.")] == ["stream-shift"] * 2


SHAPE_MODEL = """\
import torch
import torch.nn as nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, {width})
        self.register_buffer("scale", torch.ones(3, dtype=torch.{dtype}))
        self.c = nn.Linear(2, 2)
"""


def test_shape_and_dtype_drift_digest_only(tmp_path):
    """Shape and dtype drift; digest-only snapshots compare statistics, never values."""
    model = tmp_path / "net.py"
    model.write_text(SHAPE_MODEL.format(width=4, dtype="float32"))
    run_cli(
        "freeze", str(model), "--out", "old/net.json", "--digest-only", "-q", cwd=tmp_path, check=0
    )
    model.write_text(SHAPE_MODEL.format(width=5, dtype="float64"))
    run_cli(
        "freeze", str(model), "--out", "new/net.json", "--digest-only", "-q", cwd=tmp_path, check=0
    )
    report = diff_snapshots(
        snapshot.read(tmp_path / "old/net.json"), snapshot.read(tmp_path / "new/net.json")
    )
    st = {t.name: t.status for t in report.tensors}
    assert st["a.weight"] == st["a.bias"] == "shape-drift"
    assert st["scale"] == "dtype-drift"
    assert st["c.weight"] == st["c.bias"] == "stream-shift"
    assert report.root_cause.name == "a.weight" and not report.values_compared
    c = next(t for t in report.tensors if t.name == "c.weight")
    assert c.error is None and c.stats and "mean" in c.stats
    assert any("digests only" in n for n in report.notes)


# --------------------------------------------------------------------------- bad input


def one_line_error(result, *needles: str) -> None:
    assert result.exit_code == 2, (result.exit_code, result.output)
    out = result.output.strip()
    assert "Traceback" not in out and len(out.splitlines()) == 1, out
    for needle in needles:
        assert needle in out, out


@pytest.fixture
def mlp_copy(tmp_path) -> Path:
    """A private copy of the committed mlp snapshot (manifest and values)."""
    dest = tmp_path / "copy" / MLP.name
    dest.parent.mkdir()
    shutil.copy(MLP, dest)
    shutil.copy(MLP.with_suffix(".safetensors"), dest.with_suffix(".safetensors"))
    return dest


def test_bad_inputs_one_line_exit_2(tmp_path, mlp_copy):
    one_line_error(invoke("diff", str(MLP), str(tmp_path / "missing.json")), "does not exist")
    truncated = tmp_path / "truncated.json"
    truncated.write_text(MLP.read_text()[:500])
    one_line_error(invoke("diff", str(MLP), str(truncated)), "not valid JSON")
    corrupted = tmp_path / "corrupted.json"
    corrupted.write_bytes(b"\xff\xfe\x00garbage" * 10)
    one_line_error(invoke("diff", str(MLP), str(corrupted)), "not valid JSON")
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"tensors": [], "hello": 1}))
    one_line_error(invoke("diff", str(MLP), str(other)), "not an initaudit snapshot")
    future = tmp_path / "future.json"
    manifest = json.loads(MLP.read_text())
    manifest["format_version"] = 99
    future.write_text(json.dumps(manifest))
    one_line_error(invoke("diff", str(future), str(MLP)), "format version 99")
    # a torch.save file and a plain pickle, named like snapshots: refused, never unpickled
    saved = tmp_path / "state.json"
    torch.save({"w": torch.zeros(2)}, saved)
    one_line_error(invoke("diff", str(MLP), str(saved)), "never unpickles")
    pickled = tmp_path / "p.json"
    pickled.write_bytes(pickle.dumps({"format": "initaudit.snapshot"}))
    one_line_error(invoke("diff", str(MLP), str(pickled)), "never unpickles")
    one_line_error(invoke("diff", str(MLP)), "two snapshot files")


def test_tampered_values_exit_2(tmp_path, mlp_copy):
    # the manifest claims hid1.weight changed: diff reads its values and checks their hash
    manifest = json.loads(mlp_copy.read_text())
    manifest["tensors"][0]["hash"] = "sha256:" + "0" * 64
    mlp_copy.write_text(json.dumps(manifest))
    one_line_error(invoke("diff", str(MLP), str(mlp_copy)), "do not match the manifest's hash")


def test_tampered_values_file_caught_by_verify(tmp_path, mlp_copy):
    values = mlp_copy.with_suffix(".safetensors")
    raw = bytearray(values.read_bytes())
    raw[-1] ^= 0x01  # one bit of the last tensor
    values.write_bytes(bytes(raw))
    # digests equal: diff trusts the manifests and reads no values…
    assert invoke("diff", str(MLP), str(mlp_copy)).exit_code == 0
    # … --verify hash-checks the file and every value first
    one_line_error(invoke("diff", str(MLP), str(mlp_copy), "--verify"), "does not match the sha256")


def test_different_targets_exit_2(tmp_path):
    cnn = ROOT / "snapshots" / "cnn" / "torch-2.13.0+cpu-seed0.json"
    proc = run_cli("diff", str(MLP), str(cnn))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "same target" in proc.stderr and "mlp" in proc.stderr and "cnn" in proc.stderr
    manifest = json.loads(MLP.read_text())
    manifest["seed"] = 1
    manifest["values"] = None
    (tmp_path / "seed1.json").write_text(json.dumps(manifest))
    one_line_error(invoke("diff", str(MLP), str(tmp_path / "seed1.json")), "seed 1")


# torch.nn.init.normal_ reimplemented with the same signature (Box-Muller from two uniform
# draws): the same call and arguments, different operations underneath.
BOX_MULLER = """\
import math

import torch
import torch.nn as nn


def normal_(tensor, mean=0.0, std=1.0, generator=None):
    with torch.no_grad():
        u1 = torch.rand(tensor.shape, generator=generator).clamp_(min=1e-12)
        u2 = torch.rand(tensor.shape, generator=generator)
        z = torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(2 * math.pi * u2)
        return tensor.copy_(z * std + mean)


nn.init.normal_ = normal_
"""

IMPL_MODEL = """\
import torch.nn as nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.head = nn.Linear(4, 4)
        self.embed = nn.Embedding(6, 4)
        self.out = nn.Linear(4, 2)
"""


def test_reimplemented_init_is_implementation_drift(tmp_path):
    model = tmp_path / "net.py"
    model.write_text(IMPL_MODEL)
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BOX_MULLER)
    old = freeze(model, tmp_path / "old" / "net.json")
    new = freeze(
        model,
        tmp_path / "new" / "net.json",
        env={"PYTHONPATH": os.pathsep.join([str(site), str(ROOT)])},
    )
    report = diff_snapshots(snapshot.read(old), snapshot.read(new))
    st = {t.name: t.status for t in report.tensors}
    assert st == {
        "head.weight": "identical",
        "head.bias": "identical",
        "embed.weight": "implementation-drift",
        "out.weight": "stream-shift",  # Box-Muller draws twice as many numbers
        "out.bias": "stream-shift",
    }
    assert report.root_cause.name == "embed.weight"
    embed = next(t for t in report.tensors if t.name == "embed.weight")
    assert "normal_" in embed.reason and "rand" in embed.reason
    assert report.root_cause.shifted == ["out.weight", "out.bias"]


def test_gpt2_from_transformers_recipe_drift():
    """A model no one here wrote: GPT-2's initializer_range changes only its normal_ tensors."""
    transformers = pytest.importorskip("transformers")
    from initaudit.target import Target

    def target(initializer_range: float) -> Target:
        config = transformers.GPT2Config(
            n_layer=2, n_embd=32, n_head=2, vocab_size=100, n_positions=16,
            initializer_range=initializer_range,
        )  # fmt: skip
        return Target(
            spec="gpt2.py", name="build", builder=lambda: transformers.GPT2LMHeadModel(config)
        )

    base, _ = freeze_target(target(0.02), 0)
    again, _ = freeze_target(target(0.02), 0)
    wider, _ = freeze_target(target(0.05), 0)
    same = diff_snapshots(base, again)
    assert same.verdict == "identical" and same.root_cause is None and len(same.tensors) == 28
    report = diff_snapshots(base, wider)
    st = {t.name: t.status for t in report.tensors}
    assert set(st.values()) == {"recipe-drift", "identical"}
    assert (
        st["transformer.wte.weight"] == st["transformer.h.0.attn.c_attn.weight"] == "recipe-drift"
    )
    assert (
        st["transformer.h.0.ln_1.weight"] == st["transformer.h.0.attn.c_attn.bias"] == "identical"
    )
    assert report.root_cause.name == "transformer.wte.weight"  # first in RNG order
    assert "std=0.02" in report.root_cause.reason and "std=0.05" in report.root_cause.reason
    assert report.root_cause.shifted == []  # same number of draws: nothing shifts


LATE_DRAW_MODEL = """\
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Parameter(torch.zeros(4, 3))  # created first, drawn into later
        self.a = nn.Linear(3, 4)
{extra}
        nn.init.normal_(self.stem)
        self.b = nn.Linear(4, 2)
"""


def test_every_stream_shift_is_listed_under_its_root_cause(tmp_path):
    """A tensor created before a thrown-away draw but drawn into after it is shifted by it."""
    model = tmp_path / "net.py"
    model.write_text(LATE_DRAW_MODEL.format(extra=""))
    old = freeze(model, tmp_path / "old" / "net.json")
    model.write_text(LATE_DRAW_MODEL.format(extra="        torch.randn(3)"))
    new = freeze(model, tmp_path / "new" / "net.json")
    data = diff_json(old, new)
    shifts = [t for t in data["tensors"] if t["status"] == "stream-shift"]
    assert data["counts"]["stream-shift"] == len(shifts) == 3
    assert data["root_cause_detail"]["kind"] == "orphan-draw"
    assert data["root_cause_detail"]["shifted"] == [t["name"] for t in shifts]
    assert {t["name"]: t["shifted_by"] for t in shifts} == dict.fromkeys(
        ["stem", "b.weight", "b.bias"], data["root_cause"]
    )


def test_identical_streamed_twin_names_no_root_cause(tmp_path):
    """Same bytes everywhere: no root cause, and no reason that contradicts itself."""
    spec = str(ROOT / "tests" / "models" / "stream_models.py") + ":TinyViT"
    full, streamed = tmp_path / "full.json", tmp_path / "streamed.json"
    run_cli("freeze", spec, "--digest-only", "--out", str(full), "-q", check=0)
    run_cli("freeze", spec, "--digest-only", "--stream", "--out", str(streamed), "-q", check=0)
    data = diff_json(full, streamed, code=0)
    assert data["verdict"] == "identical"
    assert data["root_cause"] is None and data["root_cause_detail"] is None
    for t in data["tensors"]:
        m = re.search(r"draws (\d+) random numbers instead of (\d+)", t["reason"])
        assert m is None or m.group(1) != m.group(2), t["reason"]
    text = run_cli("diff", str(full), str(streamed), env={"COLUMNS": "200"}).stdout
    assert text.startswith("IDENTICAL") and "root cause" not in text


@pytest.mark.parametrize("value", ["nan", "inf", "-1"])
def test_tolerance_must_be_a_finite_non_negative_number(value):
    proc = run_cli("diff", str(MLP), str(MLP), "--atol", value)
    assert proc.returncode == 2, proc.stdout
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert "--atol" in proc.stderr
    with pytest.raises(UsageError):
        diff_snapshots(snapshot.read(MLP), snapshot.read(MLP), rtol=float(value))
