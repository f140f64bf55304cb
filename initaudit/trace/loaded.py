"""Tensors a build loaded from a checkpoint instead of initializing them.

A model made by ``from_pretrained(local_dir)`` gets most tensors from the checkpoint's
safetensors files, set without any traced operation; the trace sees only the ones the library
initialized (the new head transformers warns about). :func:`loaded_tensors` finds, for each
untraced tensor, the checkpoint entry that holds exactly its bytes, so a snapshot says
``loaded`` (and from which file) only where the values really are the file's.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from torch import nn

from initaudit.provenance import portable_path
from initaudit.tensors import dtype_name, tensor_hash


def checkpoint_files(model: nn.Module) -> list[Path]:
    """The local safetensors files the model says it was loaded from (``config._name_or_path``)."""
    where = getattr(getattr(model, "config", None), "_name_or_path", None) or getattr(
        model, "name_or_path", None
    )
    if not where or not isinstance(where, (str, os.PathLike)):
        return []
    path = Path(where)
    if path.is_file() and path.suffix == ".safetensors":
        return [path]
    if path.is_dir():
        return sorted(path.glob("*.safetensors"))
    return []


def _candidates(name: str, keys: list[str]) -> list[str]:
    """Checkpoint keys that can be ``name`` (saved from the base model or with a prefix)."""
    out = [k for k in keys if k == name]
    out += [k for k in keys if k != name and (name.endswith("." + k) or k.endswith("." + name))]
    return out


def loaded_tensors(model: nn.Module, entries: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``{name: {"file", "key"}}`` for each manifest entry a checkpoint file holds bit for bit."""
    files = checkpoint_files(model) if entries else []
    if not files:
        return {}
    from safetensors import SafetensorError, safe_open

    out: dict[str, dict[str, Any]] = {}
    for path in files:
        try:
            with safe_open(str(path), framework="pt") as f:
                keys = list(f.keys())
                for entry in entries:
                    name = entry["name"]
                    if name in out:
                        continue
                    for key in _candidates(name, keys):
                        value = f.get_tensor(key)
                        if (
                            list(value.shape) == list(entry["shape"])
                            and dtype_name(value.dtype) == entry["dtype"]
                            and tensor_hash(value) == entry["hash"]
                        ):
                            out[name] = {"file": portable_path(str(path)), "key": key}
                            break
        except (SafetensorError, OSError):
            continue
    return out
