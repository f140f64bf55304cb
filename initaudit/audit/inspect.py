"""Audit how a model is initialized, and catch initialization that cannot be reproduced.

:func:`audit` reads a traced build (a :class:`~initaudit.snapshot.Snapshot` and, when available,
its :class:`~initaudit.trace.Trace`) and returns an :class:`AuditReport`: one row per tensor in
RNG order (its final init, origin, RNG draws and statistics next to what the init's recipe
predicts) and a list of :class:`Finding` objects. :func:`inspect_target` builds a target under
the tracer (materializing lazy modules with an example input if asked) and, unless told not to,
rebuilds it in a fresh process where only torch is seeded, to catch values that the torch seed
alone does not fix. :mod:`initaudit.audit.rebuild` is that rebuild.
"""

from __future__ import annotations

import ast
import json
import math
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from initaudit.errors import TargetError, UsageError
from initaudit.freeze.manifest import build_manifest
from initaudit.recipes import INIT_FUNCTIONS, library_text
from initaudit.snapshot.read import Snapshot
from initaudit.target import Target, is_lazy, materialize_lazy, parse_shape
from initaudit.trace import Trace, signature_of, trace_build

#: A sample statistic further than this many standard errors from the recipe is suspicious.
SIGMA_THRESHOLD = 6.0
#: Fewer elements than this give no statistical test (the normal approximation is too rough).
MIN_SAMPLES = 16

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

# Ops whose output holds exactly the values of their input (no arithmetic on them).
_PURE_COPY_OPS = {"copy_", "clone", "_to_copy", "lift_fresh_copy", "detach", "alias", "set_"}
# Ops that define every value of their output even though they read a tensor (for its shape).
_DEFINING_LIKE_OPS = {
    "zeros_like",
    "ones_like",
    "full_like",
    "new_zeros",
    "new_ones",
    "new_full",
    "rand_like",
    "randn_like",
    "randint_like",
}
_EPS = {"float64": 2.3e-16, "float32": 1.2e-7, "float16": 9.8e-4, "bfloat16": 7.9e-3}


# --------------------------------------------------------------------------- data


@dataclass
class Prediction:
    """What an init recipe predicts for a tensor's values."""

    recipe: str  # readable, e.g. "U(-0.19, 0.19)" or "N(0, 0.118)" or "= -13"
    mean: float
    std: float
    low: float | None = None
    high: float | None = None
    kurtosis: float = 3.0  # of one draw; sets the standard error of the sample std
    constant: bool = False
    #: The distribution itself, for plotting its density: ``uniform`` (low, high), ``normal``
    #: (mean, std), ``truncnormal`` (the parent normal's mean and std, low, high), ``constant``.
    dist: str = "normal"
    params: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """This prediction as a JSON-compatible dict."""
        return {
            "recipe": self.recipe,
            "mean": self.mean,
            "std": self.std,
            "low": self.low,
            "high": self.high,
        }


