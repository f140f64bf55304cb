"""Turn a traced build into standalone code that initializes a model explicitly, bit for bit.

The tracer sees every ATen operation of a seeded build. :func:`trace_program` records them
with their tensor arguments as storage references; :func:`generate` replays, in the recorded
order, every draw from torch's global RNG (thrown-away draws included) and every operation that
shaped a final parameter or buffer: ``torch.nn.init`` calls as the same calls with every argument
written out, other operations as the tensor methods that ran. :func:`verify` runs the generated
``initialize(model)`` on a freshly built model, once normally and once with every torch module's
``reset_parameters`` replaced by a NaN fill, and compares every tensor bitwise and the RNG state.
"""

from __future__ import annotations

import importlib.util
import inspect
import keyword
import math
import os
import re
import sys
import tempfile
import textwrap
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from initaudit import __version__
from initaudit.codegen.fold import fold
from initaudit.errors import AuditFailure, InitAuditError, UsageError
from initaudit.recipes import INIT_FUNCTIONS
from initaudit.snapshot.layout import atomic_write
from initaudit.target import with_example_input as builder_for
from initaudit.tensors import tensor_bytes
from initaudit.trace import tracer as trace_mod
from initaudit.trace.context import numpy_module, rng_digest
from initaudit.trace.events import Event, StorageRecord, TensorTrace, Trace
from initaudit.trace.naming import module_type_of, named_tensors
from initaudit.trace.tracer import leaves

_ALIAS_OVER = 56  # tensor paths longer than this go through a local name for their module
#: ruff's and black's default, so the code passes `ruff format --check` in a project with no config.
LINE_LENGTH = 88
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
_FACTORY_TO_INPLACE = {"zeros": "zero_()", "ones": "fill_(1)"}
_ALLOC_OPS = {"empty", "empty_like", "new_empty", "empty_strided", "new_empty_strided"}
_DROP_KWARGS = {"layout", "pin_memory", "requires_grad"}


_GENERATED_NAME = "explicit_init.py"  # the generated code's file name while it is verified


class CodegenError(AuditFailure):
    """A tensor's initial value cannot be written as explicit code (exit 1)."""


# ------------------------------------------------------------------------------ recording


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
            for t in leaves(value):
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
        for t in leaves(out):
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
    import random

    np = numpy_module()
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
    rebuilt = {name: t for name, _, t, _ in named_tensors(model)}
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


# ------------------------------------------------------------------------------ planning


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


def _steps(program: Program) -> list[Step]:
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


def _plan(steps: list[Step], final_rids: set[int]) -> tuple[list[Step], set[int]]:
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


# ------------------------------------------------------------------------------ checks


