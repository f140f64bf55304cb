"""Freezing writes JSON + safetensors (never pickle) that read back bit for bit."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open

from initaudit import snapshot as snap_mod
from initaudit.errors import OutputError, SnapshotError
from initaudit.target import resolve

from .conftest import EXAMPLES, ROOT


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
    snap, _ = snap_mod.freeze(target, seed=3)
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
        assert entry["hash"] == snap_mod.tensor_hash(expected)
        assert entry["origin"] in ("default", "library", "user")
        assert entry["events"], key
    # the safetensors file holds one entry per primary tensor (tied tensors stored once)
    with safe_open(str(snap_mod.values_path_for(path)), "pt") as f:
        assert set(f.keys()) == set(names)


def test_tied_weights_stored_once(tmp_path):
    snap, _ = snap_mod.freeze(resolve(str(_gpt2_file(tmp_path))), seed=0)
    wte = next(t for t in snap.tensors if t["name"] == "transformer.wte.weight")
    assert wte["aliases"] == ["lm_head.weight"]


def test_manifest_fields(tmp_path):
    snap, _ = snap_mod.freeze(resolve(str(EXAMPLES / "mlp.py")), seed=0)
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
    snap, _ = snap_mod.freeze(resolve(str(EXAMPLES / "mlp.py")))
    path = snap_mod.write(snap, tmp_path / "d.json", digest_only=True)
    assert path.exists() and not snap_mod.values_path_for(path).exists()
    loaded = snap_mod.read(path)
    assert loaded.manifest["values"] is None and not loaded.has_values()


def test_no_overwrite_without_force_and_no_partial_files(tmp_path):
    snap, _ = snap_mod.freeze(resolve(str(EXAMPLES / "mlp.py")))
    path = snap_mod.write(snap, tmp_path / "s.json")
    with pytest.raises(OutputError, match="--force"):
        snap_mod.write(snap, path)
    snap_mod.write(snap, path, force=True)

    def boom(tmp):
        tmp.write_text("partial")
        raise OSError("disk full")

    with pytest.raises(OutputError, match="disk full"):
        snap_mod.atomic_write(tmp_path / "x.json", boom)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.json", "s.safetensors"]


def test_snapshot_files_are_not_pickle(tmp_path):
    snap, _ = snap_mod.freeze(resolve(str(EXAMPLES / "mlp.py")))
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
    snap, _ = snap_mod.freeze(resolve(str(EXAMPLES / "mlp.py")))
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
    snap, _ = snap_mod.freeze(resolve(str(EXAMPLES / "mlp.py")))
    path = snap_mod.write(snap, tmp_path / "s.json")
    from safetensors.torch import load_file, save_file

    vpath = snap_mod.values_path_for(path)
    values = load_file(str(vpath))
    values["hid1.weight"] = values["hid1.weight"].reshape(3, 4).contiguous()  # was 4×3
    save_file(values, str(vpath))
    loaded = snap_mod.read(path)
    with pytest.raises(SnapshotError, match=r"stored as float32 \[3, 4\], the manifest says"):
        list(loaded.iter_values(["hid1.weight"]))


def test_a_values_file_without_manifest_is_a_leftover_and_replaced(tmp_path):
    """Values are renamed into place first, the manifest last: a write interrupted between the
    two leaves values without a manifest, which is no snapshot and must not block the next."""
    snap, _ = snap_mod.freeze(resolve(str(EXAMPLES / "mlp.py")))
    leftover = tmp_path / "s.safetensors"
    leftover.write_bytes(b"half of an earlier run")
    path = snap_mod.write(snap, tmp_path / "s.json")
    assert list(snap_mod.verify_values(snap_mod.read(path)))  # the new values, hash-checked