@dataclass
class TensorRow:
    """One tensor of the audited model: its init, origin, draws and checked statistics."""

    name: str
    order: int
    kind: str
    module: str
    shape: list[int]
    dtype: str
    origin: str  # default | library | user | uninitialized | unknown
    source: str  # readable origin: "user examples/highway.py:27", "default (Linear.reset_…)"
    site: str | None
    scope: str | None
    init: str | None  # readable final init call with its arguments
    call: str | None
    args: dict[str, Any]
    draws: int
    wasted_draws: int
    stats: dict[str, Any]
    hash: str
    aliases: list[str] = field(default_factory=list)
    expected: Prediction | None = None
    z_mean: float | None = None
    z_std: float | None = None
    out_of_range: bool = False
    later_partial: list[str] = field(default_factory=list)  # sites of partial writes after init
    overwrote: list[str] = field(default_factory=list)  # readable inits replaced by the final one
    overwrote_default: bool = False  # one of them was torch's implicit default
    #: The library code that set the value: ``{name, version, function, site}``, or None.
    library: dict[str, Any] | None = None

    @property
    def check(self) -> str:
        """``ok``, ``off`` (far from the recipe), or ``n/a`` (no statistical prediction)."""
        if self.expected is None or (self.z_std is None and not self.out_of_range):
            return "n/a"
        if self.out_of_range:
            return "off"
        if abs(self.z_std or 0.0) > SIGMA_THRESHOLD or abs(self.z_mean or 0.0) > SIGMA_THRESHOLD:
            return "off"
        return "ok"

    def to_json(self) -> dict[str, Any]:
        """This row as a JSON-compatible dict."""
        return {
            "name": self.name,
            "order": self.order,
            "kind": self.kind,
            "module": self.module,
            "shape": self.shape,
            "dtype": self.dtype,
            "origin": self.origin,
            "source": self.source,
            "site": self.site,
            "scope": self.scope,
            "library": self.library,
            "init": self.init,
            "call": self.call,
            "args": self.args,
            "draws": self.draws,
            "wasted_draws": self.wasted_draws,
            "overwrote": self.overwrote,
            "stats": self.stats,
            "expected": self.expected.to_json() if self.expected else None,
            "z": {"mean": _r(self.z_mean), "std": _r(self.z_std)}
            if self.z_std is not None
            else None,
            "out_of_range": self.out_of_range,
            "check": self.check,
            "later_partial_writes": self.later_partial,
            "aliases": self.aliases,
            "hash": self.hash,
        }


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


@dataclass
class RerunResult:
    """Hashes from a rebuild in a fresh process where only torch was seeded."""

    hashes: dict[str, str]
    command: list[str]


@dataclass
class AuditReport:
    """The result of an audit: per-tensor rows in RNG order and the findings."""

    target: dict[str, Any]
    seed: int
    tensors: list[TensorRow]
    findings: list[Finding]
    require_explicit: bool = False
    example_input: list[int] | None = None
    rerun: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    #: The audited snapshot (its values, when it holds them, feed the HTML report's plots).
    snapshot: Snapshot | None = field(default=None, repr=False, compare=False)

    @property
    def errors(self) -> list[Finding]:
        """The findings that fail the audit."""
        return [f for f in self.findings if f.severity == "error"]

    @property
    def exit_code(self) -> int:
        """0 when no finding is an error, 1 otherwise."""
        return 1 if self.errors else 0

    def by_kind(self, kind: str) -> list[Finding]:
        """The findings of one kind."""
        return [f for f in self.findings if f.kind == kind]

    def row(self, name: str) -> TensorRow:
        """The row of a tensor, by its primary name or one of its aliases."""
        for r in self.tensors:
            if r.name == name or name in r.aliases:
                return r
        raise KeyError(name)

    def to_json(self) -> dict[str, Any]:
        """The whole report as a JSON-compatible dict."""
        return {
            "target": self.target,
            "seed": self.seed,
            "require_explicit": self.require_explicit,
            "example_input": self.example_input,
            "rerun": self.rerun,
            "environment": self.environment,
            "tensors": [r.to_json() for r in self.tensors],
            "findings": [f.to_json() for f in self.findings],
            "summary": {
                "tensors": len(self.tensors),
                "errors": len(self.errors),
                "info": len(self.findings) - len(self.errors),
                "exit_code": self.exit_code,
            },
        }


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


# --------------------------------------------------------------------------- recipes


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if math.isfinite(v) else None


def _g(x: float) -> str:
    return f"{x:.4g}"


def _uniform(lo: float, hi: float) -> Prediction:
    return Prediction(
        recipe=f"U({_g(lo)}, {_g(hi)})",
        mean=(lo + hi) / 2,
        std=(hi - lo) / math.sqrt(12),
        low=lo,
        high=hi,
        kurtosis=1.8,
        dist="uniform",
        params={"low": lo, "high": hi},
    )


def _normal(mean: float, std: float) -> Prediction:
    return Prediction(
        recipe=f"N({_g(mean)}, {_g(std)})",
        mean=mean,
        std=std,
        dist="normal",
        params={"mean": mean, "std": std},
    )


def _constant(v: float) -> Prediction:
    return Prediction(
        recipe=f"= {_g(v)}",
        mean=v,
        std=0.0,
        low=v,
        high=v,
        constant=True,
        dist="constant",
        params={"value": v},
    )


