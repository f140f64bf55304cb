"""Trace how every parameter and buffer of a model gets its initial value.

A :class:`TorchDispatchMode` sees every ATen operation run while the model is built. Each
operation that creates or writes a storage becomes an :class:`Event` on that storage's
:class:`StorageRecord`, with the readable call it came from (the outermost ``torch.nn.init``
function on the Python stack, with its resolved arguments), its origin (torch's own module
defaults or user code at file:line) and, for random operations, a digest of the generator state
before the draw. Records are bound to the model's final tensor names by storage identity after
the build, never by ``named_parameters()`` order. Tracing only observes: it calls every
operation unchanged, so the values a build produces are the same with or without it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from initaudit.errors import TargetError
from initaudit.target import lazy_tensor_names
from initaudit.trace.callsite import CallSite, callsite, jsonable
from initaudit.trace.context import build_context, generator_for, rng_digest, seeded, young_gc
from initaudit.trace.events import Event, StorageRecord, TensorTrace, Trace
from initaudit.trace.naming import named_tensors, view_key
from initaudit.trace.record import capture_externals, record_op, redirect_to_meta, run_recorded

try:  # torch >= 2.0
    from torch.multiprocessing.reductions import StorageWeakRef
except ImportError:  # pragma: no cover - very old torch
    StorageWeakRef = None  # type: ignore[assignment,misc]

_ALLOC_OPS = {"empty", "empty_strided", "empty_like", "new_empty", "new_empty_strided"}
_COPY_OPS = {"copy_", "set_"}
#: Schema arguments never listed among an op's readable arguments.
_NOT_ARGS = {"self", "out", "layout", "pin_memory", "memory_format"}
_Tensor = torch.Tensor


class _OpInfo:
    """What the tracer needs to know of one ATen op, read from its schema once per process:
    reading ``func._schema`` builds Python objects on every access."""

    __slots__ = ("alloc", "arg_names", "copy", "op", "random", "written")

    def __init__(self, func: Any) -> None:
        schema = func._schema
        self.random = torch.Tag.nondeterministic_seeded in func.tags
        #: ``(position, name)`` of the arguments the op writes in place (its schema's ``a!``).
        self.written = tuple(
            (i, arg.name)
            for i, arg in enumerate(schema.arguments)
            if arg.alias_info is not None and arg.alias_info.is_write
        )
        self.op = schema.name.split("::", 1)[-1]
        self.arg_names = tuple(arg.name for arg in schema.arguments)
        self.alloc = self.op in _ALLOC_OPS
        self.copy = self.op in _COPY_OPS


_OPS: dict[Any, _OpInfo] = {}


def _op_info(func: Any) -> _OpInfo:
    info = _OPS.get(func)
    if info is None:
        info = _OPS[func] = _OpInfo(func)
    return info


def _flat_tensors(items: Any, out: list[torch.Tensor]) -> None:
    """Append the tensors of ``items`` (nested lists and tuples too) to ``out``, depth first."""
    for x in items:
        if isinstance(x, _Tensor):
            out.append(x)
        elif isinstance(x, (list, tuple)):
            _flat_tensors(x, out)


if StorageWeakRef is not None:
    _expired = torch.UntypedStorage._expired  # what StorageWeakRef.expired calls


def _storage_key(t: torch.Tensor) -> int | None:
    try:
        return t.untyped_storage()._cdata
    except (RuntimeError, NotImplementedError):
        return None


def leaves(obj: Any) -> Iterator[torch.Tensor]:
    """The tensors in an argument: itself, or those nested in lists and tuples."""
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for item in obj:
            yield from leaves(item)


def _aten_args(info: _OpInfo, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    n = len(args)
    for i, name in enumerate(info.arg_names):
        if i < n:
            value = args[i]
        elif name in kwargs:
            value = kwargs[name]
        else:
            continue
        if value is None or name in _NOT_ARGS or isinstance(value, _Tensor):
            continue
        out[name] = jsonable(value)
    return out


class InitTracer(TorchDispatchMode):
    """Records every storage-creating or storage-writing ATen op, with its Python call site."""

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        # TorchDispatchMode wraps __torch_dispatch__ in torch._disable_dynamo by default, which
        # imports torch._dynamo (~1.6 s, as long as torch itself) at the first traced op. Model
        # construction runs eagerly, never under torch.compile, so the wrapper guards nothing
        # here; this is the opt-out torch documents on the hook (releases without the hook
        # ignore it).
        return False

    def __init__(
        self, on_event: Callable[[int], None] | None = None, *, record: bool = False
    ) -> None:
        super().__init__()
        #: With ``record=True``: every op that created or wrote a storage, replayable (see
        #: :mod:`initaudit.trace.meta`); None (and free) by default.
        self.program: list[Any] | None = [] if record else None
        self.external_values: dict[int, Any] = {}
        self.records: dict[int, StorageRecord] = {}
        self._weakrefs: dict[int, Any] = {}
        self.events: list[Event] = []
        self._seq = 0
        self._call_frame: Any = None
        self._call_id = 0
        self._on_event = on_event
        self.private_generators = False
        #: Source files of the user and of libraries seen on the stack of traced ops.
        self.files: set[str] = set()

    # -- storage identity -------------------------------------------------------------------
    def _key(self, t: torch.Tensor) -> int | None:
        try:
            storage = t.untyped_storage()
        except (RuntimeError, NotImplementedError):
            return None
        return storage._cdata

    def _lookup(self, t: torch.Tensor) -> StorageRecord | None:
        key = self._key(t)
        if key is None:
            return None
        rec = self.records.get(key)
        if rec is not None:
            ref = self._weakrefs.get(key)
            if ref is not None and ref.expired():
                return None
        return rec

    def _new_record(self, t: torch.Tensor) -> StorageRecord | None:
        try:
            storage = t.untyped_storage()
        except (RuntimeError, NotImplementedError):
            return None
        key = storage._cdata
        rec = StorageRecord(rid=len(self._weakrefs) + 1, nbytes=storage.nbytes())
        self.records[key] = rec
        if StorageWeakRef is not None:
            # Holding a weak reference keeps the StorageImpl's address from being reused, so
            # ``_cdata`` identifies a storage for the whole trace.
            self._weakrefs[key] = StorageWeakRef(storage)
        else:  # pragma: no cover
            self._weakrefs[key] = None
        return rec

    def record_for(self, t: torch.Tensor) -> StorageRecord | None:
        """The live record of ``t``'s storage, if the trace saw it."""
        return self._lookup(t)

    # -- dispatch ---------------------------------------------------------------------------
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[override]
        if not kwargs:
            kwargs = {}
        info = _OPS.get(func) or _op_info(func)
        program = self.program
        if program is not None:
            kwargs = redirect_to_meta(func, args, kwargs)
        rng = rng_before = None
        if info.random:
            gen = kwargs.get("generator")
            if gen is not None and gen is not generator_for(gen.device):
                rng, rng_before = "private", rng_digest(gen)
                self.private_generators = True
            else:
                device = _op_device(args, kwargs)
                dgen = generator_for(device)
                rng = "global"
                rng_before = (
                    rng_digest(dgen) if dgen is not None and device.type != "meta" else None
                )
        if program is not None:
            capture_externals(self, args, kwargs)
        seq0 = self._seq
        out = func(*args, **kwargs) if program is None else run_recorded(self, func, args, kwargs)
        self._observe(info, args, kwargs, out, rng, rng_before)
        if program is not None and self._seq > seq0:
            record_op(self, func, args, kwargs, out, seq0)
        return out

    def _observe(self, info, args, kwargs, out, rng, rng_before) -> None:
        inputs: list[torch.Tensor] = []
        _flat_tensors(args, inputs)
        if kwargs:
            _flat_tensors(kwargs.values(), inputs)
        records, weakrefs = self.records, self._weakrefs
        keys: list[int | None] = []
        cs = None
        for t in inputs:
            key = _storage_key(t)
            keys.append(key)
            if key is None:
                continue  # no storage: nothing to look up or adopt
            if key in records:
                ref = weakrefs.get(key)
                if ref is None or not _expired(ref.cdata):
                    continue
            # A tensor made outside any traced op (torch.tensor(...), from_numpy, a module
            # global): its value enters the build here.
            rec = self._adopt(t)
            if rec is not None:
                cs = cs or self._site()
                self._emit(rec, info, args, kwargs, cs, "external", None, None, t.numel(), False)
        if isinstance(out, _Tensor):
            fresh = [out] if _storage_key(out) not in keys else []
        elif isinstance(out, (list, tuple)):
            outs: list[torch.Tensor] = []
            _flat_tensors(out, outs)
            input_keys = set(keys)
            fresh = [t for t in outs if _storage_key(t) not in input_keys]
        else:
            fresh = []
        written: list[torch.Tensor] = []
        for i, name in info.written:
            value = args[i] if i < len(args) else kwargs.get(name)
            if isinstance(value, _Tensor):
                written.append(value)
            elif isinstance(value, (list, tuple)):
                _flat_tensors(value, written)
        if not written and not fresh:
            return  # a view, a metadata op, or a read producing nothing new
        for target in written:
            tkey = _storage_key(target)
            rec = records.get(tkey) if tkey is not None else None
            if rec is not None:
                ref = weakrefs.get(tkey)
                if ref is not None and _expired(ref.cdata):
                    rec = None
            rec = rec or self._adopt(target)
            if rec is None:
                continue
            cs = cs or self._site(target)
            sources = [t for t, k in zip(inputs, keys, strict=True) if k != tkey]
            for src in sources:
                parent = self._lookup(src) or self._adopt(src)
                if parent is not None and parent is not rec:
                    rec.parents.append((parent, self._seq))
            kind = "copy" if info.copy or (sources and not rng) else "write"
            numel = target.numel()
            partial = numel * target.element_size() < rec.nbytes
            self._emit(rec, info, args, kwargs, cs, kind, rng, rng_before, numel, partial)
        for t in fresh:
            rec = self._new_record(t)
            if rec is None:
                continue
            cs = cs or self._site()
            for src in inputs:
                parent = self._lookup(src) or self._adopt(src)
                if parent is not None:
                    rec.parents.append((parent, self._seq))
            kind = "alloc" if info.alloc else ("copy" if inputs else "create")
            self._emit(rec, info, args, kwargs, cs, kind, rng, rng_before, t.numel(), False)

    def _adopt(self, t: torch.Tensor) -> StorageRecord | None:
        rec = self._new_record(t)
        if rec is not None:
            rec.external = True
        return rec

    def _site(self, target: torch.Tensor | None = None) -> CallSite:
        cs = callsite(sys._getframe(3), target, self.files)
        if cs.frame is not None:
            if cs.frame is not self._call_frame:
                self._call_frame = cs.frame
                self._call_id += 1
        else:
            self._call_frame = None
            self._call_id += 1
        return cs

    def _emit(self, rec, info, args, kwargs, cs, kind, rng, rng_before, numel, partial) -> None:
        op = info.op
        call = cs.call
        ev = Event(
            self._seq,
            op,
            call or op,
            cs.args if call else _aten_args(info, args, kwargs),
            self._call_id,
            cs.origin,
            cs.site,
            cs.scope,
            kind,
            rng,
            rng_before,
            numel,
            partial,
            cs.library,
            cs.function,
            cs.lib_site,
        )
        rec.events.append(ev)
        self.events.append(ev)
        self._seq += 1
        if self._on_event is not None:
            self._on_event(self._seq)