def _explainable(program: Program, kept: list[Step], residual: set[int]) -> None:
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
                f"{_short_site(where)}) while the build drew from {src} global RNG, "
                "which torch.manual_seed does not control"
            )
            continue
        if t.record.rid in residual:
            if t.record.external:
                if program.external_values.get(t.record.rid) is None:
                    problems.append(
                        f"{label}: its {t.tensor.numel()} values come from outside the model "
                        f"(at {_short_site(events[0].site or '?')}), not from torch's RNG"
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
                            f"model (at {_short_site(d.events[0].site or '?')})"
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


def _short_site(site: str) -> str:
    path, _, line = site.rpartition(":")
    try:
        rel = os.path.relpath(path)
    except ValueError:
        rel = path
    if rel.startswith(".."):
        rel = os.path.basename(path)
    return f"{rel}:{line}"


# ------------------------------------------------------------------------------ rendering


def fmt_float(v: float) -> str:
    """A Python expression that evaluates to exactly ``v``; ``math.sqrt(5)`` where it is one."""
    if math.isnan(v):
        return 'float("nan")'
    if math.isinf(v):
        return 'float("inf")' if v > 0 else '-float("inf")'
    if v == int(v) and abs(v) < 1e15:
        return repr(float(v))
    if len(repr(v)) <= 10:
        return repr(v)
    sign = "-" if v < 0 else ""
    a = abs(v)
    n = round(a * a)
    if 1 < n < 10**7 and math.sqrt(n) == a:
        return f"{sign}math.sqrt({n})"
    if a < 1:
        n = round(1 / (a * a))
        if 1 < n < 10**7 and 1 / math.sqrt(n) == a:
            return f"{sign}1 / math.sqrt({n})"
    return repr(v)


def _fmt_str(s: str) -> str:
    if '"' not in s and "\\" not in s and s.isprintable():
        return f'"{s}"'
    return repr(s)


class _Renderer:
    def __init__(self, program: Program, root: str = "model") -> None:
        self.root = root
        self.program = program
        self.model = program.trace.model
        self.final: dict[int, list[TensorTrace]] = {}
        for t in program.trace.tensors:
            if t.record is not None:
                self.final.setdefault(t.record.rid, []).append(t)
        self.vars: dict[int, str] = {}
        self.inline: dict[int, str] = {}
        self.aliases: dict[str, str] = {}  # module name -> local name bound to it
        self.taken = {root, "model", "self", "torch", "nn", "math", "bound", "SEED", "initialize"}
        self.uses_math = False
        self.lines: list[str] = []

    # -- expressions --------------------------------------------------------------------
    def path(self, name: str) -> str:
        """The expression for a tensor; a deep module gets a local name first (one line
        ``relative_position_bias = model.encoder.layers[0]…``) so statements stay short."""
        expr = self._path(name)
        mod_name, _, leaf = name.rpartition(".")
        if len(expr) <= _ALIAS_OVER or not mod_name or not expr.endswith("." + leaf):
            return expr
        alias = self.aliases.get(mod_name)
        if alias is None:
            parts = mod_name.split(".")
            stem = "_".join(parts[-2:]) if parts[-1].isdigit() else parts[-1]
            stem = "".join(c if c.isalnum() or c == "_" else "_" for c in stem).strip("_")
            if not stem.isidentifier() or keyword.iskeyword(stem):
                stem = "module"
            alias, n = stem, 1
            while alias in self.taken or alias.startswith("scratch"):
                n += 1
                alias = f"{stem}_{n}"
            self.taken.add(alias)
            self.aliases[mod_name] = alias
            self.emit(f"{alias} = {expr[: -len(leaf) - 1]}")
        return f"{alias}.{leaf}"

    def _path(self, name: str) -> str:
        parts = name.split(".")
        expr, mod = self.root, self.model
        for i, part in enumerate(parts):
            is_last = i == len(parts) - 1
            if part.isdigit() and isinstance(mod, (nn.Sequential, nn.ModuleList)):
                keys = list(mod._modules)
                if int(part) >= len(keys) or keys[int(part)] != part:
                    # a slice of a Sequential keeps its keys ('1', '2', …): position ≠ name
                    getter = "get_parameter" if self._is_param(name) else "get_buffer"
                    return f"{self.root}.{getter}({_fmt_str(name)})"
                expr += f"[{part}]"
            elif part.isidentifier() and not keyword.iskeyword(part):
                expr += f".{part}"
            else:
                getter = "get_parameter" if self._is_param(name) else "get_buffer"
                return f"{self.root}.{getter}({_fmt_str(name)})"
            if not is_last:
                mod = getattr(mod, "_modules", {}).get(part, None)
                if mod is None:
                    getter = "get_parameter" if self._is_param(name) else "get_buffer"
                    return f"{self.root}.{getter}({_fmt_str(name)})"
        return expr

    def _is_param(self, name: str) -> bool:
        return any(n == name for n, _ in self.model.named_parameters(remove_duplicate=False))

    def tensor(self, ref: Ref) -> str:
        if ref.rid in self.inline:
            # a tensor made inline (``torch.arange(3)``) and read through a view of it
            # (``.view(-1, 1)``, meshgrid's expand): the view must be written out too
            expr = self.inline.pop(ref.rid)
            base = self.program.base.get(ref.rid)
            if base is None or _meta(base) == _meta(ref):
                return expr
            return self._view(expr, _meta(base), ref)
        finals = self.final.get(ref.rid)
        if finals:
            for t in finals:
                if _view_of(t.tensor) == _meta(ref):
                    return self.path(t.name)
            t = finals[0]
            return self._view(self.path(t.name), _view_of(t.tensor), ref)
        base = self.program.base.get(ref.rid)
        var = self.vars.get(ref.rid)
        if var is None:
            var = self.declare(ref)
        if base is None or _meta(base) == _meta(ref):
            return var
        return self._view(var, _meta(base), ref)

    def declare(self, ref: Ref) -> str:
        name = f"scratch{len(self.vars) + 1}"
        self.vars[ref.rid] = name
        value = self.program.external_values.get(ref.rid)
        if value is not None:
            self.emit(f"{name} = {self.literal(value)}")
            return name
        base = self.program.base.get(ref.rid) or ref
        self.emit(f"{name} = {self.empty(base)}")
        return name

    def empty(self, base: Ref) -> str:
        size = list(base.size)
        contiguous = torch.empty(base.size).stride() == base.stride if base.size else True
        dt = "" if base.dtype == torch.get_default_dtype() else f", dtype={base.dtype}"
        if contiguous:
            return f"torch.empty({size}{dt})"
        return f"torch.empty_strided({size}, {list(base.stride)}{dt})"

    def literal(self, value: torch.Tensor) -> str:
        data = value.tolist()
        text = self.value(data)
        return f"torch.tensor({text}, dtype={value.dtype})"

    def _view(self, base_expr: str, base: tuple, ref: Ref) -> str:
        size, stride, offset, dtype = base
        if ref.dtype != dtype:
            raise CodegenError(f"{base_expr}: written through a view with another dtype")
        if size and tuple(ref.size) == tuple(size[1:]) and tuple(ref.stride) == tuple(stride[1:]):
            k, rem = divmod(ref.offset - offset, stride[0]) if stride[0] else (0, 1)
            if rem == 0 and 0 <= k < size[0]:
                return f"{base_expr}[{k}]"
        try:
            probe = torch.empty_strided(size, stride, device="meta").expand(ref.size)
            if tuple(probe.stride()) == tuple(ref.stride) and ref.offset == offset:
                return f"{base_expr}.expand({list(ref.size)})"
        except RuntimeError:
            pass
        contiguous = torch.empty(size).stride() == tuple(stride)
        if (
            ref.numel == math.prod(size)
            and ref.offset == offset
            and contiguous
            and torch.empty(ref.size).stride() == tuple(ref.stride)
        ):
            return f"{base_expr}.view({list(ref.size)})"
        if (
            len(size) == 2
            and tuple(ref.size) == tuple(size[::-1])
            and tuple(ref.stride) == tuple(stride[::-1])
            and ref.offset == offset
        ):
            return f"{base_expr}.t()"
        return f"{base_expr}.as_strided({list(ref.size)}, {list(ref.stride)}, {ref.offset})"

    def value(self, v: Any) -> str:
        if isinstance(v, Ref):
            return self.tensor(v)
        if isinstance(v, bool) or v is None:
            return repr(v)
        if isinstance(v, int):
            return repr(v)
        if isinstance(v, float):
            text = fmt_float(v)
            self.uses_math |= "math." in text
            return text
        if isinstance(v, str):
            return _fmt_str(v)
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(self.value(x) for x in v) + "]"
        if isinstance(v, torch.dtype):
            return str(v)
        if isinstance(v, torch.device):
            return f"torch.device({_fmt_str(str(v))})"
        if isinstance(v, (torch.layout, torch.memory_format)):
            return str(v)
        if isinstance(v, torch.Generator):
            raise CodegenError("an op draws from a private torch.Generator")
        raise CodegenError(f"cannot write a {type(v).__name__} argument as code")

    # -- statements ---------------------------------------------------------------------
    def emit(self, line: str) -> None:
        self.lines.append(line)

    def aten_call(self, d: Dispatch, *, skip_first: bool = False) -> tuple[str, str]:
        """(callee, argument text) for a dispatch, as a method, torch function or aten op."""
        schema = d.func._schema
        name = d.name
        pos: list[str] = []
        kws: list[str] = []
        first = None
        pending: list[str] = []
        for i, arg in enumerate(schema.arguments):
            present = i < len(d.args) or arg.name in d.kwargs
            value = d.args[i] if i < len(d.args) else d.kwargs.get(arg.name)
            if i == 0 and arg.name == "self":
                first = value
                continue
            if arg.kwarg_only:
                if not present or value is None or arg.name in _DROP_KWARGS:
                    continue
                if arg.name == "device" and str(value) == "cpu":
                    continue
                if arg.name == "memory_format" and value == torch.preserve_format:
                    continue  # what None means; ``contiguous()``'s clone keeps its format
                if arg.has_default_value() and _same(arg.default_value, value):
                    continue
                kws.append(f"{arg.name}={self.value(value)}")
                continue
            if not present or (arg.has_default_value() and _same(arg.default_value, value)):
                pending.append(self.value(arg.default_value) if arg.has_default_value() else "")
                continue
            pos.extend(pending)
            pending = []
            pos.append(self.value(value))
        has_out = any(a.name == "out" for a in schema.arguments)
        if first is not None and not has_out:
            if isinstance(first, Ref) and hasattr(torch.Tensor, name):
                return f"{self.tensor(first)}.{name}", ", ".join(pos + kws)
        fn = _torch_function(name)
        if fn is not None:
            lead = [self.value(first)] if first is not None else []
            return fn, ", ".join(lead + pos + kws)
        overload = d.func._overloadname
        all_args = ", ".join(
            [self.value(a) for a in d.args] + [f"{k}={self.value(v)}" for k, v in d.kwargs.items()]
        )
        return f"torch.ops.aten.{name}.{overload}", all_args


def _torch_function(name: str) -> str | None:
    """``torch.NAME`` or ``torch.linalg.NAME`` when such a public function exists."""
    if name.startswith("linalg_") and hasattr(torch.linalg, name[7:]):
        return f"torch.linalg.{name[7:]}"
    if not name.startswith("_") and hasattr(torch, name):
        return f"torch.{name}"
    return None


def _same(default: Any, value: Any) -> bool:
    try:
        return bool(default == value) and type(default) is type(value)
    except Exception:
        return False


def _meta(ref: Ref) -> tuple:
    return (tuple(ref.size), tuple(ref.stride), ref.offset, ref.dtype)


def _view_of(t: torch.Tensor) -> tuple:
    return (tuple(t.shape), tuple(t.stride()), t.storage_offset(), t.dtype)


def _init_signature_args(name: str, args: dict[str, Any]) -> list[tuple[str, Any]]:
    sig = inspect.signature(getattr(nn.init, name))
    out = []
    for pname, p in sig.parameters.items():
        if pname == "tensor" or pname == "generator":
            continue
        if pname in args:
            out.append((pname, args[pname]))
        elif p.default is not inspect.Parameter.empty:
            out.append((pname, p.default))
    return out


_DERIVED = ("fan", "fan_in", "fan_out", "gain", "std", "bound")


def _origin_text(ev: Event, line_only: bool = False) -> str:
    site = _short_site(ev.site) if ev.site else "?"
    lib = f"{ev.library} {ev.function}" if ev.origin == "library" and ev.library else None
    if line_only:  # inside the user's own file: no line numbers (they move with the edit)
        if ev.origin == "default":
            return f"torch default {ev.scope}"
        return lib or "from the code above"
    if ev.origin == "default":
        return f"torch default {ev.scope or ''} (built at {site})".replace("  ", " ")
    if lib:
        return f"{lib} (built at {site})"
    return f"user code at {site}"


class _Generator:
    def __init__(
        self, program: Program, kept: list[Step], root: str = "model", line_only: bool = False
    ) -> None:
        self.p = program
        self.kept = kept
        self.line_only = line_only
        self.r = _Renderer(program, root)
        self.last_group: str | None = None
        self.last_origin: str | None = None
        self.uses_nn = False
        self.touches: dict[int, int] = {}

    def group_of(self, step: Step) -> tuple[str, str]:
        """(module path, header) of the tensor a step writes."""
        refs = step.writes() + step.fresh()
        for ref in refs:
            finals = self.r.final.get(ref.rid)
            if finals:
                name = finals[0].name
                mod = name.rsplit(".", 1)[0] if "." in name else ""
                kind = module_type_of(self.p.trace.model, name)
                return mod, f"{mod or self.r.root} ({kind})"
        return "", "scratch tensors (not part of the final model)"

    def tensors_of(self, step: Step) -> str:
        """The final tensors a step writes or creates, as one comma-separated string."""
        names = [
            t.name for ref in step.writes() + step.fresh() for t in self.r.final.get(ref.rid, [])
        ]
        return ", ".join(dict.fromkeys(names))

    def prelude(self, residual: set[int]) -> list[str]:
        """Literal values for final tensors that came from outside any traced op."""
        lines = []
        for t in self.p.trace.tensors:
            rec = t.record
            if rec is None or rec.rid not in residual:
                continue
            value = self.p.external_values.get(rec.rid)
            if value is None:
                continue
            ref = self.p.base.get(rec.rid)
            mark = len(self.r.lines)
            target = self.r.path(t.name)
            if ref is not None and _meta(ref) != _view_of(t.tensor):
                target = self.r.tensor(ref)
            lines += self.r.lines[mark:]  # a local name for a deep module
            del self.r.lines[mark:]
            flat = value.flatten()
            if flat.numel() > 0 and bool((flat == flat[0]).all()):
                lines.append(f"{target}.fill_({self.r.value(flat[0].item())})")
            else:
                lines.append(f"{target}.copy_({self.r.literal(value)})")
        if lines:
            lines.insert(0, "# values written as literals in the model's code")
        return lines

    def thrown_away(self, step: Step, i: int) -> bool:
        """True for a draw whose result reaches no final tensor."""
        if not step.random_global:
            return False
        touched = {r.rid for r in step.writes() + step.fresh()}
        if touched & set(self.r.final):
            return False
        later = {r.rid for s in self.kept[i + 1 :] for d in s.dispatches for r in d.reads}
        later |= {
            s.first.init_target.rid for s in self.kept[i + 1 :] if s.init and s.first.init_target
        }
        return not touched & later

    def run(self) -> list[str]:
        for step in self.kept:
            touched = {r.rid for d in step.dispatches for r in d.reads + d.written + d.fresh}
            if step.init and step.first.init_target:
                touched = {step.first.init_target.rid}
            for rid in touched:
                self.touches[rid] = self.touches.get(rid, 0) + 1
        uses: dict[int, int] = {}
        for step in self.kept:
            for d in step.dispatches if step.init is None else []:
                for r in d.reads:
                    uses[r.rid] = uses.get(r.rid, 0) + 1
        for i, step in enumerate(self.kept):
            group, header = self.group_of(step)
            origin = _origin_text(step.events[0], self.line_only)
            if not group and not header.startswith("model"):
                header = self.last_group or header
            before = len(self.r.lines)
            nxt = self.kept[i + 1] if i + 1 < len(self.kept) else None
            try:
                self.step(step, uses, nxt)
            except Exception as exc:
                what = self.tensors_of(step) or header
                detail = str(exc) if isinstance(exc, CodegenError) else f"{type(exc).__name__}: {exc}"
                raise CodegenError(
                    f"cannot generate the code for {what} (op {step.init or step.first.name} at "
                    f"{_short_site(step.events[0].site or '?')}): {detail}"
                ) from exc
            if len(self.r.lines) == before:
                continue
            intro = []
            if header != self.last_group:
                if before:
                    intro.append("")
                intro.append(f"# {header}")
                self.last_group = header
                self.last_origin = None
            if origin != self.last_origin:
                intro.append(f"# {origin}")
                self.last_origin = origin
            if self.thrown_away(step, i):
                intro.append(
                    "# thrown away by the original build: replayed to keep the RNG in step"
                )
            self.r.lines[before:before] = intro
        return self.r.lines

    def step(self, step: Step, uses: dict[int, int], nxt: Step | None) -> None:
        r = self.r
        if step.init is not None:
            self.init_call(step)
            return
        d = step.first
        name = d.name
        if not d.fresh:
            if name == "set_":
                dst, src = d.args[0], d.args[1]
                r.emit(f"{r.tensor(dst)}.copy_({r.tensor(src)})")
                return
            callee, text = r.aten_call(d)
            if callee.startswith("torch.") and not callee.startswith("torch.ops"):
                r.emit(f"{callee}({text})")
            else:
                r.emit(f"{callee}({text})")
            return
        out = d.fresh[0]
        finals = r.final.get(out.rid)
        if name == "lift_fresh" or (d.events and d.events[0].kind == "external" and finals):
            value = self.p.external_values.get(out.rid)
            if finals and value is not None:
                target = r.tensor(out)
                flat = value.flatten()
                if flat.numel() > 0 and bool((flat == flat[0]).all()):
                    r.emit(f"{target}.fill_({r.value(flat[0].item())})")
                else:
                    r.emit(f"{target}.copy_({r.literal(value)})")
            return
        if finals:
            target = r.tensor(out)
            if name in _FACTORY_TO_INPLACE:
                r.emit(f"{target}.{_FACTORY_TO_INPLACE[name]}")
                return
            if name == "full":
                r.emit(f"{target}.fill_({r.value(d.args[1])})")
                return
            if name == "randn" and not d.kwargs.get("generator"):
                r.emit(f"{target}.normal_()")
                return
            if name in ("clone", "_to_copy") and isinstance(d.args[0], Ref):
                r.emit(f"{target}.copy_({r.tensor(d.args[0])})")
                return
            callee, text = r.aten_call(d)
            r.emit(f"{target}.copy_({callee}({text}))")
            return
        if name in ("empty", "empty_like", "new_empty", "empty_strided", "new_empty_strided"):
            return  # declared lazily where first used
        callee, text = r.aten_call(d)
        expr = f"{callee}({text})"
        used = uses.get(out.rid, 0)
        if used == 0:
            r.emit(expr)
            return
        consumer_reads = (
            [x.rid for x in nxt.first.reads] if nxt is not None and nxt.init is None else []
        )
        if used == 1 and consumer_reads.count(out.rid) == 1 and len(d.fresh) == 1:
            r.inline[out.rid] = expr
            return
        var = f"scratch{len(r.vars) + 1}"
        r.vars[out.rid] = var
        r.emit(f"{var} = {expr}")

    def init_call(self, step: Step) -> None:
        r = self.r
        d = step.first
        target_ref = d.init_target
        assert target_ref is not None
        ev = d.events[-1]
        call = step.init or ""
        args = dict(ev.args)
        rid = target_ref.rid
        if (
            rid not in r.final
            and rid not in r.vars
            and self.touches.get(rid) == 1
            and self.p.external_values.get(rid) is None
        ):
            target = r.empty(self.p.base.get(rid) or target_ref)
        else:
            target = r.tensor(target_ref)
        self.uses_nn = True
        pairs = _init_signature_args(call, args)
        derived = {k: args[k] for k in _DERIVED if k in args and k not in dict(pairs)}
        if call == "uniform_" and _is_bias_bound(args):
            n = round(1 / (args["b"] ** 2))
            r.uses_math = True
            r.emit(f"bound = 1 / math.sqrt({n})")
            r.emit(f"# bound = 1 / sqrt(fan_in), fan_in={n}")
            r.emit(f"nn.init.uniform_({target}, a=-bound, b=bound)")
            return
        if derived:
            if "fan" in derived and isinstance(args.get("mode"), str):
                derived = {args["mode"] if k == "fan" else k: v for k, v in derived.items()}
            bits = ", ".join(f"{k}={_short_num(v)}" for k, v in derived.items())
            r.emit(f"# {bits}")
        text = ", ".join(f"{k}={r.value(v)}" for k, v in pairs)
        r.emit(f"nn.init.{call}({target}{', ' if text else ''}{text})")


def _is_bias_bound(args: dict[str, Any]) -> bool:
    a, b = args.get("a"), args.get("b")
    if not isinstance(a, float) or not isinstance(b, float) or a != -b or not 0 < b < 1:
        return False
    n = round(1 / (b * b))
    return n > 1 and 1 / math.sqrt(n) == b


def _short_num(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


# ------------------------------------------------------------------------------ formatting


def _wrap(line: str, indent: str, reserve: int = 0, inside: bool = False) -> list[str]:
    """Wrap one statement the way ``ruff format`` does, for calls that do not fit
    (``reserve``: characters that will follow the last line, e.g. a trailing comma;
    ``inside``: the line is inside brackets, where a chain of calls splits one call a line)."""
    if len(indent) + len(line) + reserve <= LINE_LENGTH:
        return [indent + line]
    if line.startswith("# "):
        width = LINE_LENGTH - len(indent) - 2
        return [indent + "# " + part for part in textwrap.wrap(line[2:], width)] or [indent + "#"]
    if line.endswith(",") and line[:-1].endswith((")", "]")):
        # an argument of an exploded call: wrap the call, keep its trailing comma
        out = _wrap(line[:-1], indent, reserve + 1, inside)
        out[-1] += ","
        return out
    inner_indent = indent + "    "
    lhs, rhs = _split_assignment(line)
    if lhs is not None and len(_fluent_pieces(rhs)) > 2:
        # ``x = a(…).b(…).c(…)``: a chain of several calls goes in parentheses
        return [indent + lhs + " = (", *_wrap(rhs, inner_indent, inside=True), indent + ")"]
    pieces = _fluent_pieces(line)
    if inside and len(pieces) > 2:
        # inside brackets a chain of several calls splits before each call, one a line
        out = []
        for i, piece in enumerate(pieces):
            last = i == len(pieces) - 1
            out.extend(_wrap(piece, indent, reserve if last else 0, inside=True))
        return out
    empty_call = re.search(r"[)\]]\.[A-Za-z_][A-Za-z0-9_]*\(\)$", line)
    if empty_call:
        # ``f(a, b).clone()``: an empty trailing call stays on the last line, ``).clone()``
        tail = line[empty_call.start() + 1 :]
        out = _wrap(line[: empty_call.start() + 1], indent, reserve + len(tail), inside)
        out[-1] += tail
        return out
    prefix, opening, inner, closing = _split_outer_call(line)
    if not opening:
        return [indent + line]
    one = inner_indent + inner
    if len(one) <= LINE_LENGTH and not _top_level_trailing_comma(inner):
        return [indent + prefix + opening, one, indent + closing]
    parts = _split_top_level(inner)
    out = [indent + prefix + opening]
    if len(parts) == 1 and not _top_level_trailing_comma(inner):
        # a sole argument is split, not exploded
        out.extend(_wrap(parts[0], inner_indent, inside=True))
    else:
        for part in parts:
            out.extend(_wrap(part + ",", inner_indent, inside=True))
    out.append(indent + closing)
    return out


def _split_assignment(line: str) -> tuple[str | None, str]:
    """(``x``, ``a.b(c)``) for ``x = a.b(c)``; (None, line) when it is no simple assignment."""
    head, sep, rest = line.partition(" = ")
    if sep and head.isidentifier():
        return head, rest
    return None, line


def _fluent_pieces(expr: str) -> list[str]:
    """``a.b(c).d(e)`` as [``a.b(c)``, ``.d(e)``]: split before each top-level dot that
    follows a closing bracket (where ``ruff format`` breaks a call chain)."""
    pieces, depth, start, quote = [], 0, 0, None
    for i, ch in enumerate(expr):
        if quote:
            if ch == quote:
                quote = None
            continue
        if ch in "\"'":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "." and depth == 0 and i > 0 and expr[i - 1] in ")]":
            pieces.append(expr[start:i])
            start = i
    pieces.append(expr[start:])
    return pieces


def _split_outer_call(line: str) -> tuple[str, str, str, str]:
    """Split ``a.b(x, y)`` into (``a.b``, ``(``, ``x, y``, ``)``) at the last top-level
    bracket pair (a call or a list literal)."""
    if not line.endswith((")", "]")):
        return line, "", "", ""
    depth = 0
    for i in range(len(line) - 1, -1, -1):
        ch = line[i]
        if ch in ")]":
            depth += 1
        elif ch in "([":
            depth -= 1
            if depth == 0:
                if ch == "[" or i > 0:
                    return line[:i], ch, line[i + 1 : -1], line[-1]
                return line, "", "", ""
    return line, "", "", ""


def _split_top_level(text: str) -> list[str]:
    parts, depth, cur, quote = [], 0, [], None
    for ch in text:
        if quote:
            cur.append(ch)
            if ch == quote:
                quote = None
            continue
        if ch in "\"'":
            quote = ch
        elif ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append("".join(cur).strip())
            cur = []
            continue
        cur.append(ch)
    if "".join(cur).strip():
        parts.append("".join(cur).strip())
    return parts


def _top_level_trailing_comma(text: str) -> bool:
    return text.rstrip().endswith(",")


# ------------------------------------------------------------------------------ public API


def generate_body(
    program: Program, root: str = "model", line_only: bool = False
) -> tuple[list[str], bool]:
    """The statements that replay the build on ``root`` (unwrapped), and whether math is used."""
    steps = _steps(program)
    final_rids = {t.record.rid for t in program.trace.tensors if t.record is not None}
    kept, residual = _plan(steps, final_rids)
    _explainable(program, kept, residual)
    gen = _Generator(program, kept, root, line_only)
    try:
        prelude = gen.prelude(residual)
        body = prelude + ([""] if prelude and kept else []) + gen.run()
    except InitAuditError:
        raise
    except Exception as exc:  # a gap in the generator: a failed audit, never an internal error
        raise CodegenError(f"cannot generate the code ({type(exc).__name__}: {exc})") from exc
    return body, gen.r.uses_math


def wrap_lines(lines: list[str], indent: str, outer: int = 0) -> list[str]:
    """Indent statements and wrap long calls the way ``ruff format`` does.

    ``outer`` is extra indentation the lines will get later (they wrap as if it were there).
    """
    pad = " " * outer
    out: list[str] = []
    for line in lines:
        out.extend(w[outer:] for w in _wrap(line, pad + indent)) if line else out.append("")
    return out


def generate(program: Program, *, unroll: bool = False) -> str:
    """The source of a standalone module whose ``initialize(model)`` reproduces the build.

    Consecutive blocks of a container that get the same init up to their index are written
    as one loop (:mod:`initaudit.codegen_fold`), unless ``unroll``.
    """
    body, uses_math = generate_body(program)
    if not unroll:
        body, _ = fold(body)
    imports = []
    if uses_math:
        imports.append("import math\n")
    third = ["import torch", "from torch import nn"]
    paragraph = (
        f"After ``torch.manual_seed(SEED)``, ``initialize(model)`` sets every parameter and "
        f"buffer of a {program.label} to exactly the values that "
        f"``torch.manual_seed({program.seed})`` followed by building it gives with torch "
        f"{torch.__version__.split('+')[0]}, and leaves torch's global RNG in the same state. "
        "It replays every draw of the original build in order (thrown-away draws too) and "
        "does not rely on torch's module defaults. Re-verify after a torch upgrade:"
    )
    head = (
        f'"""Explicit initialization for {program.label}, generated by initaudit {__version__}.\n'
        "\n" + "\n".join(textwrap.wrap(paragraph, LINE_LENGTH, break_long_words=False)) + "\n\n"
        f"    initaudit explicit {program.spec or 'TARGET'} --check THIS_FILE.py\n"
        '"""\n'
    )
    out = [head, "\n"]
    if imports:
        out.extend(imports)
        out.append("\n")
    out.append("\n".join(third) + "\n")
    out.append("\n")
    out.append(f"SEED = {program.seed}\n")
    out.append("\n\n")
    out.append("def initialize(model: nn.Module) -> None:\n")
    out.append(
        '    """Set every parameter and buffer; call right after torch.manual_seed(SEED)."""\n'
    )
    out.append("    with torch.no_grad():\n")
    if not body:
        body = ["pass"]
    for line in body:
        if not line:
            out.append("\n")
            continue
        text = line.lstrip(" ")  # a loop's body carries its own extra indentation
        for wrapped in _wrap(text, "        " + " " * (len(line) - len(text))):
            out.append(wrapped + "\n")
    return "".join(out)


# ------------------------------------------------------------------------------ verification


def poison(model: nn.Module, recurse: bool = True) -> None:
    """Fill every parameter and buffer with NaN (integers: 12345) so unset values show."""
    with torch.no_grad():
        for t in list(model.parameters(recurse=recurse)) + list(model.buffers(recurse=recurse)):
            if isinstance(t, nn.parameter.UninitializedTensorMixin):
                continue
            if t.is_floating_point() or t.is_complex():
                t.fill_(float("nan"))
            elif t.dtype == torch.bool:
                t.fill_(True)
            else:
                t.fill_(12345)


@contextmanager
def defaults_disabled() -> Iterator[int]:
    """Replace every torch module's ``reset_parameters``/``_reset_parameters`` by a NaN fill."""
    patched: list[tuple[type, str, Any]] = []

    def nan_fill(self: nn.Module, *args: Any, **kwargs: Any) -> None:
        poison(self, recurse=False)

    seen: set[type] = set()
    for mod_name, mod in list(sys.modules.items()):
        if not mod_name.startswith("torch.nn.modules") or mod is None:
            continue
        for obj in list(vars(mod).values()):
            if not (isinstance(obj, type) and issubclass(obj, nn.Module)) or obj in seen:
                continue
            seen.add(obj)
            for attr in ("reset_parameters", "_reset_parameters"):
                if attr in obj.__dict__:
                    patched.append((obj, attr, obj.__dict__[attr]))
                    setattr(obj, attr, nan_fill)
    try:
        yield len(patched)
    finally:
        for cls, attr, fn in reversed(patched):
            setattr(cls, attr, fn)


def load_initializer(path: Path) -> Callable[[nn.Module], None]:
    """Import a generated file and return its ``initialize`` function."""
    name = f"initaudit_explicit_{abs(hash(str(path)))}_{os.getpid()}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise UsageError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise UsageError(f"importing {path} raised {type(exc).__name__}: {exc}") from exc
    fn = getattr(module, "initialize", None)
    if not callable(fn):
        raise UsageError(f"{path} defines no initialize(model) function")
    return fn


def _bits(t: torch.Tensor) -> torch.Tensor:
    t = t.detach().cpu().contiguous().reshape(-1)
    return t.view(torch.uint8) if t.numel() else t


def compare_model(
    reference: nn.Module, model: nn.Module, rng_expected: str | None = None
) -> list[str]:
    """Names of tensors that differ bitwise (and ``<rng state>``), empty when identical."""
    ref = {n: t for n, _, t, _ in named_tensors(reference)}
    got = {n: t for n, _, t, _ in named_tensors(model)}
    bad = []
    for name, a in ref.items():
        b = got.get(name)
        if b is None:
            bad.append(f"{name} (missing)")
        elif a.shape != b.shape or a.dtype != b.dtype:
            bad.append(f"{name} (shape/dtype {tuple(b.shape)} {b.dtype})")
        elif not torch.equal(_bits(a), _bits(b)):
            bad.append(name)
    for name in got:
        if name not in ref:
            bad.append(f"{name} (unexpected)")
    if rng_expected is not None and rng_digest() != rng_expected:
        bad.append("<torch RNG state after initialize>")
    return bad


@dataclass
class Verification:
    """What :func:`verify` compared and found."""

    tensors: int
    mismatches: dict[str, list[str]]
    modes: list[str]

    @property
    def ok(self) -> bool:
        """True when every mode matched bitwise."""
        return not any(self.mismatches.values())


def verify(
    program: Program,
    initialize: Callable[[nn.Module], None],
    build: Callable[[], nn.Module],
    example_input: tuple[int, ...] | None = None,
) -> Verification:
    """Build fresh models (normally, and with torch defaults NaN-filled), initialize, compare."""
    reference = program.trace.model
    builder = builder_for(build, example_input)
    mismatches: dict[str, list[str]] = {}
    saved = torch.get_rng_state()
    try:
        torch.manual_seed(program.seed + 7919)
        model = builder()
        torch.manual_seed(program.seed)
        initialize(model)
        mismatches["torch defaults on"] = compare_model(reference, model, program.trace.rng_after)
        with defaults_disabled():
            torch.manual_seed(program.seed + 104729)
            model = builder()
        poison(model)
        torch.manual_seed(program.seed)
        initialize(model)
        mismatches["torch defaults replaced by NaN"] = compare_model(
            reference, model, program.trace.rng_after
        )
    finally:
        torch.set_rng_state(saved)
    return Verification(
        tensors=len(named_tensors(reference)),
        mismatches=mismatches,
        modes=list(mismatches),
    )


def verify_source(
    program: Program,
    source: str,
    build: Callable[[], nn.Module],
    example_input: tuple[int, ...] | None = None,
) -> Verification:
    """Write ``source`` to a temporary file, import it and :func:`verify` it."""
    with tempfile.TemporaryDirectory(prefix="initaudit-explicit-") as tmp:
        path = Path(tmp) / _GENERATED_NAME
        path.write_text(source, encoding="utf-8")
        fn = load_initializer(path)
        return verify(program, fn, build, example_input)


def failure_message(v: Verification, what: str) -> str:
    """One line naming the tensors that differ in each mode."""
    parts = []
    for mode, bad in v.mismatches.items():
        if bad:
            shown = ", ".join(bad[:8]) + (f" and {len(bad) - 8} more" if len(bad) > 8 else "")
            parts.append(f"{mode}: {shown}")
    return f"{what} does not reproduce the build bit for bit ({'; '.join(parts)})"


# ------------------------------------------------------------------------------ command


@dataclass
class ExplicitResult:
    """What ``initaudit explicit`` did: the code, where it went and what verification found."""

    target: str
    seed: int
    source: str
    tensors: int
    statements: int
    verification: Verification
    written: str | None = None
    checked: str | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-compatible summary (the code itself only when nothing was written)."""
        out: dict[str, Any] = {
            "target": self.target,
            "seed": self.seed,
            "torch": torch.__version__,
            "tensors": self.tensors,
            "statements": self.statements,
            "verified": self.verification.ok,
            "modes": self.verification.modes,
            "mismatches": self.verification.mismatches,
        }
        if self.written:
            out["written"] = self.written
        if self.checked:
            out["checked"] = self.checked
        elif not self.written:
            out["source"] = self.source
        return out


def _statements(source: str) -> int:
    """Number of statements in ``initialize``'s body (0 when it cannot be parsed)."""
    import ast

    try:
        tree = ast.parse(source)
    except SyntaxError:
        return 0
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "initialize":
            return sum(1 for n in ast.walk(node) if isinstance(n, (ast.Expr, ast.Assign))) - 1
    return 0


def explicit(
    target: Any,
    seed: int = 0,
    *,
    out: Path | None = None,
    check: Path | None = None,
    example_input: tuple[int, ...] | None = None,
    unroll: bool = False,
) -> ExplicitResult:
    """Generate and verify explicit init code for a target, or re-verify an existing file.

    Repeated blocks become loops unless ``unroll``; folded code that does not verify falls back
    to the unrolled form (which must verify).
    """

    program = trace_program(
        target.build, seed, label=target.name, spec=target.spec, example_input=example_input
    )
    tensors = len(named_tensors(program.trace.model))
    if check is not None:
        if not check.is_file():
            raise UsageError(f"--check {check}: no such file")
        fn = load_initializer(check)
        try:
            v = verify(program, fn, target.build, example_input)
        except Exception as exc:
            raise AuditFailure(
                f"{check}: initialize(model) raised {type(exc).__name__}: {exc}"
            ) from exc
        source = check.read_text(encoding="utf-8")
        if not v.ok:
            raise AuditFailure(failure_message(v, str(check)))
        return ExplicitResult(
            target.spec, seed, source, tensors, _statements(source), v, checked=str(check)
        )
    source = generate(program, unroll=unroll)
    v = None
    if not unroll and source != generate(program, unroll=True):
        try:  # the folded code must verify as well as the unrolled would; else unroll
            v = verify_source(program, source, target.build, example_input)
        except Exception:
            v = None
        if v is None or not v.ok:
            source, v = generate(program, unroll=True), None
    if v is None:
        try:
            v = verify_source(program, source, target.build, example_input)
        except Exception as exc:
            raise AuditFailure(
                f"the generated code failed to run{_failed_at(exc, source)} "
                f"({type(exc).__name__}: {exc}); nothing written"
            ) from exc
    if not v.ok:
        raise AuditFailure(failure_message(v, "the generated code") + "; nothing written")
    if out is not None:
        atomic_write(out, lambda tmp: tmp.write_text(source, encoding="utf-8"))
    return ExplicitResult(
        target.spec,
        seed,
        source,
        tensors,
        _statements(source),
        v,
        written=str(out) if out else None,
    )


def _failed_at(exc: BaseException, source: str) -> str:
    """`` at line N (`statement`, setting TENSOR)`` for the generated line that raised."""
    import traceback

    lineno = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename.endswith(os.sep + _GENERATED_NAME):
            lineno = frame.lineno
    if not lineno:
        return ""
    lines = source.splitlines()
    stmt = lines[lineno - 1].strip() if lineno <= len(lines) else ""
    # the group comment above it: ``# features.1.1 (BatchNorm2d)``
    groups = (re.fullmatch(r"# ([\w.]+ \([\w.]+\))", ln.strip()) for ln in lines[: lineno - 1])
    header = [m.group(1) for m in groups if m]
    return f" at line {lineno}: `{stmt}`" + (f", setting {header[-1]}" if header else "")


def summary_line(result: ExplicitResult) -> str:
    """One human line on what was generated or checked and how it was verified."""
    if result.checked:
        head = f"{result.checked} reproduces"
    elif result.written:
        head = f"wrote {result.written} ({result.statements} statements): reproduces"
    else:
        head = f"the code above ({result.statements} statements) reproduces"
    modes = " and ".join(result.verification.modes)
    return (
        f"{head} all {result.tensors} tensors of {result.target} (seed {result.seed}) bit for "
        f"bit and the RNG state after them; verified with torch {torch.__version__} "
        f"({modes})"
    )
