"""Record the init program of a seeded build: every ATen op with its tensor arguments.

The tracer sees every ATen operation of a seeded build. :func:`trace_program` records them
with their tensor arguments as storage references (:class:`Ref`), one :class:`Dispatch` per op,
in a :class:`Program` that :mod:`initaudit.codegen.python` turns into code.
"""

from __future__ import annotations

import math
import os
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from initaudit.errors import AuditFailure
from initaudit.recipes import INIT_FUNCTIONS
from initaudit.target import with_example_input as builder_for
from initaudit.tensors import tensor_bytes
from initaudit.trace import tracer as trace_mod
from initaudit.trace.tracer import Event, StorageRecord, Trace

LITERAL_LIMIT = 64  # external tensors up to this many elements are written out as literals
# In-place ops that overwrite their ``self`` without reading its values.
_PURE_WRITES = {
    "fill_",
    "zero_",
    "copy_",
    "set_",
    "uniform_",
    "normal_",
    "bernoulli_",
    "random_",
    "exponential_",
    "geometric_",
    "cauchy_",
    "log_normal_",
}


class CodegenError(AuditFailure):
    """A tensor's initial value cannot be written as explicit code (exit 1)."""


@dataclass(frozen=True)
class Ref:
    """A tensor seen at dispatch: the storage it lives in and its view of that storage."""

    rec: StorageRecord | None = field(compare=False)
    rid: int
    size: tuple[int, ...]
    stride: tuple[int, ...]
    offset: int
    dtype: torch.dtype
    device: torch.device

    @property
    def numel(self) -> int:
        """Number of elements in the view."""
        return math.prod(self.size)

    def covers(self) -> bool:
        """True when the view spans its whole storage."""
        if self.rec is None:
            return False
        itemsize = torch.empty((), dtype=self.dtype).element_size()
        return self.numel * itemsize >= self.rec.nbytes


@dataclass
class Dispatch:
    """One ATen call that created or wrote a storage."""

    index: int
    func: Any
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    written: list[Ref]
    fresh: list[Ref]
    reads: list[Ref]
    events: list[Event]
    init_target: Ref | None = None

    @property
    def name(self) -> str:
        """The ATen op name without namespace or overload, e.g. ``fill_``."""
        return self.func._schema.name.split("::", 1)[-1]

    @property
    def random_global(self) -> bool:
        """True when this call drew from torch's global generator."""
        return any(ev.rng == "global" for ev in self.events)

    @property
    def random_private(self) -> bool:
        """True when this call drew from a private generator."""
        return any(ev.rng == "private" for ev in self.events)


