"""Tensor primitives every layer shares: dtype names, raw bytes, the bitwise hash, statistics.

torch is imported inside each function, so that modules reading or diffing snapshots can import
these names without paying for torch.
"""

from __future__ import annotations

import ctypes
import hashlib
import math
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


@cache
def _dtypes() -> dict[str, torch.dtype]:
    import torch

    return {
        str(d).replace("torch.", ""): d
        for d in (
            torch.float64,
            torch.float32,
            torch.float16,
            torch.bfloat16,
            torch.int64,
            torch.int32,
            torch.int16,
            torch.int8,
            torch.uint8,
            torch.bool,
            torch.complex64,
            torch.complex128,
        )
    }


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.float32`` → ``float32``."""
    return str(dtype).replace("torch.", "")


def parse_dtype(name: str) -> torch.dtype:
    """``float32`` → ``torch.float32``; raise ValueError for unknown names."""
    try:
        return _dtypes()[name.replace("torch.", "")]
    except KeyError:
        raise ValueError(f"unknown dtype {name!r}; one of {', '.join(_dtypes())}") from None


def tensor_bytes(t: torch.Tensor) -> memoryview:
    """The raw little-endian bytes of a tensor (moved to CPU and made contiguous if needed)."""
    import torch

    t = t.detach()
    if t.device.type != "cpu":
        t = t.cpu()
    t = t.contiguous()
    if t.numel() == 0:
        return memoryview(b"")
    flat = t.reshape(-1)
    if flat.dtype == torch.bool:
        flat = flat.to(torch.uint8)
    flat = flat.view(torch.uint8)
    try:
        return memoryview(flat.numpy())  # zero-copy
    except RuntimeError:
        # "Numpy is not available": a torch built against NumPy 1.x (before 2.3) running
        # with NumPy 2. Copy the bytes out instead of failing the user's build.
        return memoryview(ctypes.string_at(flat.data_ptr(), flat.numel()))


def tensor_hash(t: torch.Tensor) -> str:
    """``sha256:<hex>`` of a tensor's raw bytes: the bitwise identity of its values."""
    return "sha256:" + hashlib.sha256(tensor_bytes(t)).hexdigest()


def _num(x: float) -> float | str:
    return x if math.isfinite(x) else repr(x)


def tensor_stats(t: torch.Tensor) -> dict[str, Any]:
    """Summary statistics (numel, mean, std, min, max, nan, inf, zeros) of a tensor's values."""
    import torch

    t = t.detach()
    n = t.numel()
    out: dict[str, Any] = {"numel": n}
    if n == 0:
        return out
    if t.is_complex():
        t = torch.view_as_real(t)
    if t.dtype in (torch.float16, torch.bfloat16) or not t.is_floating_point():
        x = t.to(torch.float64 if not t.is_floating_point() else torch.float32)
    else:
        x = t
    nan = inf = 0
    if x.is_floating_point():
        # min/max are finite only when no value is NaN or ±inf: count those only then (cheap).
        lo, hi = torch.aminmax(x)
        if not (math.isfinite(float(lo)) and math.isfinite(float(hi))):
            nan = int(torch.isnan(x).sum())
            inf = int(torch.isinf(x).sum())
    finite = x[torch.isfinite(x)] if (nan or inf) else x
    out.update(nan=nan, inf=inf, zeros=n - int(torch.count_nonzero(x)))
    if finite.numel():
        std, mean = torch.std_mean(finite.reshape(-1), correction=0)
        if nan or inf or not x.is_floating_point():
            lo, hi = torch.aminmax(finite)  # else the first pass's min and max are these
        out.update(
            mean=_num(float(mean)), std=_num(float(std)), min=_num(float(lo)), max=_num(float(hi))
        )
    return out