def _phi(x: float) -> float:
    return math.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)


def _Phi(x: float) -> float:
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


def _trunc_normal(mean: float, std: float, a: float, b: float) -> Prediction | None:
    if std <= 0 or b <= a:
        return None
    al, be = (a - mean) / std, (b - mean) / std
    z = _Phi(be) - _Phi(al)
    if z <= 1e-12:
        return None
    d = (_phi(al) - _phi(be)) / z
    var = std * std * (1 + (al * _phi(al) - be * _phi(be)) / z - d * d)
    return Prediction(
        recipe=f"TN({_g(mean)}, {_g(std)}, [{_g(a)}, {_g(b)}])",
        mean=mean + std * d,
        std=math.sqrt(max(var, 0.0)),
        low=a,
        high=b,
        kurtosis=3.0,  # at most 3: using 3 only widens the standard error (fewer alarms)
        dist="truncnormal",
        params={"mean": mean, "std": std, "low": a, "high": b},
    )


def predict(call: str | None, args: dict[str, Any]) -> Prediction | None:
    """What the values of a tensor set by ``call(**args)`` should look like, when known."""
    if call is None:
        return None
    a = args
    if call == "kaiming_uniform_":
        bound = _num(a.get("bound"))
        return _uniform(-bound, bound) if bound is not None else None
    if call == "xavier_uniform_":
        std = _num(a.get("std"))
        return _uniform(-math.sqrt(3) * std, math.sqrt(3) * std) if std is not None else None
    if call in ("kaiming_normal_", "xavier_normal_"):
        std = _num(a.get("std"))
        return _normal(0.0, std) if std is not None else None
    if call == "uniform_":
        if "from" in a or "to" in a:  # Tensor.uniform_ (ATen names)
            lo, hi = _num(a.get("from", 0.0)), _num(a.get("to", 1.0))
        else:  # nn.init.uniform_
            lo, hi = _num(a.get("a", 0.0)), _num(a.get("b", 1.0))
        return _uniform(lo, hi) if lo is not None and hi is not None and hi >= lo else None
    if call in ("normal_", "normal"):
        mean, std = _num(a.get("mean", 0.0)), _num(a.get("std", 1.0))
        return _normal(mean, std) if mean is not None and std is not None else None
    if call == "trunc_normal_":
        vals = [
            _num(a.get(k, d)) for k, d in (("mean", 0.0), ("std", 1.0), ("a", -2.0), ("b", 2.0))
        ]
        return _trunc_normal(*vals) if None not in vals else None  # type: ignore[arg-type]
    if call in ("randn", "randn_like"):
        return _normal(0.0, 1.0)
    if call in ("rand", "rand_like"):
        return _uniform(0.0, 1.0)
    if call in ("zeros_", "zero_", "zeros", "zeros_like", "new_zeros"):
        return _constant(0.0)
    if call in ("ones_", "ones", "ones_like", "new_ones"):
        return _constant(1.0)
    if call in ("constant_", "fill_", "full", "full_like", "new_full"):
        v = _num(a.get("val", a.get("value", a.get("fill_value"))))
        return _constant(v) if v is not None else None
    return None


def _check_stats(row: TensorRow) -> None:
    """Fill the row's z-scores and range check from its statistics and its prediction."""
    p, s = row.expected, row.stats
    if p is None or row.dtype not in _EPS:
        return
    n = s.get("numel", 0)
    mean, std, lo, hi = (_num(s.get(k)) for k in ("mean", "std", "min", "max"))
    if n == 0 or mean is None or std is None or lo is None or hi is None:
        return
    if p.low is not None and p.high is not None and not p.constant:
        tol = _EPS[row.dtype] * max(abs(p.low), abs(p.high), 1e-30) * 4
        row.out_of_range = lo < p.low - tol or hi > p.high + tol
    if p.constant or p.std <= 0 or n < MIN_SAMPLES:
        return
    se_std = p.std * math.sqrt(max(p.kurtosis - 1.0, 1e-9) / (4.0 * n))
    se_mean = p.std / math.sqrt(n)
    row.z_std = (std - p.std) / se_std
    row.z_mean = (mean - p.mean) / se_mean


