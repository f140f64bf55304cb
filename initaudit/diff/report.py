"""The result of a diff: :class:`DiffReport`, its per-tensor and root-cause parts, and its JSON.

Every tensor gets exactly one status (see :data:`STATUSES`); :func:`report_to_json` is the
machine-readable form (the schema the README documents).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from initaudit.snapshot.read import Snapshot

#: Every status a tensor can get, in the order reports list them.
STATUSES: tuple[str, ...] = (
    "recipe-drift",
    "implementation-drift",
    "kernel-drift",
    "stream-shift",
    "shape-drift",
    "dtype-drift",
    "added",
    "removed",
    "renamed",
    "identical",
)
#: Statuses that mean a tensor's own initialization diverged (root-cause candidates).
OWN_STATUSES = frozenset(
    {
        "recipe-drift",
        "implementation-drift",
        "kernel-drift",
        "shape-drift",
        "dtype-drift",
        "added",
        "removed",
    }
)
#: Arguments of aten-level calls that say where, not how (not part of a recipe).

JSON_FORMAT = "initaudit.diff"
JSON_FORMAT_VERSION = 1


# --------------------------------------------------------------------------- data


@dataclass
class TensorDiff:
    """The comparison of one tensor between snapshot A (before) and B (after)."""

    name: str
    status: str
    reason: str
    before: dict[str, Any] | None = field(default=None, repr=False)
    after: dict[str, Any] | None = field(default=None, repr=False)
    own_change: bool = False  # its own init diverged: a root-cause candidate
    draws_changed: bool = False  # it consumes a different amount of random numbers
    recipe_changed: bool = False
    within_tolerance: bool = False
    renamed_from: str | None = None  # status "renamed": the tensor's name in snapshot A
    shifted_by: str | None = None
    error: dict[str, Any] | None = None  # numeric error, when both values were read
    stats: dict[str, Any] | None = None  # statistics before/after, when only digests exist

    @property
    def entry(self) -> dict[str, Any]:
        """The newest manifest entry of this tensor (B's, or A's when removed)."""
        return self.after if self.after is not None else self.before  # type: ignore[return-value]


@dataclass
class DrawChange:
    """A thrown-away random draw (one no tensor keeps) that only one snapshot makes."""

    change: str  # "added" | "removed"
    call: str
    op: str
    numel: int
    site: str | None
    scope: str | None
    library: str | None = None  # the distribution whose code made (or built the module of) it
    function: str | None = None

    @property
    def label(self) -> str:
        """``randn at model.py:12``."""
        return f"{self.call} at {self.site or self.scope or 'an unknown site'}"

    def to_json(self) -> dict[str, Any]:
        """This change as a JSON-compatible dict."""
        return {
            "change": self.change,
            "call": self.call,
            "op": self.op,
            "numel": self.numel,
            "site": self.site,
            "scope": self.scope,
            "library": self.library,
            "function": self.function,
        }


@dataclass
class RootCause:
    """The first item in RNG order whose own initialization diverged."""

    kind: str  # "tensor" | "orphan-draw"
    name: str  # the tensor's name, or the draw's site
    status: str  # the tensor's status, or "added"/"removed" for a draw
    reason: str
    site: str | None
    shifted: list[str]
    #: The library that set the tensor, when its version changed: {name, function, before, after}.
    library: dict[str, Any] | None = None
    #: The user's source file that changed between the snapshots: {path, before, after}.
    source: dict[str, Any] | None = None


@dataclass
class DiffReport:
    """Everything ``initaudit diff`` says about two snapshots."""

    before: Snapshot
    after: Snapshot
    tensors: list[TensorDiff]
    environment: dict[str, dict[str, Any]]
    draw_changes: list[DrawChange]
    rng: dict[str, dict[str, Any]]
    root_cause: RootCause | None
    atol: float | None = None
    rtol: float | None = None
    values_compared: bool = False
    notes: list[str] = field(default_factory=list)
    #: Whether tensors that were only renamed count as no drift (``--allow-renames``).
    allow_renames: bool = False

    @property
    def tolerance_used(self) -> bool:
        """Whether the user asked for a tolerance (then close values count as equal)."""
        return self.atol is not None or self.rtol is not None

    @property
    def drift(self) -> bool:
        """Whether anything differs: a tensor, a thrown-away draw, or the RNG state left behind."""
        clean = ("identical", "renamed") if self.allow_renames else ("identical",)
        return (
            any(t.status not in clean for t in self.tensors)
            or bool(self.draw_changes)
            or bool(self.rng)
        )

    @property
    def verdict(self) -> str:
        """``identical`` or ``drift``."""
        return "drift" if self.drift else "identical"

    @property
    def exit_code(self) -> int:
        """0 when identical, 1 on drift."""
        return 1 if self.drift else 0

    def counts(self) -> dict[str, int]:
        """How many tensors got each status (statuses with none left out), in report order."""
        out: dict[str, int] = {}
        for status in STATUSES:
            n = sum(t.status == status for t in self.tensors)
            if n:
                out[status] = n
        return out

    def by_status(self, status: str) -> list[TensorDiff]:
        """The tensors with one status, in RNG order."""
        return [t for t in self.tensors if t.status == status]


def init_text(entry: dict[str, Any] | None) -> str:
    """A tensor's init as reports print it: its init call, else its origin (— when absent)."""
    if entry is None:
        return "—"
    init = entry.get("init")
    return init["text"] if init else str(entry.get("origin"))


