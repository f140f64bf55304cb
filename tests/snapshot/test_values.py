"""The values file hashed ahead (with the tensors, in one pass) is the file written, bit for bit."""

from __future__ import annotations

import torch

from initaudit import snapshot as snap_mod
from initaudit.freeze import freeze
from initaudit.snapshot.read import file_sha256
from initaudit.snapshot.values import hash_values, write_safetensors
from initaudit.target import resolve
from initaudit.tensors import tensor_hash

from ..conftest import EXAMPLES


def test_values_hashed_ahead_are_the_file_written(tmp_path) -> None:
    tg = resolve(str(EXAMPLES / "cnn.py"), {})
    plain, _ = freeze(tg, 0)
    ahead, _ = freeze(tg, 0, values_ahead=True)
    assert [t["hash"] for t in ahead.tensors] == [t["hash"] for t in plain.tensors]
    assert [t["stats"] for t in ahead.tensors] == [t["stats"] for t in plain.tensors]
    snap_mod.write(ahead, tmp_path / "a.json")
    snap_mod.write(plain, tmp_path / "p.json")
    a, p = snap_mod.read(tmp_path / "a.json"), snap_mod.read(tmp_path / "p.json")
    assert a.manifest["values"]["sha256"] == p.manifest["values"]["sha256"]
    assert a.manifest["values"]["sha256"] == file_sha256(a.values_path)
    assert len(list(snap_mod.verify_values(a))) == len(a.tensors)


def test_a_tensor_changed_after_hashing_ahead_is_hashed_again(tmp_path) -> None:
    torch.manual_seed(0)
    tensors = {"w": torch.randn(600, 600), "b": torch.zeros(600)}  # w above the chunk hand-off
    stale = hash_values(tensors, {"format": "x"})
    with torch.no_grad():
        tensors["w"][0, 0] += 1  # in place: same memory, new version
    sha = write_safetensors(tensors, tmp_path / "v.safetensors", {"format": "x"})
    assert sha != stale
    assert sha == file_sha256(tmp_path / "v.safetensors")


def test_hash_values_hashes_tensors_like_tensor_hash(tmp_path) -> None:
    torch.manual_seed(0)
    t = torch.randn(64, 48)
    tensors = {"t": t.t(), "e": torch.empty(0), "m": torch.tensor([True, False])}
    got: dict[str, str] = {}
    assert hash_values(tensors, None, got.__setitem__) is None  # t.t() is not contiguous
    assert got == {k: tensor_hash(v) for k, v in tensors.items()}
    tensors["t"] = t
    sha = hash_values(tensors, None)
    assert sha == write_safetensors(tensors, tmp_path / "v.safetensors")
    assert sha == file_sha256(tmp_path / "v.safetensors")
