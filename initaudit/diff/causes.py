"""Why tensors drifted: RNG order, the root cause, and the library or source change behind it.

The *root cause* is the first item in RNG order whose own initialization diverged: a tensor
(its recipe, implementation, kernel, shape or dtype changed, it was added or removed, or it now
draws a different amount of random numbers), or a thrown-away draw that appeared or
disappeared; ``stream-shift`` tensors after it are the ones it shifted. The root cause also
names the code that changed behind it: the library whose version changed (from the
provenance's ``libraries``) or the user's source file whose digest changed.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from initaudit.diff.inits import Inits
from initaudit.diff.report import DrawChange, RootCause, TensorDiff
from initaudit.snapshot.read import Snapshot

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


def walk_rng_order(
    a: Snapshot,
    b: Snapshot,
    diffs: dict[str, TensorDiff],
    inits_a: Inits,
    inits_b: Inits,
    renamed_old: set[str],
) -> tuple[list[TensorDiff], list[DrawChange], RootCause | None]:
    """The tensors in RNG order, the thrown-away draws that changed, and the root cause.

    Each ``stream-shift`` tensor is marked with the change before it that shifted it.
    """
    entries_a, entries_b = inits_a.entries, inits_b.entries
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

    return ordered_tensors, list(draw_changes.values()), root


def _library_of_entry(entry: dict[str, Any] | None) -> dict[str, Any] | None:
    """The library block of an entry, or one made from its last library event."""
    if entry is None:
        return None
    if entry.get("library"):
        return entry["library"]
    for ev in reversed(entry.get("events") or []):
        if ev.get("library"):
            return {
                "name": ev["library"],
                "function": ev.get("function"),
                "site": ev.get("lib_site"),
            }
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
    """The :class:`DrawChange` of one thrown-away draw event."""
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


def rng_changes(a: Snapshot, b: Snapshot) -> dict[str, dict[str, Any]]:
    """What changed in the RNG block: the state a build leaves behind, other RNGs drawn from."""
    ra, rb = a.manifest.get("rng") or {}, b.manifest.get("rng") or {}
    out = {}
    for key in ("torch_after", "drew_from_python_random", "drew_from_numpy", "private_generators"):
        if key in ra and key in rb and ra[key] != rb[key]:
            out[key] = {"before": ra[key], "after": rb[key]}
    return out
