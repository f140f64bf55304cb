"""Per-tensor comparison: the status of every tensor in both snapshots, and why.

A tensor with the same bytes and the same recorded init is ``identical``; otherwise its shape,
dtype, recipe, ops, derived values and RNG state are compared in that order (see
:func:`tensor_status`). A tensor only in A and one only in B that are bitwise identical (same
shape, dtype and RNG state) are one ``renamed`` tensor (:func:`match_renames`).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from initaudit.diff.inits import Init, Inits, same_record
from initaudit.diff.report import OWN_STATUSES, TensorDiff, init_text
from initaudit.recipes import describe_call


def tensor_diffs(
    entries_a: dict[str, dict[str, Any]],
    entries_b: dict[str, dict[str, Any]],
    inits_a: Inits,
    inits_b: Inits,
    env_changed: bool,
) -> dict[str, TensorDiff]:
    """The comparison of every tensor by name: B's tensors in B's order, then those only in A."""
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
        if same_bytes and same_record(ea, eb):
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
    return diffs


def _status(
    ea: dict[str, Any],
    eb: dict[str, Any],
    ia: Init,
    ib: Init,
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


def _draws_text(ia: Init, ib: Init) -> str:
    """How a tensor's draws changed: their number, or (the same number) the ops drawing them."""
    na, nb = sum(d[1] for d in ia.draws), sum(d[1] for d in ib.draws)
    if na != nb:
        return f"it now draws {nb} random numbers instead of {na}"

    def ops(init: Init) -> str:
        return " + ".join(f"{op} ({n})" for op, n, _ in init.draws) or "none"

    return (
        f"it draws the same {na} random numbers through other ops: {ops(ib)} instead of {ops(ia)}"
    )


def _shape(e: dict[str, Any]) -> str:
    """``3×4``, or ``scalar``."""
    return "×".join(map(str, e["shape"])) or "scalar"


def _recipe_text(entry: dict[str, Any], init: Init) -> str:
    """A tensor's recipe in words: its init text, or its init calls joined by ``then``."""
    if not init.has_events:
        return init_text(entry)
    if len(init.recipe) == 1 and entry.get("init"):
        return init_text(entry)
    return " then ".join(describe_call(call, dict(args)) for call, args in init.recipe) or "nothing"


def _derived_text(ia: Init, ib: Init) -> str:
    parts = []
    for da, db in zip(ia.derived, ib.derived, strict=False):
        if da != db:
            a, b = dict(da), dict(db)
            for k in sorted(set(a) | set(b)):
                if a.get(k) != b.get(k):
                    parts.append(f"{k} {a.get(k)} → {b.get(k)}")
    return ", ".join(parts) or "their number changed"


def _rename_key(entry: dict[str, Any]) -> tuple[Any, ...]:
    """What a renamed tensor keeps: its bytes, shape, dtype and the RNG state it drew from."""
    return (entry["hash"], tuple(entry["shape"]), entry["dtype"], entry.get("rng_before"))


def match_renames(diffs: dict[str, TensorDiff]) -> set[str]:
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