# --------------------------------------------------------------------------- per tensor


def _defines(ev: dict[str, Any]) -> bool:
    """Whether an event sets values (rather than allocating or transforming other values)."""
    return (
        ev["kind"] in ("create", "write", "external")
        or bool(ev.get("rng"))
        or ev["op"] in _DEFINING_LIKE_OPS
    )


def init_text(call: str, args: dict[str, Any]) -> str:
    """A readable call: an nn.init function with its own arguments, or an ATen op with its own."""
    sig = signature_of(call)
    shown: dict[str, Any]
    if sig is not None:
        shown = {k: v for k, v in args.items() if k in sig.parameters and k != "generator"}
    else:
        shown = {k: v for k, v in args.items() if k not in ("device", "dtype", "size")}
    parts = []
    for k, v in shown.items():
        if isinstance(v, float):
            sq = v * v
            if v > 0 and not v.is_integer() and abs(sq - round(sq)) < 1e-9 and round(sq) > 1:
                parts.append(f"{k}=√{round(sq)}")
                continue
            parts.append(f"{k}={v:.6g}")
        else:
            parts.append(f"{k}={v!r}")
    return f"{call}({', '.join(parts)})"


def _final_init(events: list[dict[str, Any]], numel: int) -> tuple[str, dict[str, Any] | None]:
    """The origin and the event that last set a tensor's whole value (cf. snapshot._init_of)."""
    whole = [e for e in events if e["kind"] != "alloc" and not e.get("partial")]
    if not any(_defines(e) for e in whole):
        parts = [e for e in events if e.get("partial") and _defines(e)]
        if parts and sum(e["numel"] for e in parts) >= numel > 0:
            return parts[-1]["origin"], parts[-1]  # written piece by piece, all of it
        if any(e["kind"] == "alloc" for e in events):
            return "uninitialized", None
        return "unknown", None
    last = whole[-1]
    if last["kind"] == "copy" and not _defines(last):
        writes = [e for e in whole if _defines(e)]
        return writes[-1]["origin"], writes[-1]
    return last["origin"], last


def _source(
    origin: str,
    site: str | None,
    scope: str | None,
    alloc_site: str | None,
    library: dict[str, Any] | None = None,
) -> str:
    if origin == "default":
        return f"default ({scope})" if scope else "default"
    if origin == "library" and library:
        return library_text(library)
    if origin == "user":
        return f"user {site}" if site else "user"
    if origin == "uninitialized":
        return f"uninitialized (allocated at {alloc_site})" if alloc_site else "uninitialized"
    return origin


def _event_library(ev: dict[str, Any], entry: dict[str, Any]) -> dict[str, Any] | None:
    """The library block of the event that set a value (its version from the entry's block)."""
    if not ev.get("library"):
        return None
    known = entry.get("library") or {}
    return {
        "name": ev["library"],
        "version": known.get("version") if known.get("name") == ev["library"] else None,
        "function": ev.get("function"),
        "site": ev.get("lib_site"),
    }


