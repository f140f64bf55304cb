"""Freezing writes JSON + safetensors (never pickle) that read back bit for bit."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open

from initaudit import snapshot as snap_mod
from initaudit.errors import OutputError, SnapshotError
from initaudit.freeze import freeze
from initaudit.target import resolve
from initaudit.tensors import tensor_hash

from ..conftest import EXAMPLES, ROOT


def _gpt2_file(tmp_path):
    path = tmp_path / "gpt2_small.py"
    path.write_text(
        "from transformers import GPT2Config, GPT2LMHeadModel\n\n\n"
        "def build_model():\n"
        "    cfg = GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=100, n_positions=16)\n"
        "    return GPT2LMHeadModel(cfg)\n"
    )
    return path


@pytest.mark.parametrize("example", ["mlp.py", "highway.py", "cnn.py", "gpt2"])
def test_freeze_roundtrip_bitwise_against_plain_build(example, tmp_path):
    spec = str(_gpt2_file(tmp_path)) if example == "gpt2" else str(EXAMPLES / example)
    target = resolve(spec)
    snap, _ = freeze(target, seed=3)
    path = snap_mod.write(snap, tmp_path / "s.json")
    loaded = snap_mod.read(path)
    torch.manual_seed(3)
    plain = target.build().state_dict()
    names = {t["name"]: t for t in loaded.tensors}
    aliases = {a: t["name"] for t in loaded.tensors for a in t["aliases"]}
    assert set(names) | set(aliases) >= set(plain)
    values = dict(loaded.iter_values(list(names)))
    for key, expected in plain.items():
        got = values[aliases.get(key, key)]
        assert torch.equal(expected, got), key
        entry = names[aliases.get(key, key)]
        assert entry["hash"] == tensor_hash(expected)
        assert entry["origin"] in ("default", "library", "user")
        assert entry["events"], key
    # the safetensors file holds one entry per primary tensor (tied tensors stored once)
    with safe_open(str(snap_mod.values_path_for(path)), "pt") as f:
        assert set(f.keys()) == set(names)


def test_tied_weights_stored_once(tmp_path):
    snap, _ = freeze(resolve(str(_gpt2_file(tmp_path))), seed=0)
    wte = next(t for t in snap.tensors if t["name"] == "transformer.wte.weight")
    assert wte["aliases"] == ["lm_head.weight"]


def test_manifest_fields(tmp_path):
    snap, _ = freeze(resolve(str(EXAMPLES / "mlp.py")), seed=0)
    m = snap.manifest
    assert m["format"] == "initaudit.snapshot" and m["format_version"] == 1
    assert m["seed"] == 0 and m["target"]["name"] == "Net" and m["target"]["slug"] == "mlp"
    env = m["provenance"]
    for key in (
        "torch",
        "torch_git",
        "python",
        "platform",
        "cpu",
        "cpu_capability",
        "ATEN_CPU_CAPABILITY",
        "device",
        "default_dtype",
        "numpy",
        "initaudit",
    ):
        assert key in env
    assert env["torch"] == torch.__version__
    assert m["rng"]["torch_after"]
    w = m["tensors"][0]
    assert w["name"] == "hid1.weight" and w["kind"] == "parameter" and w["module"] == "Linear"
    assert w["init"]["call"] == "kaiming_uniform_" and "√5" in w["init"]["text"]
    assert set(w["stats"]) >= {"numel", "mean", "std", "min", "max", "nan", "inf"}
    assert w["rng_before"] and w["draws"] == 12
    json.dumps(m, allow_nan=False)


def test_digest_only_writes_manifest_alone(tmp_path):
    snap, _ = freeze(resolve(str(EXAMPLES / "mlp.py")))
    path = snap_mod.write(snap, tmp_path / "d.json", digest_only=True)
    assert path.exists() and snap_mod.values_path_for(path) is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.json"]
    loaded = snap_mod.read(path)
    assert loaded.manifest["values"] is None and not loaded.has_values()


def test_no_overwrite_without_force_and_no_partial_files(tmp_path):
    snap, _ = freeze(resolve(str(EXAMPLES / "mlp.py")))
    path = snap_mod.write(snap, tmp_path / "s.json")
    with pytest.raises(OutputError, match="--force"):
        snap_mod.write(snap, path)
    snap_mod.write(snap, path, force=True)

    def boom(tmp):
        tmp.write_text("partial")
        raise OSError("disk full")

    with pytest.raises(OutputError, match="disk full"):
        snap_mod.atomic_write(tmp_path / "x.json", boom)
    values = snap_mod.values_path_for(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["s.json", values.name])


def test_snapshot_files_are_not_pickle(tmp_path):
    snap, _ = freeze(resolve(str(EXAMPLES / "mlp.py")))
    path = snap_mod.write(snap, tmp_path / "s.json")
    json.loads(path.read_text())
    raw = snap_mod.values_path_for(path).read_bytes()
    assert raw[:1] != b"\x80" and raw[:2] != b"PK"


def test_reading_a_pickle_never_unpickles(tmp_path):
    class Boom:
        def __reduce__(self):
            return (exec, ("open('PWNED', 'w').write('x')",))

    import pickle

    bad = tmp_path / "evil.json"
    bad.write_bytes(pickle.dumps(Boom()))
    with pytest.raises(SnapshotError, match="never unpickles"):
        snap_mod.read(bad)
    assert not (tmp_path / "PWNED").exists() and not (ROOT / "PWNED").exists()


def test_tampered_values_are_caught(tmp_path):
    snap, _ = freeze(resolve(str(EXAMPLES / "mlp.py")))
    path = snap_mod.write(snap, tmp_path / "s.json")
    from safetensors.torch import load_file, save_file

    vpath = snap_mod.values_path_for(path)
    values = load_file(str(vpath))
    values["hid1.bias"][0] += 1
    save_file(values, str(vpath))
    loaded = snap_mod.read(path)
    with pytest.raises(SnapshotError, match="does not match the sha256"):
        list(snap_mod.verify_values(loaded))  # the whole file first
    with pytest.raises(SnapshotError, match=r"'hid1\.bias' do not match the manifest's hash"):
        list(loaded.iter_values([t["name"] for t in loaded.tensors]))  # each value as read


def test_reshaped_values_are_caught(tmp_path):
    """Same bytes under another shape (an edited header) is tampering too: a hash alone
    would not see it."""
    snap, _ = freeze(resolve(str(EXAMPLES / "mlp.py")))
    path = snap_mod.write(snap, tmp_path / "s.json")
    from safetensors.torch import load_file, save_file

    vpath = snap_mod.values_path_for(path)
    values = load_file(str(vpath))
    values["hid1.weight"] = values["hid1.weight"].reshape(3, 4).contiguous()  # was 4×3
    save_file(values, str(vpath))
    with pytest.raises(SnapshotError, match=r"stores 'hid1\.weight' as F32 \[3, 4\], the manifest says"):
        snap_mod.read(path)  # the header is checked when the snapshot is read


def test_values_file_is_content_addressed_and_named_by_the_manifest(tmp_path):
    """The values file is NAME.<16 hex of its sha256>.safetensors, named in the manifest; a
    values file of that NAME that no manifest names is a leftover and the next write removes it."""
    snap, _ = freeze(resolve(str(EXAMPLES / "mlp.py")))
    leftover = tmp_path / "s.0123456789abcdef.safetensors"
    leftover.write_bytes(b"half of an earlier run")
    other = tmp_path / "other.0123456789abcdef.safetensors"  # another snapshot's: kept
    other.write_bytes(b"x")
    path = snap_mod.write(snap, tmp_path / "s.json")
    info = json.loads(path.read_text())["values"]
    assert info["file"] == f"s.{info['sha256'][len('sha256:') :][:16]}.safetensors"
    assert snap_mod.values_path_for(path) == tmp_path / info["file"]
    assert snap_mod.file_sha256(tmp_path / info["file"]) == info["sha256"]
    assert not leftover.exists() and other.exists()
    assert list(snap_mod.verify_values(snap_mod.read(path)))  # the new values, hash-checked
    # another seed: a new values file; the one the manifest no longer names is removed
    snap1, _ = freeze(resolve(str(EXAMPLES / "mlp.py")), seed=1)
    snap_mod.write(snap1, path, force=True)
    new = json.loads(path.read_text())["values"]["file"]
    assert new != info["file"] and not (tmp_path / info["file"]).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["s.json", new, other.name])


def test_old_layout_snapshots_read_and_are_replaced_cleanly(tmp_path):
    """Snapshots written before content-addressed values (values.file = NAME.safetensors, like
    the committed snapshots/) still read; rewriting one removes the old-layout values file."""
    src = ROOT / "snapshots" / "mlp" / "torch-2.13.0+cpu-seed0.json"
    assert json.loads(src.read_text())["values"]["file"] == src.with_suffix(".safetensors").name
    import shutil

    shutil.copy(src, tmp_path / src.name)
    shutil.copy(src.with_suffix(".safetensors"), tmp_path / src.with_suffix(".safetensors").name)
    old = snap_mod.read(tmp_path / src.name)
    assert list(snap_mod.verify_values(old))
    snap, _ = freeze(resolve(str(EXAMPLES / "mlp.py")))
    snap_mod.write(snap, tmp_path / src.name, force=True)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted([src.name, snap_mod.values_path_for(tmp_path / src.name).name])


def test_a_manifest_path_must_end_in_json(tmp_path, cli):
    """``--out x.safetensors`` used to write the manifest over its own values file."""
    snap, _ = freeze(resolve(str(EXAMPLES / "mlp.py")))
    for name in ("x.safetensors", "x.txt", ".json"):
        with pytest.raises(OutputError, match=r"must end in \.json"):
            snap_mod.write(snap, tmp_path / name)
    assert list(tmp_path.iterdir()) == []
    proc = cli("freeze", str(EXAMPLES / "mlp.py"), "--out", str(tmp_path / "x.safetensors"))
    assert proc.returncode == 2 and proc.stdout == ""
    (line,) = proc.stderr.splitlines()
    assert "x.safetensors" in line and "must end in .json" in line
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("length", [250, 255])
def test_long_manifest_names_write_and_read(tmp_path, length):
    """A 250-character --out name used to fail: the temp name passed 255 bytes. Derived names
    (values file, temp files) are hash-shortened."""
    snap, _ = freeze(resolve(str(EXAMPLES / "mlp.py")))
    path = tmp_path / ("é" * 10 + "a" * (length - 25) + ".json")  # é is 2 bytes: 250/255 bytes
    assert len(path.name.encode()) == length
    snap_mod.write(snap, path)
    snap_mod.write(snap, path, force=True)  # again: the same values file, no leftovers
    values = snap_mod.values_path_for(path)
    assert len(values.name.encode()) < 255
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([path.name, values.name])
    assert list(snap_mod.verify_values(snap_mod.read(path)))
    snap_mod.atomic_write(tmp_path / ("b" * 250 + ".py"), lambda tmp: tmp.write_text("x"))


def test_parsing_a_large_manifest_runs_no_gc_collections(tmp_path):
    # Issue 15 (growth): the cyclic GC re-scanned the whole heap again and again while a
    # manifest's containers were created (8 s of a 20 s diff at 100,000 tensors); a parsed
    # document holds no cycles, so parsing pauses the GC.
    import gc

    from initaudit.snapshot.read import parse_manifest

    model = tmp_path / "many.py"
    model.write_text(
        "from torch import nn\n\n\n"
        "def build_model():\n"
        "    return nn.Sequential(*[nn.Linear(2, 2) for _ in range(300)])\n"
    )
    snap, _ = freeze(resolve(str(model)), seed=0)
    path = snap_mod.write(snap, tmp_path / "s.json", digest_only=True)
    runs: list[int] = []

    def count(phase, info):
        if phase == "start":
            runs.append(info["generation"])

    gc.callbacks.append(count)
    try:
        manifest = parse_manifest(path, None, path)
        n = len(runs)
    finally:
        gc.callbacks.remove(count)
    assert len(manifest["tensors"]) == 600
    assert n <= 1, f"{n} GC collections while parsing one manifest"
