"""The finding kinds and their detection: one ``find_*`` function per kind (see :data:`KINDS`).

Each reads the audit rows (and, where it needs them, the manifest or the trace) and returns
its findings: ``kept-default``, ``overwritten``, ``uninitialized``, ``tied``, ``suspicious``,
``lazy`` and ``loaded`` here; ``nondeterministic`` in :mod:`initaudit.audit.nondeterminism`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from initaudit.audit.predict import EPS, finite_number, short_number
from initaudit.audit.rows import SIGMA_THRESHOLD, TensorRow, round3
from initaudit.trace.tracer import Trace

SEVERITIES = ("info", "error")
KINDS = (
    "kept-default",
    "overwritten",
    "uninitialized",
    "nondeterministic",
    "tied",
    "suspicious",
    "lazy",
    "loaded",
)


@dataclass
class Finding:
    """One problem (or notable fact) about how the model is initialized."""

    kind: str
    severity: str  # "info" | "error"
    tensors: list[str]
    message: str
    advice: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """This finding as a JSON-compatible dict."""
        return {
            "kind": self.kind,
            "severity": self.severity,
            "tensors": self.tensors,
            "message": self.message,
            "advice": self.advice,
            "details": self.details,
        }


@dataclass
class LazyModule:
    """A lazy module of the model: its parameters only exist after the first forward."""

    name: str
    type: str
    tensors: list[str]
    materialized: bool


def _names(rows: list[TensorRow]) -> list[str]:
    return [r.name for r in rows]


def brief(names: list[str], limit: int = 6) -> str:
    """Names joined by commas, cut after ``limit`` with a count of the rest."""
    if len(names) <= limit:
        return ", ".join(names)
    return ", ".join(names[:limit]) + f", … ({len(names) - limit} more)"


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _leaf(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def _lib_where(row: TensorRow) -> str:
    lib = row.library or {}
    return " ".join(str(p) for p in (lib.get("function"), lib.get("site")) if p) or "?"


def find_kept_default(rows: list[TensorRow], require_explicit: bool) -> list[Finding]:
    """``kept-default``: parameters left at torch's implicit init, and layers your code missed."""
    params = [r for r in rows if r.kind == "parameter"]
    kept = [r for r in params if r.origin == "default"]
    if not kept:
        return []
    groups: dict[str, list[TensorRow]] = {}
    for r in kept:
        groups.setdefault(f"{r.scope or r.module}: {r.init}", []).append(r)
    lines = [f"{len(v)}× {k}" for k, v in groups.items()]
    # Layers of a type where user code set some tensors of a role but not others: a missed layer?
    missed: list[str] = []
    by_role: dict[tuple[str, str], list[TensorRow]] = {}
    for r in params:
        by_role.setdefault((r.module, _leaf(r.name)), []).append(r)
    for (module, leaf), group in by_role.items():
        users = [r for r in group if r.origin in ("user", "library")]
        defaults = [r for r in group if r.origin == "default"]
        if users and defaults:
            libs = sorted({r.library["name"] for r in users if r.origin == "library" and r.library})
            if all(r.origin == "library" for r in users) and libs:
                who = f"{', '.join(libs)} code"
                sites = sorted({_lib_where(r) for r in users})
            else:
                who = "user code"
                sites = sorted({r.site for r in users if r.origin == "user" and r.site})
            missed.append(
                f"{module}.{leaf}: {len(defaults)} of {len(group)} kept the default "
                f"({brief(_names(defaults), 3)}) while {who} set the others"
                + (f" at {', '.join(sites[:2])}" if sites else "")
            )
    message = (
        f"{len(kept)} of {len(params)} parameters keep torch's implicit default init: "
        + "; ".join(lines)
        + "."
    )
    if missed:
        message += " Possibly missed by your init code: " + "; ".join(missed) + "."
    advice = (
        "Defaults are legitimate, but they are code you did not write and torch can change "
        "between versions. If your init function should cover these layers, extend it (check "
        "its isinstance tests); to pin them, write the default out explicitly "
        "(`initaudit explicit TARGET` prints it as code)."
    )
    if require_explicit:
        advice = "--require-explicit is set: every parameter must be set by your code. " + advice
    return [
        Finding(
            kind="kept-default",
            severity="error" if require_explicit else "info",
            tensors=_names(kept),
            message=message,
            advice=advice,
            details={"groups": {k: _names(v) for k, v in groups.items()}, "missed": missed},
        )
    ]


