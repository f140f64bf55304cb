"""Compare two snapshots: what drifted, how, and why.

Every tensor gets exactly one status (see :data:`STATUSES`). Digests are compared first;
values are read (lazily, hash-checked) only for tensors whose digests differ, so diffing two
identical snapshots reads no value (only each values file's header, checked when read). The *root cause* is the first item in RNG
order whose own initialization diverged: a tensor (its recipe, implementation, kernel, shape or
dtype changed, it was added or removed, or it now draws a different amount of random numbers),
or a thrown-away draw that appeared or disappeared; ``stream-shift`` tensors after it are the
ones it shifted. The root cause also names the code that changed behind it: the library whose
version changed (``transformers 4.57.6 → 5.0.0``, from the provenance's ``libraries``) or the
user's source file whose digest changed. A tensor only in A and one only in B that are bitwise
identical (same shape, dtype and RNG state) are one ``renamed`` tensor.

What counts as the *recipe* of a tensor: the sequence of readable init calls that set its value
(``kaiming_uniform_``, ``uniform_``, ``fill_``, …) with their explicit arguments. Where a call
was made (``site``: file and line), who made it (``origin``, ``scope``) and the device argument
are not part of the recipe: a moved line is not drift. Values an init function derives from its
arguments (``fan``, ``gain``, ``std``, ``bound``) are compared too, but a change there with the
same call and arguments is ``implementation-drift`` (torch computes the same call differently).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from initaudit.errors import SnapshotError, UsageError
from initaudit.recipes import describe_call, init_params
from initaudit.snapshot.read import Snapshot
from initaudit.tensors import parse_dtype

# torch is imported only where values are compared: a diff of identical snapshots reads two
# manifests and compares digests, and should not pay ~1.5 s for ``import torch``.
if TYPE_CHECKING:
    import torch

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
_NON_RECIPE_ARGS = frozenset({"device", "pin_memory", "layout", "memory_format"})
_CHUNK = 1 << 22

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


# --------------------------------------------------------------------------- recipes


@dataclass
class _Init:
    """What a manifest entry says about how a tensor got its value."""

    recipe: list[tuple[str, Any]]
    derived: list[Any]
    ops: list[str]
    draws: list[tuple[str, int, str | None]]
    rng_before: list[str | None]
    position: int
    has_events: bool


def _freeze(value: Any) -> Any:
    """A hashable, comparable form of a JSON value."""
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


@cache
def _params_of(call: str) -> frozenset[str] | None:
    """The parameter names of a ``torch.nn.init`` function, or None for other calls."""
    params = init_params(call)
    return frozenset(params) if params is not None else None


def _split_args(call: str, args: dict[str, Any]) -> tuple[Any, Any]:
    """Explicit arguments (the recipe) and derived locals (fan, gain, std, bound) of a call."""
    params = _params_of(call)
    if params is None:
        explicit = {k: v for k, v in args.items() if k not in _NON_RECIPE_ARGS}
        return _freeze(explicit), ()
    explicit = {k: v for k, v in args.items() if k in params}
    derived = {k: v for k, v in args.items() if k not in params}
    return _freeze(explicit), _freeze(derived)


def _init_of(entry: dict[str, Any]) -> _Init:
    """The recipe, op sequence and draws of one manifest entry."""
    events = entry.get("events")
    if events is None:  # a manifest without events: the final init call is all we know
        init = entry.get("init")
        recipe = []
        derived: list[Any] = []
        if init:
            explicit, der = _split_args(init["call"], init.get("args") or {})
            recipe.append((init["call"], explicit))
            derived.append(der)
        n = int(entry.get("draws") or 0)
        return _Init(
            recipe=recipe,
            derived=derived,
            ops=[],
            draws=[("?", n, None)] if n else [],
            rng_before=[entry.get("rng_before")] if n else [],
            position=int(entry.get("order", 0)),
            has_events=False,
        )
    recipe = []
    derived = []
    ops: list[str] = []
    draws: list[tuple[str, int, str | None]] = []
    rng_before: list[str | None] = []
    last_call_id: Any = object()
    for ev in events:
        if ev.get("kind") == "alloc":
            continue
        ops.append(ev["op"])
        if ev.get("rng"):
            draws.append((ev["op"], int(ev.get("numel", 0)), ev.get("rng")))
            rng_before.append(ev.get("rng_before"))
        if ev.get("call_id") != last_call_id:
            last_call_id = ev.get("call_id")
            explicit, der = _split_args(ev["call"], ev.get("args") or {})
            recipe.append((ev["call"], explicit))
            derived.append(der)
    return _Init(
        recipe=recipe,
        derived=derived,
        ops=ops,
        draws=draws,
        rng_before=rng_before,
        position=_position(events),
        has_events=True,
    )


class _Inits:
    """``_init_of`` of each entry of one snapshot, parsed when first asked for."""

    def __init__(self, entries: dict[str, dict[str, Any]]) -> None:
        self.entries = entries
        self.parsed: dict[str, _Init] = {}

    def __getitem__(self, name: str) -> _Init:
        init = self.parsed.get(name)
        if init is None:
            init = self.parsed[name] = _init_of(self.entries[name])
        return init

    def position(self, name: str) -> int:
        """The entry's place in RNG order (as ``_init_of(...).position``), without parsing."""
        entry = self.entries[name]
        events = entry.get("events")
        if events is None:
            return int(entry.get("order", 0))
        return _position(events)


