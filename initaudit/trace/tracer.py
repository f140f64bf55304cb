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

import functools
import hashlib
import inspect
import math
import os
import random
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from initaudit.errors import TargetError
from initaudit.libraries import FILE_CLASS, SELF, STDLIB, TORCH, USER, classify_file
from initaudit.recipes import INIT_FUNCTIONS
from initaudit.target import lazy_tensor_names
from initaudit.tensors import tensor_bytes
from initaudit.trace.record import capture_externals, record_op, redirect_to_meta, run_recorded

try:  # torch >= 2.0
    from torch.multiprocessing.reductions import StorageWeakRef
except ImportError:  # pragma: no cover - very old torch
    StorageWeakRef = None  # type: ignore[assignment,misc]

_TORCH_DIR = os.path.dirname(torch.__file__) + os.sep
_TORCH_MODULES_DIR = os.path.join(_TORCH_DIR, "nn", "modules") + os.sep

_INIT_CODES: dict[Any, str] = {
    getattr(nn.init, n).__code__: n for n in INIT_FUNCTIONS if hasattr(nn.init, n)
}
#: Local variables of init functions worth keeping as resolved arguments (fan, bound, …).
_DERIVED_LOCALS = ("fan", "fan_in", "fan_out", "gain", "std", "bound")

_ALLOC_OPS = {"empty", "empty_strided", "empty_like", "new_empty", "new_empty_strided"}
_VIEW_TAG = None  # computed lazily: ops whose outputs alias their inputs carry alias_info


def rng_digest(generator: torch.Generator | None = None) -> str:
    """A short digest of a generator's state (the global CPU generator by default)."""
    gen = generator if generator is not None else torch.default_generator
    state = gen.get_state()  # a contiguous CPU uint8 tensor
    try:
        raw: Any = state.numpy()  # zero-copy; this runs once per random op of the build
    except RuntimeError:  # torch before 2.3 under NumPy 2: the copying path
        raw = tensor_bytes(state)
    return hashlib.blake2b(raw, digest_size=8).hexdigest()


def _generator_for(device: torch.device | None) -> torch.Generator | None:
    if device is None or device.type == "cpu" or device.type == "meta":
        return torch.default_generator
    if device.type == "cuda":
        idx = device.index if device.index is not None else torch.cuda.current_device()
        return torch.cuda.default_generators[idx]
    return None


@dataclass
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


@functools.cache
def _is_random(func: Any) -> bool:
    return torch.Tag.nondeterministic_seeded in func.tags


@functools.cache
def _written_args(func: Any) -> tuple[tuple[int, str], ...]:
    """``(position, name)`` of the arguments an op writes in place (its schema's ``a!``).

    Cached per op: reading ``func._schema.arguments`` builds Python objects on every access,
    and the tracer asks for every op it sees.
    """
    return tuple(
        (i, arg.name)
        for i, arg in enumerate(func._schema.arguments)
        if arg.alias_info is not None and arg.alias_info.is_write
    )


def _leaves(obj: Any) -> Iterator[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for item in obj:
            yield from _leaves(item)


def jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, torch.Tensor):
        return f"<tensor {tuple(value.shape)}>"
    if isinstance(value, (torch.dtype, torch.device, torch.layout, torch.memory_format)):
        return str(value)
    if isinstance(value, torch.Generator):
        return "<generator>"
    if isinstance(value, (torch.UntypedStorage, torch.TypedStorage)):
        return f"<storage {value.nbytes()} bytes>"  # its repr lists every byte
    return repr(value)


class _CallSite:
    __slots__ = ("args", "call", "frame", "function", "lib_site", "library", "origin", "scope", "site")

    def __init__(self) -> None:
        self.call: str | None = None
        self.args: dict[str, Any] = {}
        self.frame: Any = None
        self.origin = "user"
        self.site: str | None = None
        self.scope: str | None = None
        self.library: str | None = None
        self.function: str | None = None
        self.lib_site: str | None = None



def _qualname(code: Any) -> str:
    return getattr(code, "co_qualname", code.co_name)  # co_qualname: Python >= 3.11


def _writes_to(frame: Any, key: int | None) -> bool:
    """Whether a frame's first argument is a tensor on the storage ``key`` (a helper's target)."""
    code = frame.f_code
    if key is None or not (code.co_argcount or code.co_posonlyargcount):
        return False
    first = frame.f_locals.get(code.co_varnames[0])
    if not isinstance(first, torch.Tensor):
        return False
    try:
        return first.untyped_storage()._cdata == key
    except (RuntimeError, NotImplementedError):
        return False


