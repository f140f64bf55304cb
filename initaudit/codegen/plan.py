"""Plan the replay of a program: which ops become statements, and whether all can.

:func:`steps_of` groups a program's ops into statements (an ``nn.init`` call is one), :func:`plan`
keeps every draw from torch's global RNG and every step that shaped a final tensor, and
:func:`check_explainable` names every tensor whose value code cannot reproduce.
"""

from __future__ import annotations

from dataclasses import dataclass

from initaudit.codegen.program import CodegenError, Dispatch, Program, Ref, short_site
from initaudit.recipes import INIT_FUNCTIONS
from initaudit.trace.tracer import Event

_ALLOC_OPS = {"empty", "empty_like", "new_empty", "empty_strided", "new_empty_strided"}


@dataclass
class Step:
    """One statement-to-be: an ``nn.init`` call or a single ATen op."""

    dispatches: list[Dispatch]
    init: str | None = None  # nn.init function name

    @property
    def first(self) -> Dispatch:
        """The first op of the step."""
        return self.dispatches[0]

    @property
    def events(self) -> list[Event]:
        """All events of the step."""
        return [ev for d in self.dispatches for ev in d.events]

    @property
    def random_global(self) -> bool:
        """True when the step draws from torch's global generator."""
        return any(d.random_global for d in self.dispatches)

    def writes(self) -> list[Ref]:
        """Storages the step writes (for an init call: its target)."""
        if self.init is not None:
            return [self.first.init_target] if self.first.init_target else []
        return list(self.first.written)

    def fresh(self) -> list[Ref]:
        """Storages the step creates."""
        return [] if self.init is not None else list(self.first.fresh)

    def reads(self) -> list[Ref]:
        """Storages whose values the step reads."""
        if self.init is not None:
            t = self.first.init_target
            return [] if t is None or t.covers() else [t]
        return list(self.first.reads)

    def pure_full_write(self) -> Ref | None:
        """The storage this step overwrites completely without reading it, if any."""
        w = self.writes()
        if len(w) == 1 and w[0].covers() and not any(r.rid == w[0].rid for r in self.reads()):
            return w[0]
        return None


def steps_of(program: Program) -> list[Step]:
    """The program's ops as statements-to-be: one per op, one per ``nn.init`` call."""
    steps: list[Step] = []
    for d in program.dispatches:
        call = d.events[-1].call
        if call in INIT_FUNCTIONS and d.init_target is not None:
            prev = steps[-1] if steps else None
            if (
                prev is not None
                and prev.init == call
                and prev.first.events[-1].call_id == d.events[-1].call_id
            ):
                prev.dispatches.append(d)
                continue
            steps.append(Step([d], init=call))
        else:
            steps.append(Step([d]))
    return steps


def plan(steps: list[Step], final_rids: set[int]) -> tuple[list[Step], set[int]]:
    """Keep global draws and every step that shaped a final tensor (reverse liveness pass)."""
    live = set(final_rids)
    kept: list[Step] = []
    for step in reversed(steps):
        if step.init is None and step.first.name in _ALLOC_OPS:
            continue  # allocation gives no value: the storage stays live if it was
        touched = {r.rid for r in step.writes()} | {r.rid for r in step.fresh()}
        if not (step.random_global or touched & live):
            continue
        kept.append(step)
        full = step.pure_full_write()
        if full is not None and full.rid not in {r.rid for r in step.reads()}:
            live.discard(full.rid)
        for r in step.fresh():
            live.discard(r.rid)
        live.update(r.rid for r in step.reads())
    kept.reverse()
    return kept, live


def check_explainable(program: Program, kept: list[Step], residual: set[int]) -> None:
    """Raise :class:`CodegenError` naming every tensor whose value cannot be written as code."""
    tr = program.trace
    problems: list[str] = []
    for t in tr.tensors:
        label = t.name
        if t.record is None:
            if t.tensor.numel() == 0:
                continue
            problems.append(f"{label}: no traced operation created it (made outside the build?)")
            continue
        events = t.events
        if any(ev.rng == "private" for ev in events):
            problems.append(
                f"{label}: drawn from a private torch.Generator the generated code cannot see"
            )
            continue
        externals = [ev for ev in events if ev.kind == "external" and ev.origin in ("user", "library")]
        if externals and (tr.drew_from.get("numpy") or tr.drew_from.get("python")):
            src = "NumPy's" if tr.drew_from.get("numpy") else "Python's"
            where = externals[0].site or "?"
            problems.append(
                f"{label}: its value comes from data made outside torch (at "
                f"{short_site(where)}) while the build drew from {src} global RNG, "
                "which torch.manual_seed does not control"
            )
            continue
        if t.record.rid in residual:
            if t.record.external:
                if program.external_values.get(t.record.rid) is None:
                    problems.append(
                        f"{label}: its {t.tensor.numel()} values come from outside the model "
                        f"(at {short_site(events[0].site or '?')}), not from torch's RNG"
                    )
                    continue
            else:
                problems.append(
                    f"{label}: never fully written after allocation (uninitialized memory)"
                )
                continue
        if label in program.unfixed:
            problems.append(f"{label}: {program.unfixed[label]}")
    for step in kept:
        for d in step.dispatches:
            for r in d.reads:
                if r.rec is not None and r.rec.external:
                    if program.external_values.get(r.rid) is None:
                        names = _names_fed_by(program, r.rid)
                        problems.append(
                            f"{names}: depends on {r.numel} values of data from outside the "
                            f"model (at {short_site(d.events[0].site or '?')})"
                        )
    if problems:
        uniq = list(dict.fromkeys(problems))
        raise CodegenError("cannot be made explicit: " + "; ".join(uniq))


def _names_fed_by(program: Program, rid: int) -> str:
    names = []
    for t in program.trace.tensors:
        if t.record is None:
            continue
        stack, seen = [t.record], set()
        while stack:
            rec = stack.pop()
            if rec.rid in seen:
                continue
            seen.add(rec.rid)
            if rec.rid == rid:
                names.append(t.name)
                break
            stack.extend(p for p, _ in rec.parents)
    return ", ".join(names) or "a tensor"
