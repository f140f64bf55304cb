"""Comparing tensor values: bitwise, with numeric error figures and an optional tolerance.

Values are read (lazily, hash-checked) only for tensors whose digests differ.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from initaudit.diff.report import TensorDiff
from initaudit.errors import SnapshotError
from initaudit.snapshot.read import Snapshot
from initaudit.tensors import parse_dtype

# torch is imported only where values are compared: a diff of identical snapshots reads two
# manifests and compares digests, and should not pay ~1.5 s for ``import torch``.
if TYPE_CHECKING:
    import torch


_CHUNK = 1 << 22


def _bits(t: torch.Tensor) -> torch.Tensor:
    """A view of a tensor's bytes as integers of the same width (bitwise comparison)."""
    import torch

    if t.is_complex():
        t = torch.view_as_real(t)
    if t.dtype == torch.bool:
        return t.view(torch.uint8)
    if t.is_floating_point():
        width = t.element_size()
        return t.view({2: torch.int16, 4: torch.int32, 8: torch.int64}[width])
    return t


def _ordered(bits: torch.Tensor, width: int) -> torch.Tensor:
    """Float bit patterns mapped to integers that count ULPs monotonically (−0 == +0)."""
    import torch

    x = bits.to(torch.int64)  # sign-extended: negative exactly when the sign bit is set
    mag = x & ((1 << (8 * width - 1)) - 1)
    return torch.where(x < 0, -mag, mag)


def value_error(a: torch.Tensor, b: torch.Tensor) -> dict[str, Any]:
    """Elements differing (bitwise) and max/mean absolute and relative error and max ULP of b vs a."""
    import torch

    a = a.detach().cpu().reshape(-1)
    b = b.detach().cpu().reshape(-1)
    if a.is_complex():
        a, b = torch.view_as_real(a).reshape(-1), torch.view_as_real(b).reshape(-1)
    numel = a.numel()
    floating = a.is_floating_point()
    differing = 0
    nonfinite = 0
    max_abs = 0.0
    sum_abs = 0.0
    max_rel = 0.0
    sum_rel = 0.0
    n_rel = 0
    n_abs = 0
    max_ulp = 0
    for start in range(0, numel, _CHUNK):
        ca, cb = a[start : start + _CHUNK], b[start : start + _CHUNK]
        ba, bb = _bits(ca), _bits(cb)
        ne = ba != bb
        k = int(ne.sum())
        if not k:
            continue
        differing += k
        ca, cb, ba, bb = ca[ne], cb[ne], ba[ne], bb[ne]
        if ca.dtype == torch.bool:
            max_abs = 1.0
            sum_abs += k
            n_abs += k
            continue
        da, db = ca.double(), cb.double()
        finite = torch.isfinite(da) & torch.isfinite(db)
        nonfinite += int((~finite).sum())
        da, db = da[finite], db[finite]
        if da.numel():
            diff = (db - da).abs()
            max_abs = max(max_abs, float(diff.max()))
            sum_abs += float(diff.sum())
            n_abs += diff.numel()
            nz = da != 0
            if bool(nz.any()):
                rel = diff[nz] / da[nz].abs()
                max_rel = max(max_rel, float(rel.max()))
                sum_rel += float(rel.sum())
                n_rel += rel.numel()
        if floating:
            width = ca.element_size()
            oa, ob = _ordered(ba, width), _ordered(bb, width)
            if width < 8:
                ulp = int((ob - oa).abs().max())
            else:  # int64 differences can overflow across signs; doubles are exact enough here
                ulp = int((ob.double() - oa.double()).abs().max())
            max_ulp = max(max_ulp, ulp)
        else:
            max_ulp = max(max_ulp, int((cb.to(torch.int64) - ca.to(torch.int64)).abs().max()))
    out: dict[str, Any] = {
        "numel": numel,
        "differing": differing,
        "max_abs": max_abs,
        "mean_abs": sum_abs / n_abs if n_abs else 0.0,
        "max_rel": max_rel if n_rel else None,
        "mean_rel": sum_rel / n_rel if n_rel else None,
        "max_ulp": max_ulp,
    }
    if nonfinite:
        out["nonfinite_differing"] = nonfinite
    return out


def _within(a: torch.Tensor, b: torch.Tensor, atol: float, rtol: float) -> bool:
    """``|b − a| ≤ atol + rtol·|a|`` everywhere (NaN equal to NaN), like ``torch.allclose``."""
    import torch

    a, b = a.detach().cpu().reshape(-1), b.detach().cpu().reshape(-1)
    if a.is_complex():
        a, b = torch.view_as_real(a).reshape(-1), torch.view_as_real(b).reshape(-1)
    for start in range(0, a.numel(), _CHUNK):
        ca = a[start : start + _CHUNK].double()
        cb = b[start : start + _CHUNK].double()
        if not torch.allclose(cb, ca, rtol=rtol, atol=atol, equal_nan=True):
            return False
    return True


_STAT_KEYS = ("numel", "mean", "std", "min", "max", "zeros", "nan", "inf")


def stats_change(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """The statistics that differ between two entries: ``{stat: {before, after}}``."""
    out: dict[str, Any] = {}
    for key in _STAT_KEYS:
        va, vb = a.get(key), b.get(key)
        if va != vb:
            out[key] = {"before": va, "after": vb}
    return out


def compare_values(
    a: Snapshot,
    b: Snapshot,
    diffs: dict[str, TensorDiff],
    atol: float | None,
    rtol: float | None,
    notes: list[str],
) -> bool:
    """Read the values of tensors whose digests differ; fill numeric errors, apply a tolerance."""
    names = [
        n
        for n, td in diffs.items()
        if td.before is not None
        and td.after is not None
        and td.status not in ("identical", "renamed")
        and td.before["shape"] == td.after["shape"]
        and td.before["dtype"] == td.after["dtype"]
    ]
    if not names:
        return a.has_values() and b.has_values()
    if not (a.has_values() and b.has_values()):
        for n in names:
            td = diffs[n]
            td.stats = stats_change(
                (td.before or {}).get("stats", {}), (td.after or {}).get("stats", {})
            )
        which = [s.label for s in (a, b) if not s.has_values()]
        notes.append(
            f"{' and '.join(which)} hold(s) digests only: drifted tensors are compared by "
            "their statistics"
        )
        if atol is not None or rtol is not None:
            notes.append("the tolerance was not applied: it needs the values of both snapshots")
        return False
    use_tol = atol is not None or rtol is not None
    for (name, va), (_, vb) in zip(a.iter_values(names), b.iter_values(names), strict=True):
        td = diffs[name]
        _check_dtype(va, td.before)
        td.error = value_error(va, vb)
        if use_tol and _within(va, vb, atol or 0.0, rtol or 0.0):
            td.within_tolerance = True
            td.reason = f"within tolerance (was {td.status}: {td.reason})"
            td.status = "identical"
            td.own_change = td.draws_changed
    return True


def _check_dtype(value: torch.Tensor, entry: dict[str, Any] | None) -> None:
    if entry is None:
        return
    try:
        expected = parse_dtype(entry["dtype"])
    except ValueError:
        return
    if value.dtype != expected:  # the hash check passed, so this is a manifest inconsistency
        raise SnapshotError(f"{entry['name']}: stored dtype {value.dtype} is not {expected}")