def tensor_row(entry: dict[str, Any]) -> TensorRow:
    """The audit row of one snapshot tensor entry (it needs the entry's events)."""
    events = entry.get("events") or []
    numel = entry["stats"].get("numel", 0)
    if events:
        origin, ev = _final_init(events, numel)
    else:  # a digest-only entry without events: trust the manifest
        origin, ev = entry["origin"], None
    if entry.get("origin") == "loaded":
        origin = "loaded"  # the checkpoint's bytes, whatever copied them in
    alloc = next((e for e in events if e["kind"] == "alloc"), None)
    if ev is not None:
        call, args = ev["call"], dict(ev.get("args") or {})
        site, scope = ev.get("site"), ev.get("scope")
        library = _event_library(ev, entry)
        text = (
            "external data (torch.tensor / from_numpy / a global tensor)"
            if ev["kind"] == "external"
            else init_text(call, args)
        )
    else:
        init = entry.get("init") or {}
        call, args = init.get("call"), dict(init.get("args") or {})
        site, scope = entry.get("site"), entry.get("scope")
        text = init.get("text") if init else None
        library = entry.get("library")
    row = TensorRow(
        name=entry["name"],
        order=entry.get("order", 0),
        kind=entry.get("kind", "parameter"),
        module=entry.get("module", "?"),
        shape=list(entry["shape"]),
        dtype=entry["dtype"],
        origin=origin,
        source=(
            f"loaded from {entry['loaded']['file']}"
            if origin == "loaded" and entry.get("loaded")
            else _source(origin, site, scope, alloc.get("site") if alloc else None, library)
        ),
        site=site,
        scope=scope,
        init=text,
        call=call,
        args=args,
        draws=int(entry.get("draws") or 0),
        wasted_draws=0,
        stats=entry["stats"],
        hash=entry["hash"],
        aliases=list(entry.get("aliases") or []),
        library=library,
    )
    if ev is None:
        return row
    before = [e for e in events if e["seq"] < ev["seq"] and e["call_id"] != ev["call_id"]]
    row.wasted_draws = sum(e["numel"] for e in before if e.get("rng"))
    seen: list[str] = []
    for e in before:
        if _defines(e) and not e.get("partial") and e["kind"] != "external":
            label = f"{e['call']} ({e['scope'] or e['origin']})"
            if e.get("rng") and label not in seen:
                seen.append(label)
                row.overwrote_default |= e["origin"] == "default"
    row.overwrote = seen
    after = [e for e in events if e["seq"] > ev["seq"] and e["call_id"] != ev["call_id"]]
    row.later_partial = [
        f"{e['call']} at {e.get('site') or e.get('scope') or '?'}"
        for e in after
        if e.get("partial")
    ]
    if all(e["op"] in _PURE_COPY_OPS or e.get("partial") for e in after):
        # Only value-preserving copies (clone, .to, copy_) and partial writes follow the init.
        row.expected = predict(call, args)
        _check_stats(row)
    return row


# --------------------------------------------------------------------------- findings


def _names(rows: list[TensorRow]) -> list[str]:
    return [r.name for r in rows]


def _brief(names: list[str], limit: int = 6) -> str:
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


def _kept_default(rows: list[TensorRow], require_explicit: bool) -> list[Finding]:
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
                f"({_brief(_names(defaults), 3)}) while {who} set the others"
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


def _overwritten(rows: list[TensorRow], manifest: dict[str, Any]) -> list[Finding]:
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
            f"({_brief(sites, 3)})."
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


def _uninitialized(rows: list[TensorRow], differing: set[str]) -> list[Finding]:
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
        + (f" ({_brief(also)} differed in the fresh-process rebuild)." if also else ".")
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