def callsite(start: Any, target: torch.Tensor | None = None, files: set[str] | None = None) -> _CallSite:
    """Walk the Python stack from ``start`` outwards up to the first user frame.

    The innermost frame that is not torch's plumbing decides the origin: one in
    ``torch/nn/modules`` makes it torch's ``default``, one in an installed distribution makes it
    ``library`` (the library's function outside its init helpers, and that frame's
    ``file:line``), a user file makes it ``user``. A default built by library code also names
    that library function (which module it built, not who chose the init). Library helpers (contiguous library frames
    whose first argument is the written tensor) are the readable call when no
    ``torch.nn.init`` function is on the stack.
    """
    cs = _CallSite()
    frame = start
    classify_cache = FILE_CLASS
    decided = False
    helper: Any = None  # the outermost library helper frame so far
    in_helpers = True
    key: int | None = None
    if target is not None:
        try:
            key = target.untyped_storage()._cdata
        except (RuntimeError, NotImplementedError):
            key = None
    while frame is not None:
        code = frame.f_code
        name = _INIT_CODES.get(code)
        if name is not None:
            cs.call, cs.frame = name, frame
        fname = code.co_filename
        cls = classify_cache.get(fname)
        if cls is None:
            cls = classify_cache[fname] = classify_file(fname)
        if cls is TORCH:
            if not decided and fname.startswith(_TORCH_MODULES_DIR):
                cs.origin = "default"
                decided = True
                owner = frame.f_locals.get("self")
                if isinstance(owner, nn.Module):
                    cs.scope = f"{type(owner).__name__}.{code.co_name}"
        elif cls is USER:
            cs.site = f"{fname}:{frame.f_lineno}"
            if files is not None:
                files.add(fname)
            break
        elif cls is SELF:
            if decided:
                break  # back in initaudit (the target's builder): past the build's own code
        elif cls is not STDLIB:  # a Library
            if files is not None:
                files.add(fname)
            if not decided:
                decided = True
                cs.origin = "library"
            if cs.function is None:
                if cs.origin == "library" and in_helpers and _writes_to(frame, key):
                    helper = frame
                else:  # the library's function (for a torch default: the code that built it)
                    in_helpers = False
                    cs.library = cls.name
                    cs.function = _qualname(code)
                    cs.lib_site = f"{cls.path}:{frame.f_lineno}"
        frame = frame.f_back
    if helper is not None:
        lib = classify_cache[helper.f_code.co_filename]
        if cs.function is None:  # user code called the library's helper itself
            cs.origin = "user"
            cs.library = lib.name
            cs.function = _qualname(helper.f_code)
            cs.lib_site = f"{lib.path}:{helper.f_lineno}"
        if cs.frame is None:  # no torch.nn.init function: the helper is the readable call
            module = helper.f_globals.get("__name__", "")
            cs.call = f"{module}.{_qualname(helper.f_code)}" if module else _qualname(helper.f_code)
            cs.frame = helper
            cs.args = _init_args(helper, skip_first=True)
            return cs
    if cs.frame is not None:
        cs.args = _init_args(cs.frame)
    return cs



def _init_args(frame: Any, skip_first: bool = False) -> dict[str, Any]:
    code = frame.f_code
    n = code.co_argcount + code.co_kwonlyargcount
    names = code.co_varnames[1 if skip_first else 0 : n]
    f_locals = frame.f_locals
    out = {k: jsonable(f_locals[k]) for k in names if k != "tensor" and k in f_locals}
    if skip_first:
        return {k: v for k, v in out.items() if v is not None}
    for k in _DERIVED_LOCALS:
        if k in f_locals and k not in out and isinstance(f_locals[k], (int, float)):
            out[k] = jsonable(f_locals[k])
    if out.get("generator") is None:
        out.pop("generator", None)
    return out


