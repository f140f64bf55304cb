"""What a trace is made of: events on storages, the model's traced tensors, the whole trace.

An :class:`Event` is one ATen operation that created or wrote a storage; a
:class:`StorageRecord` holds a storage's events and the storages its values came from; a
:class:`TensorTrace` is one named parameter or buffer of the built model, bound to its record;
a :class:`Trace` is the result of :func:`initaudit.trace.tracer.trace_build`.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn


@dataclass(slots=True)
class Event:
    """One ATen operation that created or wrote a storage."""

    seq: int
    op: str
    call: str
    args: dict[str, Any]
    call_id: int
    origin: str  # "default" | "library" | "user"
    site: str | None  # file:line of the user frame
    scope: str | None  # e.g. "Linear.reset_parameters" for torch defaults
    kind: str  # "alloc" | "create" | "write" | "copy" | "external"
    rng: str | None = None  # "global" | "private" | None
    rng_before: str | None = None
    numel: int = 0
    partial: bool = False
    #: The distribution whose code set the value (``transformers``), when one did.
    library: str | None = None
    #: The library function that set it (``GPT2PreTrainedModel._init_weights``).
    function: str | None = None
    #: ``file:line`` of that function's frame, inside the distribution.
    lib_site: str | None = None

    def to_json(self) -> dict[str, Any]:
        """This event as a JSON-compatible dict."""
        out = {
            "seq": self.seq,
            "op": self.op,
            "call": self.call,
            "call_id": self.call_id,
            "args": self.args,
            "origin": self.origin,
            "site": self.site,
            "scope": self.scope,
            "kind": self.kind,
            "numel": self.numel,
        }
        if self.rng:
            out["rng"] = self.rng
            out["rng_before"] = self.rng_before
        if self.partial:
            out["partial"] = True
        if self.library is not None:
            out["library"] = self.library
            out["function"] = self.function
            out["lib_site"] = self.lib_site
        return out


@dataclass
class StorageRecord:
    """Everything that happened to one storage during the build."""

    rid: int
    nbytes: int
    events: list[Event] = field(default_factory=list)
    # (parent record, seq of the op that read it): values flowed from parent into this storage
    parents: list[tuple[StorageRecord, int]] = field(default_factory=list)
    external: bool = False  # first seen without a creating op (e.g. torch.tensor(...))

    def history(self, upto: int | None = None) -> list[Event]:
        """All events that shaped this storage's value, ancestors included, in sequence order."""
        if not self.parents:  # the common case: this storage's own events, already in order
            own = self.events if upto is None else [ev for ev in self.events if ev.seq <= upto]
            if all(own[i].seq < own[i + 1].seq for i in range(len(own) - 1)):
                return list(own)
        seen: dict[int, Event] = {}
        stack: list[tuple[StorageRecord, int | None]] = [(self, upto)]
        visited: set[tuple[int, int | None]] = set()
        while stack:
            rec, limit = stack.pop()
            if (rec.rid, limit) in visited:
                continue
            visited.add((rec.rid, limit))
            for ev in rec.events:
                if limit is None or ev.seq <= limit:
                    seen[ev.seq] = ev
            for parent, at in rec.parents:
                if limit is None or at <= limit:
                    stack.append((parent, at))
        return [seen[k] for k in sorted(seen)]


@dataclass
class TensorTrace:
    """The trace of one named tensor of the built model."""

    name: str
    kind: str  # "parameter" | "buffer"
    tensor: torch.Tensor = field(repr=False)
    record: StorageRecord | None
    persistent: bool = True
    aliases: list[str] = field(default_factory=list)

    @property
    def events(self) -> list[Event]:
        """The events that produced this tensor's value, in RNG/sequence order."""
        return self.record.history() if self.record is not None else []

    @property
    def order_key(self) -> tuple[int, ...]:
        """Sequence numbers of the value-setting events: sorts tensors in RNG/build order."""
        seqs = tuple(ev.seq for ev in self.events if ev.kind != "alloc")
        return seqs or (sys.maxsize,)


@dataclass
class Trace:
    """The result of a traced build: the model, its named tensors and the global event log."""

    model: nn.Module
    tensors: list[TensorTrace]
    events: list[Event]
    rng_after: str
    drew_from: dict[str, bool]
    private_generators: bool
    #: Every source file whose code ran on the stack of a traced op (library and user files).
    files: set[str] = field(default_factory=set)

    def orphan_draws(self) -> list[Event]:
        """Random events whose results reached no final tensor (draws thrown away)."""
        bound: set[int] = set()
        for t in self.tensors:
            bound.update(ev.seq for ev in t.events)
        return [ev for ev in self.events if ev.rng and ev.seq not in bound]