def _nondeterministic(
    rows: list[TensorRow],
    manifest: dict[str, Any],
    rerun: RerunResult | None,
) -> list[Finding]:
    out: list[Finding] = []
    rng = manifest.get("rng") or {}
    uninit = {r.name for r in rows if r.origin == "uninitialized"}
    differing: list[str] = []
    missing: list[str] = []
    if rerun is not None:
        for r in rows:
            h = rerun.hashes.get(r.name)
            if h is None:
                missing.append(r.name)
            elif h != r.hash and r.name not in uninit:
                differing.append(r.name)
        primary = {r.name for r in rows} | {a for r in rows for a in r.aliases}
        missing += [n for n in rerun.hashes if n not in primary]
    sources = []
    if rng.get("drew_from_numpy"):
        sources.append("NumPy's global RNG (np.random.*)")
    if rng.get("drew_from_python_random"):
        sources.append("Python's global RNG (random.*)")
    if sources:
        src = " and ".join(sources)
        external = [
            r.name
            for r in rows
            if r.origin in ("user", "library") and r.init and r.init.startswith("external data")
        ]
        if rerun is not None:
            if differing or missing:
                names = differing + missing
                out.append(
                    Finding(
                        kind="nondeterministic",
                        severity="error",
                        tensors=names,
                        message=(
                            f"The build drew from {src}, which a torch seed does not fix: "
                            f"rebuilt in a fresh process with only torch seeded, "
                            f"{_brief(names)} got different values."
                        ),
                        advice=_ND_ADVICE,
                        details={"sources": sources, "differing": differing, "missing": missing},
                    )
                )
                differing, missing = [], []
            else:
                out.append(
                    Finding(
                        kind="nondeterministic",
                        severity="info",
                        tensors=[],
                        message=(
                            f"The build drew from {src}, but no tensor value depends on it: "
                            "a fresh-process rebuild with only torch seeded gave bitwise "
                            "identical tensors (other behaviour may still depend on it)."
                        ),
                        advice="Seed it too, or move the draw out of model construction.",
                        details={"sources": sources},
                    )
                )
        else:
            out.append(
                Finding(
                    kind="nondeterministic",
                    severity="error",
                    tensors=external,
                    message=(
                        f"The build drew from {src}, which a torch seed does not fix; "
                        + (
                            f"values entered through {_brief(external)}. "
                            if external
                            else "which tensors depend on it is unknown. "
                        )
                        + "Run without --no-rerun to name exactly the tensors that change."
                    ),
                    advice=_ND_ADVICE,
                    details={"sources": sources},
                )
            )
    private = [
        r.name for r in rows if any(e.get("rng") == "private" for e in _events_of(manifest, r.name))
    ]
    if private or rng.get("private_generators"):
        out.append(
            Finding(
                kind="nondeterministic",
                severity="error" if private else "info",
                tensors=private,
                message=(
                    f"{_brief(private)} drew from a private torch.Generator: torch.manual_seed "
                    "does not set it, --seed does not change these values, and they repeat "
                    "only if that generator is seeded the same way every run."
                    if private
                    else "The build drew from a private torch.Generator, but those draws "
                    "reached no final tensor."
                ),
                advice=(
                    "Pass no generator (use the global RNG that torch.manual_seed sets), or seed "
                    "the generator from the same seed explicitly and document it."
                ),
            )
        )
    if differing or missing:
        names = differing + missing
        sites = sorted({_row(rows, n).source for n in differing if _row(rows, n)})
        out.append(
            Finding(
                kind="nondeterministic",
                severity="error",
                tensors=names,
                message=(
                    f"Rebuilt in a fresh process with only torch seeded, {_brief(names)} "
                    "got different values"
                    + (f" (set by {_brief(sites, 3)})" if sites else "")
                    + (
                        f"; {_brief(missing)} exist in only one of the two builds"
                        if missing
                        else ""
                    )
                    + ". Something other than torch's seeded RNG feeds them: time, os.urandom, "
                    "hash order of a set or dict, an unseeded RNG imported at module level, or "
                    "garbage memory."
                ),
                advice=_ND_ADVICE,
                details={"differing": differing, "missing": missing},
            )
        )
    return out


_ND_ADVICE = (
    "Draw every init from torch's global RNG (torch.randn / nn.init with no generator), or seed "
    "every RNG you use from the same seed before building the model; never use time, "
    "os.urandom or unseeded RNGs at construction."
)


def _events_of(manifest: dict[str, Any], name: str) -> list[dict[str, Any]]:
    for t in manifest["tensors"]:
        if t["name"] == name:
            return t.get("events") or []
    return []


def _row(rows: list[TensorRow], name: str) -> TensorRow | None:
    return next((r for r in rows if r.name == name), None)


def _loaded(rows: list[TensorRow]) -> list[Finding]:
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


def _tied(rows: list[TensorRow], trace: Trace | None) -> list[Finding]:
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


def _suspicious(rows: list[TensorRow]) -> list[Finding]:
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
        and r.dtype in _EPS
        and _num(r.stats.get("min")) is not None
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
                        f"{r.name} = {_g(float(r.stats['min']))} ({r.source})" for r in group[:6]
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
            d = f"{r.name}: {r.init} predicts {p.recipe} (std {_g(p.std)}), observed std " + (
                f"{_g(float(r.stats['std']))}"
            )
            if r.z_std is not None:
                d += f" (z={r.z_std:+.1f}), mean {_g(float(r.stats['mean']))} (z={r.z_mean:+.1f})"
            if r.out_of_range:
                d += f", values outside [{_g(p.low or 0)}, {_g(p.high or 0)}]"
            if r.later_partial:
                d += f"; later partial writes: {_brief(r.later_partial, 2)}"
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
                details={r.name: {"z_std": _r(r.z_std), "z_mean": _r(r.z_mean)} for r in off},
            )
        )
    return out