def _position(events: list[dict[str, Any]]) -> int:
    """A tensor's place in RNG order: its first draw, or (drawing nothing) its first write.

    A parameter made by ``torch.zeros`` and drawn into later, after a thrown-away draw, starts
    its draws after that draw: the first event alone would put it before its own root cause.
    """
    first = None
    for ev in events:
        if ev.get("kind") == "alloc":
            continue
        if ev.get("rng"):
            return int(ev.get("seq", 0))
        if first is None:
            first = int(ev.get("seq", 0))
    return first if first is not None else 1 << 62


def _same_record(ea: dict[str, Any], eb: dict[str, Any]) -> bool:
    """Whether two entries recorded the same init: same events, or same call, args and draws."""
    if ea.get("events") is not None or eb.get("events") is not None:
        return ea.get("events") == eb.get("events")
    return ea.get("init") == eb.get("init") and ea.get("draws") == eb.get("draws")


def init_text(entry: dict[str, Any] | None) -> str:
    if entry is None:
        return "—"
    init = entry.get("init")
    return init["text"] if init else str(entry.get("origin"))


# --------------------------------------------------------------------------- values


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


# --------------------------------------------------------------------------- comparing


def same_target(a: Snapshot, b: Snapshot) -> None:
    """Raise UsageError unless both snapshots are of the same target (and seed)."""

    def ident(s: Snapshot) -> tuple[Any, ...]:
        spec = str(s.target.get("spec", "")).split(":", 1)[0]
        stem = Path(spec).stem if spec.endswith(".py") else spec
        return (stem, s.target.get("name"), _freeze(s.target.get("kwargs") or {}))

    if ident(a) != ident(b):
        raise UsageError(
            f"{a.label} is a snapshot of {_target_text(a)} but {b.label} is of "
            f"{_target_text(b)}; diff compares two snapshots of the same target"
        )
    if a.manifest.get("seed") != b.manifest.get("seed"):
        raise UsageError(
            f"{a.label} was frozen under seed {a.manifest.get('seed')} but {b.label} under seed "
            f"{b.manifest.get('seed')}; every random tensor would differ, so diff refuses"
        )


def _target_text(s: Snapshot) -> str:
    t = s.target
    text = f"{t.get('spec')} ({t.get('name')})"
    if t.get("kwargs"):
        text += " with " + ", ".join(f"{k}={v!r}" for k, v in t["kwargs"].items())
    return text


#: Provenance blocks of ``{name: value}`` compared name by name (and only when both have them).
_CODE_KEYS = ("libraries", "sources")


