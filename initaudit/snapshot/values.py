"""The safetensors values writer: hashes the file while writing it (no second read, no in-memory copy)."""

from __future__ import annotations

import hashlib
import json
import os
import struct
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

from initaudit.errors import OutputError
from initaudit.tensors import tensor_bytes

_ST_DTYPES = {
    torch.float64: "F64",
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
    torch.complex64: "C64",
}


_CHUNK = 1 << 26


_OVERLAP_FROM = 1 << 20  # bytes: hash and write larger tensors side by side


def _file_head(tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None) -> bytes:
    """The safetensors file's first bytes: the header's length, then the header (JSON)."""
    header: dict[str, Any] = {}
    if metadata:
        header["__metadata__"] = dict(metadata)
    offset = 0
    for name, t in tensors.items():
        code = _ST_DTYPES.get(t.dtype)
        if code is None:
            raise OutputError(f"cannot store {name} of dtype {t.dtype} in safetensors")
        n = t.numel() * t.element_size()
        header[name] = {"dtype": code, "shape": list(t.shape), "data_offsets": [offset, n + offset]}
        offset += n
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw


def _identity(tensors: dict[str, torch.Tensor]) -> tuple[Any, ...]:
    """What must not have changed for a file hash computed ahead to still hold: each tensor's
    memory, size and version (bumped by every in-place write)."""
    return tuple(
        (name, t.data_ptr(), t.numel() * t.element_size(), t._version)
        for name, t in tensors.items()
    )


#: File hashes computed ahead by :func:`hash_values`: (head, identity) -> sha256; the one
#: write that matches takes its entry. Bounded: a hash nobody writes is dropped by the next.
_AHEAD: dict[tuple[bytes, tuple[Any, ...]], str] = {}
_AHEAD_LOCK = threading.Lock()


def hash_values(
    tensors: dict[str, torch.Tensor],
    metadata: dict[str, str] | None = None,
    on_tensor: Callable[[str, str], None] | None = None,
) -> str | None:
    """Hash each tensor (``on_tensor(name, hash)``, as :func:`tensor_hash`) and, in the same pass
    over the bytes, the safetensors file ``write_safetensors(tensors, …, metadata)`` would write.

    That file hash is returned and kept, so that writing the file later needs no hashing; None
    (tensors still hashed) when the tensors cannot be written as they are (off the CPU, not
    contiguous, a dtype safetensors lacks).
    """
    writable = all(
        t.device.type == "cpu" and t.is_contiguous() and t.dtype in _ST_DTYPES
        for t in tensors.values()
    )
    key = None
    h = hashlib.sha256()
    if writable:
        key = (_file_head(tensors, metadata), _identity(tensors))
        h.update(key[0])
    for name, t in tensors.items():
        mv = tensor_bytes(t)
        th = hashlib.sha256()
        for i in range(0, max(len(mv), 1), _CHUNK):
            chunk = mv[i : i + _CHUNK]  # one read of the bytes feeds both hashes
            th.update(chunk)
            if key is not None:
                h.update(chunk)
        if on_tensor is not None:
            on_tensor(name, "sha256:" + th.hexdigest())
    if key is None:
        return None
    sha = "sha256:" + h.hexdigest()
    with _AHEAD_LOCK:
        _AHEAD.clear()
        _AHEAD[key] = sha
    return sha


def write_safetensors(
    tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None
) -> str:
    """Write ``tensors`` as a safetensors file, hashing it while writing; return its sha256.

    When :func:`hash_values` already hashed exactly these bytes (same tensors, memory and
    versions), the file is written without hashing it again.
    """

    head = _file_head(tensors, metadata)
    with _AHEAD_LOCK:
        ahead = _AHEAD.pop((head, _identity(tensors)), None)
    h = hashlib.sha256()
    with open(path, "wb") as f, ThreadPoolExecutor(1) as pool:
        h.update(head)
        f.write(head)
        for t in tensors.values():
            mv = tensor_bytes(t)
            if ahead is not None:
                for i in range(0, len(mv), _CHUNK):
                    f.write(mv[i : i + _CHUNK])
                    _write_behind(f)
                continue
            if len(mv) < _OVERLAP_FROM:  # a thread hand-off costs more than hashing it
                h.update(mv)
                f.write(mv)
                continue
            for i in range(0, len(mv), _CHUNK):
                chunk = mv[i : i + _CHUNK]
                pending = pool.submit(h.update, chunk)  # hashlib releases the GIL
                f.write(chunk)
                _write_behind(f)
                pending.result()
    return ahead if ahead is not None else "sha256:" + h.hexdigest()


def _write_behind(f: Any) -> None:
    """Start writing out the bytes written so far (no wait), so the final fsync finds little left
    to write: the disk works while the rest of the file is hashed and written."""
    if hasattr(os, "posix_fadvise"):
        f.flush()
        # DONTNEED starts the writeback of dirty pages and drops clean ones from the page cache.
        os.posix_fadvise(f.fileno(), 0, f.tell(), os.POSIX_FADV_DONTNEED)
