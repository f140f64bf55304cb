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

:func:`diff_snapshots` here puts the parts together: per-tensor statuses
(:mod:`initaudit.diff.statuses`, from what :mod:`initaudit.diff.inits` reads off each entry),
values (:mod:`initaudit.diff.values`), RNG order, root cause and environment
(:mod:`initaudit.diff.causes`), into a :class:`~initaudit.diff.report.DiffReport`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from initaudit.diff.causes import environment_changes, rng_changes, walk_rng_order
from initaudit.diff.inits import Inits, hashable
from initaudit.diff.report import DiffReport
from initaudit.diff.statuses import match_renames, tensor_diffs
from initaudit.diff.values import compare_values
from initaudit.errors import UsageError
from initaudit.snapshot.read import Snapshot


def same_target(a: Snapshot, b: Snapshot) -> None:
    """Raise UsageError unless both snapshots are of the same target (and seed)."""

    def ident(s: Snapshot) -> tuple[Any, ...]:
        spec = str(s.target.get("spec", "")).split(":", 1)[0]
        stem = Path(spec).stem if spec.endswith(".py") else spec
        return (stem, s.target.get("name"), hashable(s.target.get("kwargs") or {}))

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
    inits_a = Inits(entries_a)
    inits_b = Inits(entries_b)
    env_changed = bool(env)

    diffs = tensor_diffs(entries_a, entries_b, inits_a, inits_b, env_changed)

    renamed_old = match_renames(diffs)
    notes: list[str] = []
    values_compared = compare_values(a, b, diffs, atol, rtol, notes)

    ordered_tensors, draw_changes, root = walk_rng_order(a, b, diffs, inits_a, inits_b, renamed_old)

    rng = rng_changes(a, b)
    report = DiffReport(
        before=a,
        after=b,
        tensors=ordered_tensors,
        environment=env,
        draw_changes=draw_changes,
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