def find_overwritten(rows: list[TensorRow], manifest: dict[str, Any]) -> list[Finding]:
    """``overwritten``: random draws thrown away (an init replaced, or a draw no tensor kept)."""
    over = [r for r in rows if r.wasted_draws > 0]
    orphans = manifest.get("orphan_draws") or []
    orphan_draws = sum(int(e.get("numel") or 0) for e in orphans)
    if not over and not orphan_draws:
        return []
    wasted = sum(r.wasted_draws for r in over)
    from_default = [r for r in over if r.overwrote_default]
    order = {r.name: i for i, r in enumerate(rows)}
    first = min(over, key=lambda r: order[r.name]) if over else None
    parts = []
    if over:
        parts.append(
            f"{_n(len(over), 'tensor')} {'was' if len(over) == 1 else 'were'} initialized and then "
            "replaced "
            f"({len(from_default)} of them replaced torch's default init): "
            f"{wasted:,} random numbers drawn for values nobody kept "
            f"(e.g. {over[0].name}: {', '.join(over[0].overwrote) or 'an earlier init'} "
            f"→ {over[0].init} by {over[0].source})."
        )
    if orphan_draws:
        sites = sorted(
            {f"{e.get('call')} at {e.get('site') or e.get('scope') or '?'}" for e in orphans}
        )
        parts.append(
            f"{orphan_draws:,} more random numbers reached no final tensor at all "
            f"({brief(sites, 3)})."
        )
    after = len(rows) - order[first.name] - 1 if first else None
    parts.append(
        "The values are right, but every one of these draws advances the RNG: change or remove "
        "one (or a torch upgrade that changes a default init's draws) and every tensor "
        "initialized after it gets different values"
        + (f" ({_n(after or 0, 'tensor')} after {first.name} in RNG order)." if first else ".")
    )
    return [
        Finding(
            kind="overwritten",
            severity="info",
            tensors=_names(over),
            message=" ".join(parts),
            advice=(
                "Keep it if the snapshot is what you pin; to stop depending on torch's default "
                "draws, build the layers without them (torch.nn.utils.skip_init, or construct "
                "on device='meta' and call to_empty() then your init), and keep init order "
                "fixed."
            ),
            details={
                "wasted_draws": wasted,
                "orphan_draws": orphan_draws,
                "per_tensor": {r.name: r.wasted_draws for r in over},
            },
        )
    ]


def find_uninitialized(rows: list[TensorRow], differing: set[str]) -> list[Finding]:
    """``uninitialized``: tensors allocated and never written (garbage values)."""
    bad = [r for r in rows if r.origin == "uninitialized"]
    if not bad:
        return []
    also = [r.name for r in bad if r.name in differing]
    msg = (
        f"{_n(len(bad), 'tensor')} {'holds' if len(bad) == 1 else 'hold'} memory that was allocated and never written: "
        + "; ".join(f"{r.name} ({r.source})" for r in bad[:6])
        + ("…" if len(bad) > 6 else "")
        + ". Their values are whatever the allocator returned: garbage that can differ from "
        "run to run and machine to machine"
        + (f" ({brief(also)} differed in the fresh-process rebuild)." if also else ".")
    )
    return [
        Finding(
            kind="uninitialized",
            severity="error",
            tensors=_names(bad),
            message=msg,
            advice=(
                "Initialize them in __init__ or reset_parameters (e.g. nn.init.ones_ for a "
                "scale, nn.init.zeros_ for a bias), or allocate with torch.zeros/torch.ones "
                "instead of torch.empty."
            ),
        )
    ]