def environment_changes(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """The environment keys that changed, ``{key: {"before": …, "after": …}}`` (via deepdiff).

    ``libraries`` and ``sources`` are grouped: ``{"libraries": {name: {before, after}}}``. A
    snapshot frozen before initaudit recorded them has neither: nothing is compared then.
    """
    if a == b:  # the common case; deepdiff's import alone costs ~0.4 s
        return {}
    out: dict[str, Any] = {}
    for key in _CODE_KEYS:
        ca, cb = a.get(key), b.get(key)
        if isinstance(ca, dict) and isinstance(cb, dict) and ca != cb:
            out[key] = {
                name: {"before": ca.get(name), "after": cb.get(name)}
                for name in sorted(set(ca) | set(cb))
                if ca.get(name) != cb.get(name)
            }
    a = {k: v for k, v in a.items() if k not in _CODE_KEYS}
    b = {k: v for k, v in b.items() if k not in _CODE_KEYS}
    out.update(_flat_changes(a, b))
    return dict(sorted(out.items()))


def _flat_changes(a: dict[str, Any], b: dict[str, Any]) -> dict[str, dict[str, Any]]:
    if a == b:
        return {}
    from deepdiff import DeepDiff

    dd = DeepDiff(a, b, verbose_level=2).to_dict()
    out: dict[str, dict[str, Any]] = {}
    for kind, changes in dd.items():
        for path, change in changes.items():
            key = _path_key(path)
            if kind == "dictionary_item_added":
                out[key] = {"before": None, "after": change}
            elif kind == "dictionary_item_removed":
                out[key] = {"before": change, "after": None}
            elif isinstance(change, dict) and "new_value" in change:
                out[key] = {"before": change.get("old_value"), "after": change["new_value"]}
            else:  # list items added/removed and the like: show the whole key
                top = key.split(".", 1)[0].split("[", 1)[0]
                out[top] = {"before": a.get(top), "after": b.get(top)}
    return dict(sorted(out.items()))


def _path_key(path: str) -> str:
    """``root['a']['b']`` → ``a.b``."""
    parts = []
    for piece in path.removeprefix("root").split("]"):
        piece = piece.lstrip("[")
        if not piece:
            continue
        parts.append(piece.strip("'\""))
    return ".".join(parts)


def _orphans(snap: Snapshot) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
    """Thrown-away draws as ``(key, event)``; the key ignores line numbers and RNG state."""
    seen: dict[tuple[Any, ...], int] = defaultdict(int)
    out = []
    for ev in snap.manifest.get("orphan_draws") or []:
        site = ev.get("site")
        file = site.rpartition(":")[0] if site else None
        base = ("orphan", ev.get("call"), ev.get("op"), ev.get("numel"), file, ev.get("scope"))
        out.append(((*base, seen[base]), ev))
        seen[base] += 1
    return out


def _status(
    ea: dict[str, Any],
    eb: dict[str, Any],
    ia: _Init,
    ib: _Init,
    env_changed: bool,
) -> tuple[str, str]:
    """The status of a tensor present in both snapshots with different bytes, and why."""
    if list(ea["shape"]) != list(eb["shape"]):
        return "shape-drift", f"shape {_shape(ea)} → {_shape(eb)}"
    if ea["dtype"] != eb["dtype"]:
        return "dtype-drift", f"dtype {ea['dtype']} → {eb['dtype']}"
    if ia.recipe != ib.recipe:
        return "recipe-drift", f"init {_recipe_text(ea, ia)} → {_recipe_text(eb, ib)}"
    if ia.has_events and ib.has_events and ia.ops != ib.ops:
        return (
            "implementation-drift",
            f"same call, different ops: {' → '.join(ia.ops)} became {' → '.join(ib.ops)}",
        )
    if ia.derived != ib.derived:
        return (
            "implementation-drift",
            f"same call and arguments, different derived values: {_derived_text(ia, ib)}",
        )
    if ia.rng_before != ib.rng_before:
        return "stream-shift", "own init unchanged, but it starts from a different RNG state"
    if ia.draws:
        why = "same ops from the same RNG state, different values"
    else:
        why = "same deterministic ops, different values"
    if not env_changed:
        why += (
            " (the environment is unchanged: an input the trace does not record, such as a "
            "tensor constant or a Python scalar, probably changed)"
        )
    return "kernel-drift", why


def _draws_text(ia: _Init, ib: _Init) -> str:
    """How a tensor's draws changed: their number, or (the same number) the ops drawing them."""
    na, nb = sum(d[1] for d in ia.draws), sum(d[1] for d in ib.draws)
    if na != nb:
        return f"it now draws {nb} random numbers instead of {na}"

    def ops(init: _Init) -> str:
        return " + ".join(f"{op} ({n})" for op, n, _ in init.draws) or "none"

    return f"it draws the same {na} random numbers through other ops: {ops(ib)} instead of {ops(ia)}"


def _shape(e: dict[str, Any]) -> str:
    return "×".join(map(str, e["shape"])) or "scalar"


def _recipe_text(entry: dict[str, Any], init: _Init) -> str:
    if not init.has_events:
        return init_text(entry)
    if len(init.recipe) == 1 and entry.get("init"):
        return init_text(entry)
    return " then ".join(describe_call(call, dict(args)) for call, args in init.recipe) or "nothing"


def _derived_text(ia: _Init, ib: _Init) -> str:
    parts = []
    for da, db in zip(ia.derived, ib.derived, strict=False):
        if da != db:
            a, b = dict(da), dict(db)
            for k in sorted(set(a) | set(b)):
                if a.get(k) != b.get(k):
                    parts.append(f"{k} {a.get(k)} → {b.get(k)}")
    return ", ".join(parts) or "their number changed"


def diff_snapshots(
    a: Snapshot,
    b: Snapshot,
    atol: float | None = None,
    rtol: float | None = None,
    *,
    allow_renames: bool = False,
) -> DiffReport:
    """Compare snapshot ``a`` (before) with ``b`` (after): statuses, root cause, environment."""
    same_target(a, b)
    for tol in (atol, rtol):
        if tol is not None and not (math.isfinite(tol) and tol >= 0):
            raise UsageError(f"--atol and --rtol must be finite numbers ≥ 0, got {tol}")
    env = environment_changes(a.environment, b.environment)
    entries_a = {t["name"]: t for t in a.tensors}
    entries_b = {t["name"]: t for t in b.tensors}
    # Parsed on demand: a tensor with the same bytes and the same recorded events needs no
    # recipe analysis (the common case, and most of the time of a diff of large models).
    inits_a = _Inits(entries_a)
    inits_b = _Inits(entries_b)
    env_changed = bool(env)

    diffs: dict[str, TensorDiff] = {}
    for name, eb in entries_b.items():
        ea = entries_a.get(name)
        if ea is None:
            diffs[name] = TensorDiff(
                name,
                "added",
                f"new tensor, {_shape(eb)} {eb['dtype']}, init {init_text(eb)}",
                after=eb,
                own_change=True,
                draws_changed=bool(inits_b[name].draws),
            )
            continue
        same_bytes = (
            ea["hash"] == eb["hash"] and ea["dtype"] == eb["dtype"] and ea["shape"] == eb["shape"]
        )
        if same_bytes and _same_record(ea, eb):
            diffs[name] = TensorDiff(name, "identical", "same bytes", before=ea, after=eb)
            continue
        ia, ib = inits_a[name], inits_b[name]
        recipe_changed = ia.recipe != ib.recipe
        draws_changed = ia.draws != ib.draws
        if same_bytes:
            reason = "same bytes"
            if recipe_changed:
                reason += (
                    f", though its init changed: {_recipe_text(ea, ia)} → {_recipe_text(eb, ib)}"
                )
            if draws_changed:
                reason += f"; {_draws_text(ia, ib)}"
            diffs[name] = TensorDiff(
                name,
                "identical",
                reason,
                before=ea,
                after=eb,
                own_change=draws_changed,
                draws_changed=draws_changed,
                recipe_changed=recipe_changed,
            )
            continue
        status, reason = _status(ea, eb, ia, ib, env_changed)
        diffs[name] = TensorDiff(
            name,
            status,
            reason,
            before=ea,
            after=eb,
            own_change=status in OWN_STATUSES or draws_changed,
            draws_changed=draws_changed,
            recipe_changed=recipe_changed,
        )
    for name, ea in entries_a.items():
        if name not in entries_b:
            diffs[name] = TensorDiff(
                name,
                "removed",
                f"no longer exists (was {_shape(ea)} {ea['dtype']}, init {init_text(ea)})",
                before=ea,
                own_change=True,
                draws_changed=bool(inits_a[name].draws),
            )

    renamed_old = _match_renames(diffs)
    notes: list[str] = []
    values_compared = _compare_values(a, b, diffs, atol, rtol, notes)

    # RNG order: each snapshot's tensors and thrown-away draws by the sequence number of their
    # first value-setting event; A-only items are merged in after their last common predecessor.
    orphans_a, orphans_b = _orphans(a), _orphans(b)
    items_a = sorted(
        [(inits_a.position(n), ("tensor", n)) for n in entries_a]
        + [(int(ev.get("seq", 0)), key) for key, ev in orphans_a]
    )
    items_b = sorted(
        [(inits_b.position(n), ("tensor", n)) for n in entries_b]
        + [(int(ev.get("seq", 0)), key) for key, ev in orphans_b]
    )
    keys_a = [k for _, k in items_a if not (k[0] == "tensor" and k[1] in renamed_old)]
    keys_b = [k for _, k in items_b]
    order = _merge(keys_a, keys_b)

    draw_changes: dict[tuple[Any, ...], DrawChange] = {}
    in_b = set(keys_b)
    in_a = set(keys_a)
    for key, ev in orphans_a:
        if key not in in_b:
            draw_changes[key] = _draw_change("removed", ev)
    for key, ev in orphans_b:
        if key not in in_a:
            draw_changes[key] = _draw_change("added", ev)

    ordered_tensors: list[TensorDiff] = []
    root: RootCause | None = None
    last_cause: str | None = None
    shifted: list[str] = []
    for key in order:
        if key[0] == "tensor":
            td = diffs[key[1]]
            ordered_tensors.append(td)
            if td.status == "stream-shift":
                td.shifted_by = last_cause
                if last_cause is not None:
                    td.reason += f"; shifted by {last_cause}"
                if root is not None:
                    shifted.append(td.name)
            if td.own_change:
                if td.draws_changed or last_cause is None:
                    last_cause = td.name
                if root is None:
                    root = RootCause(
                        kind="tensor",
                        name=td.name,
                        status=td.status,
                        reason=td.reason,
                        site=td.entry.get("site"),
                        shifted=shifted,
                    )
                    root.library, root.source = _code_change(a, b, td)
        elif key in draw_changes:
            dc = draw_changes[key]
            if root is None:
                root = RootCause(
                    kind="orphan-draw",
                    name=dc.site or dc.label,
                    status=dc.change,
                    reason=(
                        f"a thrown-away draw ({dc.call}, {dc.numel} numbers) was "
                        f"{'added' if dc.change == 'added' else 'removed'}"
                    ),
                    site=dc.site,
                    shifted=shifted,
                )
                if dc.library:
                    root.library = _version_change(a, b, dc.library, dc.function)
            last_cause = dc.site or dc.label

    rng = _rng_changes(a, b)
    report = DiffReport(
        before=a,
        after=b,
        tensors=ordered_tensors,
        environment=env,
        draw_changes=list(draw_changes.values()),
        rng=rng,
        root_cause=root,
        atol=atol,
        rtol=rtol,
        values_compared=values_compared,
        notes=notes,
        allow_renames=allow_renames,
    )
    if not report.drift:
        # nothing drifted, so nothing has a root cause: a tensor whose draws changed while
        # its bytes and everything after it stayed the same says so in its own reason
        report.root_cause = None
    if root is None and report.drift:
        stray = report.by_status("stream-shift")
        if stray:
            notes.append(
                f"{len(stray)} tensor(s) start from a different RNG state but no earlier change "
                "was recorded (a draw outside the trace, or a reseed); no root cause named"
            )
    return report


def _rename_key(entry: dict[str, Any]) -> tuple[Any, ...]:
    """What a renamed tensor keeps: its bytes, shape, dtype and the RNG state it drew from."""
    return (entry["hash"], tuple(entry["shape"]), entry["dtype"], entry.get("rng_before"))


def _match_renames(diffs: dict[str, TensorDiff]) -> set[str]:
    """Pair removed and added tensors that are bitwise identical into ``renamed``; A's names.

    A pair has the same hash, shape and dtype and starts from the same RNG state; several
    candidates of one kind (zero biases) pair up in build order.
    """
    added: dict[tuple[Any, ...], list[TensorDiff]] = defaultdict(list)
    for td in diffs.values():
        if td.status == "added":
            added[_rename_key(td.after or {})].append(td)
    if not added:
        return set()
    old_names: set[str] = set()
    by_order = sorted(
        (td for td in diffs.values() if td.status == "removed"),
        key=lambda t: int((t.before or {}).get("order", 0)),
    )
    for td in list(added.values()):
        td.sort(key=lambda t: int((t.after or {}).get("order", 0)))
    for old in by_order:
        candidates = added.get(_rename_key(old.before or {}))
        if not candidates:
            continue
        new = candidates.pop(0)
        new.status = "renamed"
        new.renamed_from = old.name
        new.before = old.before
        new.own_change = False
        new.draws_changed = False
        new.reason = f"renamed from {old.name} (same bytes, shape, dtype and RNG state)"
        old_names.add(old.name)
        del diffs[old.name]
    return old_names


def _library_of_entry(entry: dict[str, Any] | None) -> dict[str, Any] | None:
    """The library block of an entry, or one made from its last library event."""
    if entry is None:
        return None
    if entry.get("library"):
        return entry["library"]
    for ev in reversed(entry.get("events") or []):
        if ev.get("library"):
            return {"name": ev["library"], "function": ev.get("function"), "site": ev.get("lib_site")}
    return None


def _version_change(
    a: Snapshot, b: Snapshot, name: str, function: str | None
) -> dict[str, Any] | None:
    """``{name, function, before, after}`` when distribution ``name`` changed version."""
    libs_a, libs_b = a.environment.get("libraries"), b.environment.get("libraries")
    if libs_a is None or libs_b is None:
        return None  # a snapshot from before initaudit recorded libraries: unknown
    va, vb = libs_a.get(name), libs_b.get(name)
    if va == vb:
        return None
    return {"name": name, "function": function, "before": va, "after": vb}


def _code_change(
    a: Snapshot, b: Snapshot, td: TensorDiff
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """Which code changed behind a root-cause tensor: its library's version, or the user's source.

    Returns ``(library, source)``: ``library`` is ``{name, function, before, after}`` when the
    distribution whose code set the tensor (in either snapshot) changed version between the
    snapshots' provenance; otherwise ``source`` is ``{path, before, after}`` for the user file
    that changed (the tensor's own site first).
    """
    for entry in (td.after, td.before):
        lib = _library_of_entry(entry)
        if lib is not None:
            change = _version_change(a, b, lib["name"], lib.get("function"))
            if change is not None:
                return change, None
    src_a, src_b = a.environment.get("sources"), b.environment.get("sources")
    if src_a is None or src_b is None:
        return None, None
    changed = [p for p in sorted(set(src_a) & set(src_b)) if src_a[p] != src_b[p]]
    if not changed:
        return None, None
    site = td.entry.get("site") or ""
    own = [p for p in changed if site.rpartition(":")[0] == p]
    path = (own or changed)[0]
    return None, {"path": path, "before": src_a[path], "after": src_b[path]}


def _draw_change(change: str, ev: dict[str, Any]) -> DrawChange:
    return DrawChange(
        change=change,
        call=str(ev.get("call")),
        op=str(ev.get("op")),
        numel=int(ev.get("numel", 0)),
        site=ev.get("site"),
        scope=ev.get("scope"),
        library=ev.get("library"),
        function=ev.get("function"),
    )


def _merge(keys_a: list[Any], keys_b: list[Any]) -> list[Any]:
    """B's order, with A-only keys inserted after the last A key before them that B also has."""
    in_b = set(keys_b)
    after: dict[Any, list[Any]] = defaultdict(list)
    anchor: Any = None
    for k in keys_a:
        if k in in_b:
            anchor = k
        else:
            after[anchor].append(k)
    merged = list(after.get(None, []))
    for k in keys_b:
        merged.append(k)
        merged.extend(after.get(k, []))
    return merged


def _rng_changes(a: Snapshot, b: Snapshot) -> dict[str, dict[str, Any]]:
    """What changed in the RNG block: the state a build leaves behind, other RNGs drawn from."""
    ra, rb = a.manifest.get("rng") or {}, b.manifest.get("rng") or {}
    out = {}
    for key in ("torch_after", "drew_from_python_random", "drew_from_numpy", "private_generators"):
        if key in ra and key in rb and ra[key] != rb[key]:
            out[key] = {"before": ra[key], "after": rb[key]}
    return out


def _compare_values(
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