# --------------------------------------------------------------------------- JSON


def _clean(value: Any) -> Any:
    """Non-finite floats as strings (JSON has no NaN/inf)."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def _snapshot_json(s: Snapshot) -> dict[str, Any]:
    env = s.environment
    return {
        "path": str(s.path) if s.path else None,
        "torch": env.get("torch"),
        "device": env.get("device"),
        "cpu_capability": env.get("cpu_capability"),
        "values": s.has_values(),
    }


def tensor_to_json(td: TensorDiff) -> dict[str, Any]:
    """One tensor's comparison as a JSON-compatible dict."""
    e = td.entry
    out: dict[str, Any] = {
        "name": td.name,
        "status": td.status,
        "reason": td.reason,
        "shape": list(e["shape"]),
        "dtype": e["dtype"],
        "init_before": init_text(td.before) if td.before is not None else None,
        "init_after": init_text(td.after) if td.after is not None else None,
        "own_change": td.own_change,
        "shifted_by": td.shifted_by,
        "within_tolerance": td.within_tolerance,
        "renamed_from": td.renamed_from,
        "error": td.error,
        "stats": td.stats,
    }
    if td.before is not None and td.after is not None:
        out["shape_before"] = list(td.before["shape"])
        out["dtype_before"] = td.before["dtype"]
    return out


def report_to_json(report: DiffReport) -> dict[str, Any]:
    """The machine-readable diff (the schema the README documents)."""
    rc = report.root_cause
    return _clean(
        {
            "format": JSON_FORMAT,
            "format_version": JSON_FORMAT_VERSION,
            "verdict": report.verdict,
            "target": report.after.target,
            "seed": report.after.manifest.get("seed"),
            "before": _snapshot_json(report.before),
            "after": _snapshot_json(report.after),
            "tolerance": (
                {"atol": report.atol or 0.0, "rtol": report.rtol or 0.0}
                if report.tolerance_used
                else None
            ),
            "values_compared": report.values_compared,
            "allow_renames": report.allow_renames,
            "root_cause": rc.name if rc else None,
            "root_cause_detail": (
                {
                    "kind": rc.kind,
                    "name": rc.name,
                    "status": rc.status,
                    "reason": rc.reason,
                    "site": rc.site,
                    "shifted": rc.shifted,
                    "library": rc.library,
                    "source": rc.source,
                }
                if rc
                else None
            ),
            "counts": report.counts(),
            "environment": report.environment,
            "rng": report.rng,
            "orphan_draws": [d.to_json() for d in report.draw_changes],
            "notes": report.notes,
            "tensors": [tensor_to_json(t) for t in report.tensors],
        }
    )


def iter_drifted(report: DiffReport) -> Iterator[TensorDiff]:
    """The tensors whose status is not ``identical``, in RNG order."""
    return (t for t in report.tensors if t.status != "identical")