def find_loaded(rows: list[TensorRow]) -> list[Finding]:
    """With a checkpoint loaded: which tensors came from it, and which the build initialized."""
    loaded = [r for r in rows if r.origin == "loaded"]
    if not loaded:
        return []
    fresh = [r for r in rows if r.origin not in ("loaded",)]
    files = sorted({r.source.removeprefix("loaded from ") for r in loaded})
    listed = [f"{r.name} ({r.init or '?'}, {r.source})" for r in fresh]
    message = (
        f"{_n(len(loaded), 'tensor')} loaded bit for bit from {', '.join(files)}; "
        f"{_n(len(fresh), 'tensor')} newly initialized by the build"
        + (": " + "; ".join(listed[:12]) + (" …" if len(listed) > 12 else "") if listed else "")
        + "."
    )
    return [
        Finding(
            kind="loaded",
            severity="info",
            tensors=_names(fresh),
            message=message,
            advice="Only the newly initialized tensors depend on init code (and drift with it); "
            "pin them with a snapshot, and the checkpoint with its sha256.",
            details={"loaded": _names(loaded), "files": files},
        )
    ]


def find_tied(rows: list[TensorRow], trace: Trace | None) -> list[Finding]:
    """``tied``: storages shared by several names (aliases, or views of one storage)."""
    groups: list[list[str]] = [[r.name, *r.aliases] for r in rows if r.aliases]
    if trace is not None:  # different views of one storage (e.g. a transposed tie)
        by_storage: dict[int, list[str]] = {}
        for tt in trace.tensors:
            t = tt.tensor
            if t.numel() == 0 or t.device.type == "meta":
                continue
            by_storage.setdefault(t.untyped_storage().data_ptr(), []).append(tt.name)
        for names in by_storage.values():
            if len(names) > 1:
                merged = [n for g in groups if g[0] in names for n in g]
                groups = [g for g in groups if g[0] not in names]
                groups.append(list(dict.fromkeys(names + merged)))
    if not groups:
        return []
    return [
        Finding(
            kind="tied",
            severity="info",
            tensors=[g[0] for g in groups],
            message=f"{_n(len(groups), 'storage')} shared by several names: "
            + "; ".join(f"{g[0]} = {', '.join(g[1:])}" for g in groups)
            + ". Each is listed once, under its first name; its init is the last write to the "
            "shared storage, and any init drawn for an alias before the tie was thrown away.",
            advice="Intended for weight tying. If not intended, give each module its own tensor.",
            details={"groups": groups},
        )
    ]


def _mixes_inputs(shape: list[int]) -> bool:
    """True for a weight of several units that each sum several inputs (fan-in > 1).

    Only there are equal elements a symmetry problem: a (C,1,1) layer scale, an NF gain of
    shape (C,1,1,1) or a (heads,1,1) logit scale is a vector of per-channel constants.
    """
    return len(shape) >= 2 and shape[0] > 1 and math.prod(shape[1:]) > 1


