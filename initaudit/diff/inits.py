"""What a manifest entry says about how a tensor got its value: recipe, ops, draws, RNG place.

What counts as the *recipe* of a tensor: the sequence of readable init calls that set its value
with their explicit arguments. Values an init function derives from its arguments (``fan``,
``gain``, ``std``, ``bound``) are kept apart (``derived``), and so are arguments that say where
rather than how (``device``, ...).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from initaudit.recipes import init_params

#: Arguments of aten-level calls that say where, not how (not part of a recipe).
_NON_RECIPE_ARGS = frozenset({"device", "pin_memory", "layout", "memory_format"})


@dataclass
class Init:
    """What a manifest entry says about how a tensor got its value."""

    recipe: list[tuple[str, Any]]
    derived: list[Any]
    ops: list[str]
    draws: list[tuple[str, int, str | None]]
    rng_before: list[str | None]
    position: int
    has_events: bool


def hashable(value: Any) -> Any:
    """A hashable, comparable form of a JSON value."""
    if isinstance(value, dict):
        return tuple(sorted((k, hashable(v)) for k, v in value.items()))
    if isinstance(value, list):
        return tuple(hashable(v) for v in value)
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
        return hashable(explicit), ()
    explicit = {k: v for k, v in args.items() if k in params}
    derived = {k: v for k, v in args.items() if k not in params}
    return hashable(explicit), hashable(derived)


def _init_of(entry: dict[str, Any]) -> Init:
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
        return Init(
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
    return Init(
        recipe=recipe,
        derived=derived,
        ops=ops,
        draws=draws,
        rng_before=rng_before,
        position=_position(events),
        has_events=True,
    )


class Inits:
    """``_init_of`` of each entry of one snapshot, parsed when first asked for."""

    def __init__(self, entries: dict[str, dict[str, Any]]) -> None:
        self.entries = entries
        self.parsed: dict[str, Init] = {}

    def __getitem__(self, name: str) -> Init:
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


def same_record(ea: dict[str, Any], eb: dict[str, Any]) -> bool:
    """Whether two entries recorded the same init: same events, or same call, args and draws."""
    if ea.get("events") is not None or eb.get("events") is not None:
        return ea.get("events") == eb.get("events")
    return ea.get("init") == eb.get("init") and ea.get("draws") == eb.get("draws")