def _lazy(lazy: list[LazyModule]) -> list[Finding]:
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


# --------------------------------------------------------------------------- audit


def audit(
    snapshot: Snapshot | dict[str, Any],
    trace: Trace | None = None,
    *,
    require_explicit: bool = False,
    rerun: RerunResult | None = None,
    lazy: list[LazyModule] | None = None,
    example_input: list[int] | None = None,
) -> AuditReport:
    """Audit a traced build (a snapshot with events, and its trace if available)."""
    manifest = snapshot.manifest if isinstance(snapshot, Snapshot) else snapshot
    rows = [tensor_row(e) for e in manifest["tensors"]]
    differing = set()
    if rerun is not None:
        differing = {r.name for r in rows if rerun.hashes.get(r.name, r.hash) != r.hash}
    findings: list[Finding] = []
    findings += _lazy(lazy or [])
    findings += _uninitialized(rows, differing)
    findings += _nondeterministic(rows, manifest, rerun)
    findings += _suspicious(rows)
    findings += _kept_default(rows, require_explicit)
    findings += _overwritten(rows, manifest)
    findings += _tied(rows, trace)
    findings += _loaded(rows)
    findings.sort(key=lambda f: (f.severity != "error", KINDS.index(f.kind)))
    rerun_info: dict[str, Any] = {"ran": rerun is not None}
    if rerun is not None:
        rerun_info["differing"] = sorted(differing)
        rerun_info["compared"] = sum(1 for r in rows if r.name in rerun.hashes)
    env = manifest.get("provenance") or {}
    return AuditReport(
        target=manifest.get("target") or {},
        seed=manifest.get("seed", 0),
        tensors=rows,
        findings=findings,
        require_explicit=require_explicit,
        example_input=example_input,
        rerun=rerun_info,
        environment={k: env.get(k) for k in ("torch", "device", "default_dtype", "cpu_capability")},
        snapshot=snapshot if isinstance(snapshot, Snapshot) else None,
    )


# --------------------------------------------------------------------------- building


def lazy_modules(model: nn.Module) -> list[LazyModule]:
    """The lazy modules that still hold uninitialized parameters or buffers."""
    out = []
    for name, m in model.named_modules():
        own = [
            (f"{name}.{n}" if name else n)
            for n, t in list(m._parameters.items()) + list(m._buffers.items())
            if is_lazy(t)
        ]
        if own:
            out.append(LazyModule(name or "(root)", type(m).__name__, own, materialized=False))
    return out


def _drop_lazy(model: nn.Module) -> None:
    for m in model.modules():
        for store in (m._parameters, m._buffers):
            for n, t in list(store.items()):
                if is_lazy(t):
                    store[n] = None


def audit_builder(
    target: Target, example_input: list[int] | None, lazy_out: list[LazyModule]
) -> Callable[[], nn.Module]:
    """A build function: the target, then the example forward (or lazy parameters set aside)."""

    def build() -> nn.Module:
        model = target.build()
        pending = lazy_modules(model)
        if example_input is not None:
            materialize_lazy(model, example_input)
            for m in pending:
                m.materialized = True
            still = lazy_modules(model)
            if still:
                _drop_lazy(model)
                pending = [m for m in pending if m.name not in {s.name for s in still}] + still
        elif pending:
            _drop_lazy(model)
        lazy_out.extend(pending)
        return model

    return build


def trace_for_audit(
    target: Target,
    seed: int = 0,
    *,
    device: str = "cpu",
    dtype: torch.dtype | None = None,
    example_input: list[int] | None = None,
    on_event: Callable[[int], None] | None = None,
    on_tensor: Callable[[int, int, int], None] | None = None,
) -> tuple[Snapshot, Trace, list[LazyModule]]:
    """Trace a seeded build for auditing (example forward included); return snapshot, trace, lazy."""
    lazy: list[LazyModule] = []
    build = audit_builder(target, example_input, lazy)
    trace = trace_build(build, seed, device=device, dtype=dtype, on_event=on_event)
    manifest = build_manifest(target, trace, seed, device=device, dtype=dtype, on_tensor=on_tensor)
    values = {tt.name: tt.tensor for tt in trace.tensors}
    return Snapshot(manifest=manifest, values=values), trace, lazy