def _aten_args(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for i, name in enumerate(_arg_names(func)):
        if i < len(args):
            value = args[i]
        elif name in kwargs:
            value = kwargs[name]
        else:
            continue
        if isinstance(value, torch.Tensor) or name in ("self", "out"):
            continue
        if value is None or name in ("layout", "pin_memory", "memory_format"):
            continue
        out[name] = jsonable(value)
    return out


@functools.cache
def _arg_names(func: Any) -> tuple[str, ...]:
    return tuple(arg.name for arg in func._schema.arguments)


@functools.cache
def _short_op(func: Any) -> str:
    return func._schema.name.split("::", 1)[-1]


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
        #: :mod:`initaudit.stream`); None (and free) by default.
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
        key = self._key(t)
        if key is None:
            return None
        storage = t.untyped_storage()
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
        kwargs = kwargs or {}
        if self.program is not None:

            kwargs = redirect_to_meta(func, args, kwargs)
        random_op = _is_random(func)
        rng = rng_before = None
        if random_op:
            gen = kwargs.get("generator")
            if gen is not None and gen is not _generator_for(gen.device):
                rng, rng_before = "private", rng_digest(gen)
                self.private_generators = True
            else:
                device = _op_device(args, kwargs)
                dgen = _generator_for(device)
                rng = "global"
                rng_before = (
                    rng_digest(dgen) if dgen is not None and device.type != "meta" else None
                )
        if self.program is not None:

            capture_externals(self, args, kwargs)
        seq0 = self._seq
        out = func(*args, **kwargs) if self.program is None else run_recorded(self, func, args, kwargs)
        self._observe(func, args, kwargs, out, rng, rng_before)
        if self.program is not None and self._seq > seq0:

            record_op(self, func, args, kwargs, out, seq0)
        return out

    def _observe(self, func, args, kwargs, out, rng, rng_before) -> None:
        written: list[torch.Tensor] = []
        for i, name in _written_args(func):
            value = args[i] if i < len(args) else kwargs.get(name)
            written.extend(_leaves(value))
        inputs = list(_leaves(list(args) + list(kwargs.values())))
        cs = None
        for t in inputs:
            if self._lookup(t) is None:
                # A tensor made outside any traced op (torch.tensor(...), from_numpy, a module
                # global): its value enters the build here.
                rec = self._adopt(t)
                if rec is not None:
                    cs = cs or self._site()
                    self._emit(
                        rec, func, args, kwargs, cs, "external", None, None, t.numel(), False
                    )
        input_keys = {self._key(t) for t in inputs}
        fresh = [t for t in _leaves(out) if self._key(t) not in input_keys]
        if not written and not fresh:
            return  # a view, a metadata op, or a read producing nothing new
        op = _short_op(func)
        for target in written:
            rec = self._lookup(target) or self._adopt(target)
            if rec is None:
                continue
            cs = cs or self._site(target)
            sources = [t for t in inputs if self._key(t) != self._key(target)]
            for src in sources:
                parent = self._lookup(src) or self._adopt(src)
                if parent is not None and parent is not rec:
                    rec.parents.append((parent, self._seq))
            kind = "copy" if op in ("copy_", "set_") or (sources and not rng) else "write"
            numel = target.numel()
            partial = numel * target.element_size() < rec.nbytes
            self._emit(rec, func, args, kwargs, cs, kind, rng, rng_before, numel, partial)
        for t in fresh:
            rec = self._new_record(t)
            if rec is None:
                continue
            cs = cs or self._site()
            for src in inputs:
                parent = self._lookup(src) or self._adopt(src)
                if parent is not None:
                    rec.parents.append((parent, self._seq))
            kind = "alloc" if op in _ALLOC_OPS else ("copy" if inputs else "create")
            self._emit(rec, func, args, kwargs, cs, kind, rng, rng_before, t.numel(), False)

    def _adopt(self, t: torch.Tensor) -> StorageRecord | None:
        rec = self._new_record(t)
        if rec is not None:
            rec.external = True
        return rec

    def _site(self, target: torch.Tensor | None = None) -> _CallSite:
        cs = callsite(sys._getframe(3), target, self.files)
        if cs.frame is not None:
            if cs.frame is not self._call_frame:
                self._call_frame = cs.frame
                self._call_id += 1
        else:
            self._call_frame = None
            self._call_id += 1
        return cs

    def _emit(self, rec, func, args, kwargs, cs, kind, rng, rng_before, numel, partial) -> None:
        op = _short_op(func)
        ev = Event(
            seq=self._seq,
            op=op,
            call=cs.call or op,
            args=cs.args if cs.call else _aten_args(func, args, kwargs),
            call_id=self._call_id,
            origin=cs.origin,
            site=cs.site,
            scope=cs.scope,
            kind=kind,
            rng=rng,
            rng_before=rng_before,
            numel=numel,
            partial=partial,
            library=cs.library,
            function=cs.function,
            lib_site=cs.lib_site,
        )
        # One random op writing several storages is still one draw: digest only the first.
        rec.events.append(ev)
        self.events.append(ev)
        self._seq += 1
        if self._on_event is not None:
            self._on_event(self._seq)


def _op_device(args: tuple[Any, ...], kwargs: dict[str, Any]) -> torch.device:
    dev = kwargs.get("device")
    if dev is not None:
        return torch.device(dev)
    for t in _leaves(list(args)):
        return t.device
    return torch.device("cpu")


@contextmanager
def seeded(seed: int) -> Iterator[dict[str, Any]]:
    """Seed torch, Python's ``random`` and NumPy (when installed); report which were drawn from."""
    np = _numpy()
    torch.manual_seed(seed)
    random.seed(seed)
    if np is not None:
        np.random.seed(seed % 2**32)
    before_py = random.getstate()
    before_np = np.random.get_state()[1].copy() if np is not None else None
    before_np_pos = np.random.get_state()[2] if np is not None else None
    drew: dict[str, Any] = {}
    try:
        yield drew
    finally:
        drew["python"] = random.getstate() != before_py
        if np is not None:
            state = np.random.get_state()
            drew["numpy"] = bool(state[2] != before_np_pos or not (state[1] == before_np).all())
        else:
            drew["numpy"] = False


def _numpy() -> Any:
    if "numpy" in sys.modules:
        return sys.modules["numpy"]
    try:
        import numpy
    except ImportError:
        return None
    return numpy


@contextmanager
def build_context(device: str | None, dtype: torch.dtype | None) -> Iterator[None]:
    """Build under a default device and dtype, restoring both afterwards."""
    old_dtype = torch.get_default_dtype()
    if dtype is not None:
        torch.set_default_dtype(dtype)
    try:
        if device is not None and device != "cpu":
            with torch.device(device):
                yield
        else:
            yield
    finally:
        torch.set_default_dtype(old_dtype)


def named_tensors(model: nn.Module) -> list[tuple[str, str, torch.Tensor, bool]]:
    """``(name, kind, tensor, persistent)`` for every parameter and buffer, state_dict keys first."""
    out: list[tuple[str, str, torch.Tensor, bool]] = []
    params = {id(p) for p in model.parameters(recurse=True)}
    seen: set[str] = set()
    for name, t in model.state_dict(keep_vars=True).items():
        if not isinstance(t, torch.Tensor):
            continue
        kind = "parameter" if id(t) in params or isinstance(t, nn.Parameter) else "buffer"
        out.append((name, kind, t, True))
        seen.add(name)
    for name, buf in model.named_buffers(remove_duplicate=False):
        if name not in seen and buf is not None:
            out.append((name, "buffer", buf, False))
            seen.add(name)
    return out


def _same_view(a: torch.Tensor, b: torch.Tensor) -> bool:
    return (
        a.data_ptr() == b.data_ptr()
        and a.shape == b.shape
        and a.stride() == b.stride()
        and a.dtype == b.dtype
        and a.device == b.device
    )


def _view_key(t: torch.Tensor) -> tuple[Any, ...]:
    """What :func:`_same_view` compares, as a dict key (meta tensors: by storage identity)."""
    if t.device.type == "meta":
        try:
            where: Any = ("meta", t.untyped_storage()._cdata, t.storage_offset())
        except (RuntimeError, NotImplementedError):
            where = ("meta", id(t))
    else:
        where = t.data_ptr()
    return (where, tuple(t.shape), t.stride(), t.dtype, t.device)


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
    with seeded(seed) as drew, build_context(device, dtype):
        with tracer:
            model = build()
        gen = _generator_for(torch.device(device) if device else None)
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
        key = _view_key(t)
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


def module_type_of(model: nn.Module, tensor_name: str) -> str:
    """The class name of the module that owns ``tensor_name``."""
    path = tensor_name.rsplit(".", 1)[0] if "." in tensor_name else ""
    try:
        mod = model.get_submodule(path) if path else model
    except AttributeError:
        return "?"
    if "parametrizations" in path.split("."):
        owner_path = path.split(".parametrizations")[0]
        try:
            mod = model.get_submodule(owner_path) if owner_path else model
        except AttributeError:
            pass
    return type(mod).__name__


def signature_of(call: str) -> inspect.Signature | None:
    """The signature of a ``torch.nn.init`` function, if ``call`` names one."""
    fn = getattr(nn.init, call, None)
    return inspect.signature(fn) if fn is not None and call in INIT_FUNCTIONS else None