def _op_device(args: tuple[Any, ...], kwargs: dict[str, Any]) -> torch.device:
    dev = kwargs.get("device")
    if dev is not None:
        return torch.device(dev)
    if args and isinstance(args[0], _Tensor):
        return args[0].device
    for t in leaves(list(args)):
        return t.device
    return torch.device("cpu")



def trace_build(
    build: Callable[[], nn.Module],
    seed: int = 0,
    *,
    device: str | None = None,
    dtype: torch.dtype | None = None,
    on_event: Callable[[int], None] | None = None,
    tracer: InitTracer | None = None,
) -> Trace:
    """Seed, build the model under the tracer, and bind every event to the final tensor names."""
    tracer = tracer if tracer is not None else InitTracer(on_event=on_event)
    with young_gc():
        return _bind(tracer, build, seed, device, dtype)


def _bind(
    tracer: InitTracer,
    build: Callable[[], nn.Module],
    seed: int,
    device: str | None,
    dtype: torch.dtype | None,
) -> Trace:
    with seeded(seed) as drew, build_context(device, dtype):
        with tracer:
            model = build()
        gen = generator_for(torch.device(device) if device else None)
        rng_after = rng_digest(gen) if gen is not None else rng_digest()
    lazy = lazy_tensor_names(model)
    if lazy:
        raise TargetError(
            f"the model has lazy modules whose tensors only exist after a first forward: "
            f"{', '.join(lazy[:4])}{' …' if len(lazy) > 4 else ''}",
            hint="pass --example-input SHAPE (e.g. --example-input 2,3) to run one forward "
            "on zeros of that shape during the build",
        )
    tensors: list[TensorTrace] = []
    primary: dict[tuple[Any, ...], TensorTrace] = {}
    for name, kind, t, persistent in named_tensors(model):
        key = view_key(t)
        alias_of = primary.get(key)
        if alias_of is not None and t.numel() > 0:
            alias_of.aliases.append(name)
            continue
        tt = TensorTrace(
            name=name,
            kind=kind,
            tensor=t.detach(),
            record=tracer.record_for(t),
            persistent=persistent,
        )
        primary.setdefault(key, tt)
        tensors.append(tt)
    tensors.sort(key=lambda x: x.order_key)
    return Trace(
        model=model,
        tensors=tensors,
        events=tracer.events,
        rng_after=rng_after,
        drew_from={k: bool(v) for k, v in drew.items()},
        private_generators=tracer.private_generators,
        files=set(tracer.files),
    )