class _ProgramTracer(trace_mod.InitTracer):
    """The init tracer, also keeping each op's tensor arguments as storage references."""

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.dispatches: list[Dispatch] = []
        self.base: dict[int, Ref] = {}
        self.external_values: dict[int, torch.Tensor | None] = {}

    def _ref(self, t: torch.Tensor) -> Ref | None:
        rec = self._lookup(t)
        if rec is None:
            return None
        try:
            offset = t.storage_offset()
        except RuntimeError:
            offset = 0
        return Ref(rec, rec.rid, tuple(t.shape), tuple(t.stride()), offset, t.dtype, t.device)

    def _adopt(self, t: torch.Tensor) -> StorageRecord | None:
        rec = super()._adopt(t)
        if rec is not None:
            self.base[rec.rid] = Ref(
                rec,
                rec.rid,
                tuple(t.shape),
                tuple(t.stride()),
                t.storage_offset(),
                t.dtype,
                t.device,
            )
            value = t.detach().clone() if t.numel() <= LITERAL_LIMIT else None
            self.external_values[rec.rid] = value
        return rec

    def _new_record(self, t: torch.Tensor) -> StorageRecord | None:
        rec = super()._new_record(t)
        if rec is not None:
            ref = Ref(
                rec,
                rec.rid,
                tuple(t.shape),
                tuple(t.stride()),
                t.storage_offset(),
                t.dtype,
                t.device,
            )
            self.base[rec.rid] = ref
        return rec

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[override]
        n0 = len(self.events)
        out = super().__torch_dispatch__(func, types, args, kwargs)
        if len(self.events) > n0:
            self._capture(func, args, kwargs or {}, out, self.events[n0:])
        return out

    def _convert(self, value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            return self._ref(value)
        if isinstance(value, (list, tuple)):
            return type(value)(self._convert(v) for v in value)
        return value

    def _capture(self, func, args, kwargs, out, events: list[Event]) -> None:
        first = events[0].seq
        written: list[Ref] = []
        reads: list[Ref] = []
        schema = func._schema
        for i, arg in enumerate(schema.arguments):
            value = args[i] if i < len(args) else kwargs.get(arg.name)
            info = arg.alias_info
            for t in trace_mod._leaves(value):
                ref = self._ref(t)
                if ref is None:
                    continue
                if info is not None and info.is_write:
                    written.append(ref)
                    if _short(func) not in _PURE_WRITES and arg.name != "out":
                        reads.append(ref)
                else:
                    reads.append(ref)
        fresh = []
        for t in trace_mod._leaves(out):
            ref = self._ref(t)
            if ref is not None and ref.rec is not None and ref.rec.events:
                ev = ref.rec.events[0]
                if ev.seq >= first and ev.kind in ("alloc", "create", "copy"):
                    fresh.append(ref)
        target = None
        frame = self._call_frame
        if frame is not None and events[-1].call in INIT_FUNCTIONS:
            t = frame.f_locals.get("tensor")
            if isinstance(t, torch.Tensor):
                target = self._ref(t)
        self.dispatches.append(
            Dispatch(
                index=len(self.dispatches),
                func=func,
                args=tuple(self._convert(a) for a in args),
                kwargs={k: self._convert(v) for k, v in kwargs.items()},
                written=written,
                fresh=fresh,
                reads=reads,
                events=list(events),
                init_target=target,
            )
        )


def _short(func: Any) -> str:
    return func._schema.name.split("::", 1)[-1]


@dataclass
class Program:
    """A traced build with every recorded op: what :func:`generate` turns into code."""

    trace: Trace
    dispatches: list[Dispatch]
    base: dict[int, Ref]
    external_values: dict[int, torch.Tensor | None]
    seed: int
    label: str
    spec: str
    #: Tensors whose values a torch seed alone does not fix, with the reason (see
    #: :func:`unfixed_by_torch_seed`).
    unfixed: dict[str, str] = field(default_factory=dict)


def unfixed_by_torch_seed(
    build: Callable[[], nn.Module], seed: int, trace: Trace
) -> dict[str, str]:
    """Rebuild under the same torch seed with Python's and NumPy's RNGs seeded otherwise, and
    name the tensors whose bytes differ from the traced build, with the likely reason.

    Generated code hard-codes what it cannot draw from torch's RNG (a scalar from
    ``random.gauss``, a clock reading), so such values would be "reproduced" only as the
    constants of this one build: they cannot be made explicit.
    """
    np = trace_mod._numpy()
    saved = (torch.get_rng_state(), random.getstate(), np.random.get_state() if np else None)
    other_seed = seed + 7919
    try:
        torch.manual_seed(seed)
        random.seed(other_seed)
        if np is not None:
            np.random.seed(other_seed % 2**32)
        model = build()
    finally:
        torch.set_rng_state(saved[0])
        random.setstate(saved[1])
        if np is not None:
            np.random.set_state(saved[2])
    rebuilt = {name: t for name, _, t, _ in trace_mod.named_tensors(model)}
    sources = [
        src
        for key, src in (("python", "Python's random"), ("numpy", "NumPy's global RNG"))
        if trace.drew_from.get(key)
    ]
    reason = (
        f"its value changes with {' and '.join(sources)}, which the build drew from and "
        "torch.manual_seed does not control"
        if sources
        else "its value differs between two builds under the same torch seed (time, "
        "os.urandom, uninitialized memory, …)"
    )
    out: dict[str, str] = {}
    for tt in trace.tensors:
        again = rebuilt.get(tt.name)
        if (
            again is None
            or again.shape != tt.tensor.shape
            or again.dtype != tt.tensor.dtype
            or tensor_bytes(again) != tensor_bytes(tt.tensor)
        ):
            out[tt.name] = reason
    return out


@contextmanager
def _tracer_class() -> Iterator[list[_ProgramTracer]]:
    made: list[_ProgramTracer] = []

    class _Tracer(_ProgramTracer):
        def __init__(self, *a: Any, **kw: Any) -> None:
            super().__init__(*a, **kw)
            made.append(self)

    original = trace_mod.InitTracer
    trace_mod.InitTracer = _Tracer  # type: ignore[misc]
    try:
        yield made
    finally:
        trace_mod.InitTracer = original  # type: ignore[misc]


def trace_program(
    build: Callable[[], nn.Module],
    seed: int = 0,
    *,
    label: str = "model",
    spec: str = "",
    example_input: tuple[int, ...] | None = None,
) -> Program:
    """Trace a seeded build, keeping every op with its tensor arguments."""
    builder = builder_for(build, example_input)
    with _tracer_class() as made:
        tr = trace_mod.trace_build(builder, seed)
    tracer = made[-1]
    unfixed = unfixed_by_torch_seed(builder, seed, tr)
    return Program(
        tr, tracer.dispatches, tracer.base, tracer.external_values, seed, label, spec, unfixed
    )


def short_site(site: str) -> str:
    """``path:line`` relative to the working directory (the file name alone outside it)."""
    path, _, line = site.rpartition(":")
    try:
        rel = os.path.relpath(path)
    except ValueError:
        rel = path
    if rel.startswith(".."):
        rel = os.path.basename(path)
    return f"{rel}:{line}"