def find_suspicious(rows: list[TensorRow]) -> list[Finding]:
    """``suspicious``: NaN or Inf, weight matrices of equal elements, statistics off the recipe."""
    out: list[Finding] = []
    rows = [r for r in rows if r.origin != "uninitialized"]  # garbage: reported on its own
    nonfinite = [r for r in rows if (r.stats.get("nan") or 0) or (r.stats.get("inf") or 0)]
    if nonfinite:
        out.append(
            Finding(
                kind="suspicious",
                severity="error",
                tensors=_names(nonfinite),
                message="NaN or Inf in the initial values of "
                + "; ".join(
                    f"{r.name} ({r.stats.get('nan', 0)} NaN, {r.stats.get('inf', 0)} Inf, "
                    f"{r.source})"
                    for r in nonfinite[:6]
                )
                + ".",
                advice="Find the init that divides by zero or overflows (e.g. a fan of 0, a "
                "log of 0, a too-narrow dtype) and fix it.",
            )
        )
    flat = [
        r
        for r in rows
        if r.kind == "parameter"
        and _mixes_inputs(r.shape)
        and r.dtype in EPS
        and finite_number(r.stats.get("min")) is not None
        and r.stats.get("min") == r.stats.get("max")
    ]
    for zero in (False, True):
        group = [r for r in flat if (r.stats.get("min") == 0) == zero]
        if not group:
            continue
        out.append(
            Finding(
                kind="suspicious",
                severity="info" if zero else "error",
                tensors=_names(group),
                message=(
                    "Weight matrices with every element equal: "
                    + "; ".join(
                        f"{r.name} = {short_number(float(r.stats['min']))} ({r.source})"
                        for r in group[:6]
                    )
                    + ". Units fed by identical weights get identical gradients, so symmetry is "
                    "never broken"
                    + (
                        " (all-zero matrices are deliberate in some designs: LoRA's B, "
                        "zero-init of residual outputs)."
                        if zero
                        else "."
                    )
                ),
                advice="Use a random init (kaiming_*, xavier_*, normal_) for weight matrices, "
                "unless a constant is deliberate and another path breaks the symmetry.",
            )
        )
    off = [r for r in rows if r.check == "off"]
    if off:
        descs = []
        for r in off[:6]:
            p = r.expected
            assert p is not None
            d = (
                f"{r.name}: {r.init} predicts {p.recipe} (std {short_number(p.std)}), observed std "
                + (f"{short_number(float(r.stats['std']))}")
            )
            if r.z_std is not None:
                d += f" (z={r.z_std:+.1f}), mean {short_number(float(r.stats['mean']))} (z={r.z_mean:+.1f})"
            if r.out_of_range:
                d += f", values outside [{short_number(p.low or 0)}, {short_number(p.high or 0)}]"
            if r.later_partial:
                d += f"; later partial writes: {brief(r.later_partial, 2)}"
            descs.append(d)
        out.append(
            Finding(
                kind="suspicious",
                severity="error",
                tensors=_names(off),
                message="Statistics far outside what the init recipe predicts, beyond "
                f"{SIGMA_THRESHOLD:g} standard errors of sampling: " + "; ".join(descs) + ".",
                advice="Something changed the values after the init (a partial write, a scale "
                "applied in place, a wrong dtype) or the init did not do what its arguments "
                "say; look at the writes listed.",
                details={
                    r.name: {"z_std": round3(r.z_std), "z_mean": round3(r.z_mean)} for r in off
                },
            )
        )
    return out


def find_lazy(lazy: list[LazyModule]) -> list[Finding]:
    """``lazy``: lazy modules not materialized (not audited), or materialized by the example forward."""
    if not lazy:
        return []
    pending = [m for m in lazy if not m.materialized]
    done = [m for m in lazy if m.materialized]
    out = []
    if pending:
        out.append(
            Finding(
                kind="lazy",
                severity="error",
                tensors=[t for m in pending for t in m.tensors],
                message="Lazy modules create and initialize their parameters only at the first "
                "forward: " + "; ".join(f"{m.name} ({m.type})" for m in pending) + ". Their "
                "parameters do not exist yet, so they were not audited.",
                advice="Pass --example-input SHAPE (e.g. --example-input 2,3) to run one "
                "forward on zeros inside the traced build, or replace them with sized modules.",
            )
        )
    if done:
        out.append(
            Finding(
                kind="lazy",
                severity="info",
                tensors=[t for m in done for t in m.tensors],
                message="Lazy modules initialized at the first forward (run on the example "
                "input): " + "; ".join(f"{m.name} ({m.type})" for m in done) + ". Their draws "
                "come after every construction-time draw, so their values depend on when the "
                "first forward runs and on anything drawn before it.",
                advice="Run the same dummy forward right after construction in training code, "
                "or replace them with sized modules.",
            )
        )
    return out