def rerun_fresh(
    target: Target,
    seed: int = 0,
    *,
    device: str = "cpu",
    dtype: torch.dtype | None = None,
    example_input: list[int] | None = None,
) -> RerunResult:
    """Rebuild the target in a fresh Python process where only torch is seeded; return hashes."""
    try:
        kwargs_text = repr(dict(target.kwargs))
        if ast.literal_eval(kwargs_text) != dict(target.kwargs):
            raise ValueError
    except (ValueError, SyntaxError):
        raise UsageError(
            "the fresh-process check needs keyword arguments that are Python literals",
            hint="pass --no-rerun to skip it",
        ) from None
    config = {
        "spec": target.spec,
        "kwargs": kwargs_text,
        "seed": seed,
        "device": device,
        "dtype": str(dtype).replace("torch.", "") if dtype is not None else None,
        "example_input": example_input,
    }
    env = dict(os.environ)
    pkg_root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(
        [pkg_root] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    )
    with tempfile.TemporaryDirectory(prefix="initaudit-rerun-") as tmp:
        out = Path(tmp) / "hashes.json"
        cmd = [sys.executable, "-m", "initaudit.audit.rebuild", json.dumps(config), str(out)]
        proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace", env=env)
        if proc.returncode != 0 or not out.is_file():
            raise TargetError(
                "the fresh-process rebuild (only torch seeded) failed: " + _rerun_failure(proc),
                hint="pass --no-rerun to skip that check",
            )
        hashes = json.loads(out.read_text(encoding="utf-8"))
    return RerunResult(hashes=hashes, command=cmd[:3])


def _rerun_failure(proc: subprocess.CompletedProcess[str]) -> str:
    """Why the fresh-process rebuild gave no hashes, in a few words."""
    lines = [ln.strip() for ln in proc.stderr.splitlines() if ln.strip()]
    said = [ln.split("error:", 1)[1].strip() for ln in lines if ln.startswith("initaudit: error:")]
    if said:
        return said[-1]
    if proc.returncode < 0:
        return f"the process was killed by signal {-proc.returncode}"
    how = f"the process exited with code {proc.returncode} without writing its result"
    if lines:
        return f"{how}: {lines[-1]}"
    return f"{how} or any message (does the model call os._exit()?)"






def inspect_target(
    target: Target,
    seed: int = 0,
    *,
    device: str = "cpu",
    dtype: torch.dtype | None = None,
    example_input: list[int] | None = None,
    require_explicit: bool = False,
    rerun: bool = True,
    on_event: Callable[[int], None] | None = None,
    on_tensor: Callable[[int, int, int], None] | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> AuditReport:
    """Trace a build of ``target``, rebuild it in a fresh process (unless ``rerun`` is False), audit."""
    snap, trace, lazy = trace_for_audit(
        target,
        seed,
        device=device,
        dtype=dtype,
        example_input=example_input,
        on_event=on_event,
        on_tensor=on_tensor,
    )
    result = None
    if rerun:
        if on_stage is not None:
            on_stage("rebuilding in a fresh process with only torch seeded")
        result = rerun_fresh(target, seed, device=device, dtype=dtype, example_input=example_input)
    return audit(
        snap,
        trace,
        require_explicit=require_explicit,
        rerun=result,
        lazy=lazy,
        example_input=example_input,
    )


__all__ = [
    "INIT_FUNCTIONS",
    "AuditReport",
    "Finding",
    "LazyModule",
    "Prediction",
    "RerunResult",
    "TensorRow",
    "audit",
    "inspect_target",
    "lazy_modules",
    "materialize_lazy",
    "parse_shape",
    "predict",
    "rerun_fresh",
    "trace_for_audit",
]


