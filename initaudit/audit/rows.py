"""One audit row per tensor: how its final value was set, by whom, and whether it fits its recipe.

:func:`tensor_row` reads a snapshot entry's events: the event that last set the whole value
(its origin, call and arguments), the random draws thrown away before it, the partial writes
after it, and (when only value-preserving copies follow) the recipe's prediction and the
z-scores of the observed statistics against it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from initaudit.audit.predict import EPS, Prediction, finite_number, predict
from initaudit.recipes import library_text
from initaudit.trace.tracer import signature_of

#: A sample statistic further than this many standard errors from the recipe is suspicious.
SIGMA_THRESHOLD = 6.0
#: Fewer elements than this give no statistical test (the normal approximation is too rough).
MIN_SAMPLES = 16

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
            "z": {"mean": round3(self.z_mean), "std": round3(self.z_std)}
            if self.z_std is not None
            else None,
            "out_of_range": self.out_of_range,
            "check": self.check,
            "later_partial_writes": self.later_partial,
            "aliases": self.aliases,
            "hash": self.hash,
        }


def round3(x: float | None) -> float | None:
    """``x`` rounded to three decimals (None stays None), as reports give z-scores."""
    return None if x is None else round(x, 3)


def _check_stats(row: TensorRow) -> None:
    """Fill the row's z-scores and range check from its statistics and its prediction."""
    p, s = row.expected, row.stats
    if p is None or row.dtype not in EPS:
        return
    n = s.get("numel", 0)
    mean, std, lo, hi = (finite_number(s.get(k)) for k in ("mean", "std", "min", "max"))
    if n == 0 or mean is None or std is None or lo is None or hi is None:
        return
    if p.low is not None and p.high is not None and not p.constant:
        tol = EPS[row.dtype] * max(abs(p.low), abs(p.high), 1e-30) * 4
        row.out_of_range = lo < p.low - tol or hi > p.high + tol
    if p.constant or p.std <= 0 or n < MIN_SAMPLES:
        return
    se_std = p.std * math.sqrt(max(p.kurtosis - 1.0, 1e-9) / (4.0 * n))
    se_mean = p.std / math.sqrt(n)
    row.z_std = (std - p.std) / se_std
    row.z_mean = (mean - p.mean) / se_mean


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
