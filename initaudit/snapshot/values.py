"""The safetensors values writer: hashes the file while writing it (no second read, no in-memory copy)."""

from __future__ import annotations

import hashlib
import json
import os
import struct
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


def write_safetensors(
    tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None
) -> str:
    """Write ``tensors`` as a safetensors file, hashing it while writing; return its sha256."""

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
    h = hashlib.sha256()
    with open(path, "wb") as f, ThreadPoolExecutor(1) as pool:
        head = struct.pack("<Q", len(raw)) + raw
        h.update(head)
        f.write(head)
        for t in tensors.values():
            mv = tensor_bytes(t)
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
    return "sha256:" + h.hexdigest()


def _write_behind(f: Any) -> None:
    """Start writing out the bytes written so far (no wait), so the final fsync finds little left
    to write: the disk works while the rest of the file is hashed and written."""
    if hasattr(os, "posix_fadvise"):
        f.flush()
        # DONTNEED starts the writeback of dirty pages and drops clean ones from the page cache.
        os.posix_fadvise(f.fileno(), 0, f.tell(), os.POSIX_FADV_DONTNEED)
