"""Freeze models larger than memory: trace on the meta device, replay one tensor at a time.

The build runs once on the ``meta`` device under a recording :class:`~initaudit.trace.InitTracer`
(no memory is allocated for values). Every ATen op that created or wrote a storage is kept with
its arguments, tensors replaced by references (storage, offset, shape, strides, dtype). Random ops
on meta tensors draw nothing from the CPU generator, so the replay re-seeds it and re-runs every
recorded op in the original global order on real CPU tensors: data-dependent init (the rejection
steps of ``trunc_normal_``, ``orthogonal_``'s QR) runs for real. A storage is materialized when
its creating op replays and freed after the last op that touches it; tensors of the model are
hashed and summarized at that point. Peak memory is the live working set, not the model.

Also here: :func:`write_safetensors`, a safetensors writer that hashes the file while writing it
(no second read, no in-memory copy of the model).
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import itertools
import json
import math
import os
import struct
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .errors import InitAuditError, OutputError, UsageError

if TYPE_CHECKING:
    from .snapshot import Snapshot
    from .target import Target

_META = torch.device("meta")
_CPU = torch.device("cpu")


#: What to do instead, said by every refusal that does not say it already.
STREAM_INSTEAD = (
    "run the same command without --stream: `freeze --digest-only` builds the model in "
    "memory and keeps only the digests"
)


class StreamError(UsageError):
    """The build cannot be replayed from a meta-device trace (exit code 2)."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        if hint is None and "without --stream" not in message:
            hint = STREAM_INSTEAD
        super().__init__(message, hint=hint)


# --------------------------------------------------------------------------- recording


@dataclass(frozen=True)
class Ref:
    """A tensor argument of a recorded op: a view of storage ``rid``."""

    rid: int
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]
    dtype: torch.dtype


@dataclass
class Op:
    """One recorded ATen call: the op, its arguments (tensors as :class:`Ref`), its outputs."""

    func: Any
    args: Any
    kwargs: Any
    fresh: list[tuple[tuple[int, ...], Ref]]  # (path in the output, ref) of new storages
    seqs: range  # the trace events this op emitted
    random: bool


def redirect_to_meta(func: Any, args: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Send an op that would allocate on the CPU to the meta device (the build code still sees
    CPU as the default device, so code that skips init on meta, like transformers', runs it)."""
    if func in _KEEP_ON_CPU:
        return kwargs
    dev = kwargs.get("device", _MISSING)
    if dev is _MISSING:
        if _leaves(args) or not any(a.name == "device" for a in func._schema.arguments):
            return kwargs
        dev = None
    if dev is None or torch.device(dev).type == "cpu":
        kwargs = dict(kwargs)
        kwargs["device"] = _META
    return kwargs


_MISSING = object()
_KEEP_ON_CPU = {torch.ops.aten.lift_fresh.default, torch.ops.aten.lift_fresh_copy.default}


def capture_externals(tracer: Any, args: Any, kwargs: Any) -> None:
    """Before an op runs: keep the value of each real tensor that enters the build untraced."""
    for t in _leaves((args, kwargs)):
        if t.device.type == "meta" or tracer._lookup(t) is not None:
            continue
        key = tracer._key(t)
        if key is not None and key not in tracer.external_values:
            tracer.external_values[key] = t.untyped_storage().clone()


def record_op(tracer: Any, func: Any, args: Any, kwargs: Any, out: Any, seq0: int) -> None:
    """After an op that created or wrote a storage: append it, replayable, to the program."""

    def ref(t: torch.Tensor) -> Ref:
        rec = tracer._lookup(t)
        if rec is None:
            raise StreamError(f"{_op_name(func)} used a tensor the trace never saw")
        key = tracer._key(t)
        if key in tracer.external_values:
            tracer.external_values[rec.rid] = tracer.external_values.pop(key)
        elif rec.external and t.device.type == "meta" and rec.rid not in tracer.external_values:
            # A value made outside any op on the meta device (torch.tensor(...)): unknown
            # until an op overwrites all of it.
            tracer.external_values[rec.rid] = rec.nbytes
        return Ref(rec.rid, t.storage_offset(), tuple(t.shape), tuple(t.stride()), t.dtype)

    targs, tkwargs = _template((args, kwargs), ref)
    input_keys = {tracer._key(t) for t in _leaves((args, kwargs))}
    fresh = [
        (path, ref(t))
        for path, t in _paths(out)
        if tracer._key(t) not in input_keys and tracer._lookup(t) is not None
    ]
    tracer.program.append(
        Op(
            func=func,
            args=targs,
            kwargs=tkwargs,
            fresh=fresh,
            seqs=range(seq0, tracer._seq),
            random=torch.Tag.nondeterministic_seeded in func.tags,
        )
    )


def _op_name(func: Any) -> str:
    return func._schema.name.split("::", 1)[-1]


def _leaves(obj: Any) -> list[torch.Tensor]:
    out: list[torch.Tensor] = []
    stack = [obj]
    while stack:
        x = stack.pop()
        if isinstance(x, torch.Tensor):
            out.append(x)
        elif isinstance(x, (list, tuple)):
            stack.extend(x)
        elif isinstance(x, dict):
            stack.extend(x.values())
    return out


def _paths(obj: Any, path: tuple[int, ...] = ()) -> list[tuple[tuple[int, ...], torch.Tensor]]:
    if isinstance(obj, torch.Tensor):
        return [(path, obj)]
    if isinstance(obj, (list, tuple)):
        out = []
        for i, x in enumerate(obj):
            out.extend(_paths(x, (*path, i)))
        return out
    return []


def _template(obj: Any, ref: Callable[[torch.Tensor], Ref]) -> Any:
    if isinstance(obj, torch.Tensor):
        return ref(obj)
    if isinstance(obj, tuple):
        return tuple(_template(x, ref) for x in obj)
    if isinstance(obj, list):
        return [_template(x, ref) for x in obj]
    if isinstance(obj, dict):
        return {k: _template(v, ref) for k, v in obj.items()}
    if isinstance(obj, torch.device) and obj.type == "meta":
        return _CPU
    return obj


def _at(obj: Any, path: tuple[int, ...]) -> Any:
    for i in path:
        obj = obj[i]
    return obj


# --------------------------------------------------------------------------- replay


@dataclass
class StreamResult:
    """What a streamed freeze produced: the meta trace, digests per tensor, figures."""

    trace: Any
    digests: dict[str, tuple[str, dict[str, Any]]]
    rng_after: str
    ops: int
    numel: int
    nbytes: int
    seconds: float
    peak_live_bytes: int = 0  # most bytes of replayed storages alive at once


def meta_trace(
    build: Callable[[], torch.nn.Module], seed: int, dtype: torch.dtype | None = None
) -> tuple[Any, Any]:
    """Trace the build on the meta device with recording on; return ``(trace, tracer)``."""
    from .trace import InitTracer, trace_build

    tracer = InitTracer(record=True)
    try:
        with _record_whole_calls(tracer):
            trace = trace_build(build, seed, device=None, dtype=dtype, tracer=tracer)
    except InitAuditError as exc:
        raise StreamError(f"the build cannot run on the meta device: {exc}") from None
    except (RuntimeError, NotImplementedError, TypeError, ValueError) as exc:
        raise StreamError(
            f"the build cannot run on the meta device ({type(exc).__name__}: {exc}); "
            "it probably reads tensor values while building; freeze without --stream"
        ) from None
    return trace, tracer


#: ``torch.nn.init`` functions whose work depends on drawn values (a rejection loop, a QR) or
#: that return early on meta tensors: recorded as one call and replayed for real, as a whole.
WHOLE_CALLS = ("trunc_normal_", "orthogonal_", "sparse_", "dirac_")


@dataclass
class Call:
    """A whole ``torch.nn.init`` call recorded as one step: replayed by calling it for real."""

    fn: Any
    tensor: Ref
    args: Any
    kwargs: Any
    seq: int


@contextmanager
def _record_whole_calls(tracer: Any) -> Iterator[None]:
    """Swap the :data:`WHOLE_CALLS` functions of ``torch.nn.init`` for recorders while tracing."""
    from torch import nn

    originals = {name: getattr(nn.init, name) for name in WHOLE_CALLS if hasattr(nn.init, name)}

    def recorder(name: str, fn: Any) -> Any:
        sig = inspect.signature(fn)

        @functools.wraps(fn)
        def record(tensor: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
            if tensor.device.type != "meta":
                return fn(tensor, *args, **kwargs)
            bound = sig.bind(tensor, *args, **kwargs)
            bound.apply_defaults()
            _emit_call(tracer, name, tensor, bound.arguments)
            ref = Ref(
                tracer._lookup(tensor).rid,
                tensor.storage_offset(),
                tuple(tensor.shape),
                tuple(tensor.stride()),
                tensor.dtype,
            )
            tracer.program.append(Call(fn, ref, args, kwargs, tracer._seq - 1))
            return tensor

        return record

    for name, fn in originals.items():
        setattr(nn.init, name, recorder(name, fn))
    try:
        yield
    finally:
        for name, fn in originals.items():
            setattr(nn.init, name, fn)


def _emit_call(tracer: Any, name: str, tensor: torch.Tensor, arguments: dict[str, Any]) -> None:
    from .trace import Event, _callsite, _jsonable

    rec = tracer._lookup(tensor) or tracer._adopt(tensor)
    cs = _callsite(sys._getframe(2), tensor, getattr(tracer, "files", None))
    tracer._call_id += 1
    args = {k: _jsonable(v) for k, v in arguments.items() if k != "tensor"}
    if args.get("generator") is None:
        args.pop("generator", None)
    gen = arguments.get("generator")
    numel = tensor.numel()
    ev = Event(
        seq=tracer._seq,
        op=name,
        call=name,
        args=args,
        call_id=tracer._call_id,
        origin=cs.origin,
        site=cs.site,
        scope=cs.scope,
        kind="write",
        rng="global" if gen is None else "private",
        numel=numel,
        partial=numel * tensor.element_size() < rec.nbytes,
        library=cs.library,
        function=cs.function,
        lib_site=cs.lib_site,
    )
    rec.events.append(ev)
    tracer.events.append(ev)
    tracer._seq += 1


def meta_size(build: Callable[[], torch.nn.Module], dtype: torch.dtype | None) -> int | None:
    """Bytes of the model's tensors from an untraced meta build; None if it cannot build there."""
    from .trace import build_context

    try:
        with build_context("meta", dtype):
            model = build()
    except Exception:
        return None
    seen: dict[int, int] = {}
    for t in list(model.parameters()) + list(model.buffers()):
        try:
            st = t.untyped_storage()
            seen[st._cdata] = st.nbytes()
        except (RuntimeError, NotImplementedError):
            seen[id(t)] = t.numel() * t.element_size()
    return sum(seen.values())


def estimate_bytes(trace: Any) -> int:
    """The bytes a real build of a meta trace would hold: its tensors' storages, once each."""
    seen: dict[int, int] = {}
    for tt in trace.tensors:
        if tt.record is not None:
            seen[tt.record.rid] = tt.record.nbytes
    return sum(seen.values())


def replay(
    trace: Any,
    tracer: Any,
    seed: int,
    *,
    on_tensor: Callable[[int, int, int, float], None] | None = None,
) -> StreamResult:
    """Re-run a recorded meta build on CPU one storage at a time, digesting the model's tensors.

    A write whose value is overwritten whole before anything reads it (Linear's default
    ``kaiming_uniform_`` before transformers re-inits the weight with ``normal_``) still runs,
    for the random numbers it draws, but into a scratch buffer freed at once: a storage is held
    only while its value can still be read.
    """
    from .snapshot import tensor_hash, tensor_stats
    from .trace import rng_digest, seeded

    program: list[Op | Call] = tracer.program
    by_seq = {ev.seq: ev for ev in trace.events}
    sizes = {rec.rid: rec.nbytes for rec in tracer.records.values()}
    finals: dict[int, list[Any]] = {}
    for tt in trace.tensors:
        if tt.record is None:
            raise StreamError(f"{tt.name} was not made by any traced op; freeze without --stream")
        finals.setdefault(tt.record.rid, []).append(tt)
    # Accesses per storage, in order: "def" (made by the op), "over" (overwritten whole
    # without reading), "read" (anything else, read-modify-write included).
    accesses: dict[int, list[tuple[int, str]]] = {}
    for i, op in enumerate(program):
        for rid, kind in _accesses(op, sizes):
            accesses.setdefault(rid, []).append((i, kind))
    last = {rid: acc[-1][0] for rid, acc in accesses.items()}
    dead: set[tuple[int, int]] = set()  # (op, storage) writes whose value nothing reads
    for rid, acc in accesses.items():
        for (i, kind), (_, after) in itertools.pairwise(acc):
            if kind in ("def", "over") and after == "over":
                dead.add((i, rid))
    done_at: dict[int, list[int]] = {}
    for rid, i in last.items():
        done_at.setdefault(i, []).append(rid)

    storages: dict[int, torch.UntypedStorage] = {}
    pending: dict[int, int] = {}  # storage -> nbytes: no value held; the next access overwrites
    for rid, value in tracer.external_values.items():
        if isinstance(value, int):
            pending[rid] = value  # lost on the meta device: usable only once overwritten
        elif rid in last or rid in finals:
            storages[rid] = value
    externals = set(storages)
    digests: dict[str, tuple[str, dict[str, Any]]] = {}
    total = len(trace.tensors)
    numel = nbytes = live = peak = 0
    t0 = time.perf_counter()

    def hold(rid: int, st: torch.UntypedStorage) -> None:
        nonlocal live, peak
        storages[rid] = st
        live += st.nbytes()
        peak = max(peak, live)

    def drop(rid: int) -> None:
        nonlocal live
        st = storages.pop(rid, None)
        if st is not None and rid not in externals:
            live -= st.nbytes()

    def view_in(st: torch.UntypedStorage, r: Ref) -> torch.Tensor:
        return torch.empty(0, dtype=r.dtype).set_(st, r.offset, r.size, r.stride)

    def prepare(i: int, op: Op | Call) -> dict[int, torch.UntypedStorage]:
        """Storages for op ``i``: held ones, fresh ones for overwrites, scratch for dead ones."""
        out: dict[int, torch.UntypedStorage] = {}
        for rid, kind in _accesses(op, sizes):
            if kind == "def":
                continue
            if (i, rid) in dead:
                out[rid] = torch.UntypedStorage(sizes[rid])  # scratch: drawn into, then freed
                drop(rid)
                pending[rid] = sizes[rid]
            elif rid in storages:
                out[rid] = storages[rid]
            elif rid in pending and kind == "over":
                del pending[rid]
                hold(rid, torch.UntypedStorage(sizes[rid]))
                out[rid] = storages[rid]
            else:
                raise StreamError(
                    f"{_op_name(op.func) if isinstance(op, Op) else op.fn.__name__} reads a value "
                    "that entered the build outside any torch op on the meta device "
                    "(e.g. torch.tensor(...)); freeze without --stream"
                )
        return out

    def finish(rid: int) -> None:
        nonlocal numel, nbytes
        for tt in finals.pop(rid, []):
            m = tt.tensor
            st = storages.get(rid)
            if st is None:
                raise StreamError(f"the replay lost the value of {tt.name}")
            ref = Ref(rid, m.storage_offset(), tuple(m.shape), tuple(m.stride()), m.dtype)
            value = view_in(st, ref)
            digests[tt.name] = (tensor_hash(value), tensor_stats(value))
            numel += value.numel()
            nbytes += value.numel() * value.element_size()
            if on_tensor is not None:
                on_tensor(len(digests), total, nbytes, time.perf_counter() - t0)
        drop(rid)

    with seeded(seed), torch.no_grad():
        # Storages used by no op (an external value kept as is) are final from the start.
        for rid in [r for r in finals if r not in last]:
            finish(rid)
        for i, op in enumerate(program):
            held = prepare(i, op)

            def view(r: Ref, held: dict[int, torch.UntypedStorage] = held) -> torch.Tensor:
                return view_in(held[r.rid], r)

            if isinstance(op, Call):
                ev = by_seq.get(op.seq)
                if ev is not None and ev.rng == "global":
                    ev.rng_before = rng_digest()
                op.fn(view(op.tensor), *op.args, **op.kwargs)
            else:
                args = _materialize(op.args, view)
                kwargs = _materialize(op.kwargs, view)
                if op.random:
                    before = rng_digest()
                    for s in op.seqs:
                        ev = by_seq.get(s)
                        if ev is not None and ev.rng == "global":
                            ev.rng_before = before
                out = op.func(*args, **kwargs)
                for path, r in op.fresh:
                    if (i, r.rid) in dead:
                        pending[r.rid] = sizes[r.rid]
                        continue
                    real = _at(out, path)
                    if (
                        real.storage_offset() != r.offset
                        or tuple(real.stride()) != r.stride
                        or real.untyped_storage().nbytes() < _span(r)
                    ):
                        # The CPU kernel laid the result out differently from the meta kernel:
                        # keep the values, in the layout the rest of the trace expects.
                        fixed = torch.empty_strided(r.size, r.stride, dtype=r.dtype)
                        fixed.copy_(real)
                        real = fixed
                    hold(r.rid, real.untyped_storage())
                del args, kwargs, out
            del held, view
            for rid in done_at.get(i, ()):
                finish(rid)
        rng_after = rng_digest()
    if finals:
        missing = ", ".join(tt.name for tts in finals.values() for tt in tts)
        raise StreamError(f"the replay never produced {missing}; freeze without --stream")
    return StreamResult(
        trace=trace,
        digests=digests,
        rng_after=rng_after,
        ops=len(program),
        numel=numel,
        nbytes=nbytes,
        seconds=time.perf_counter() - t0,
        peak_live_bytes=peak,
    )


def _accesses(op: Op | Call, sizes: dict[int, int]) -> list[tuple[int, str]]:
    """``(storage, kind)`` for each storage an op touches: "def", "over" or "read"."""
    if isinstance(op, Call):
        r = op.tensor
        return [(r.rid, "over" if _whole(r, sizes) else "read")]
    refs = _refs((op.args, op.kwargs))
    out: dict[int, str] = {}
    first = op.args[0] if op.args and isinstance(op.args[0], Ref) else None
    overwrites = _op_name(op.func).split(".")[0] in _OVERWRITES
    for r in refs:
        kind = "read"
        if (
            overwrites
            and r == first
            and refs.count(r) == 1
            and sum(x.rid == r.rid for x in refs) == 1
            and _whole(r, sizes)
        ):
            kind = "over"
        if out.get(r.rid) != "read":
            out[r.rid] = kind
    for _, r in op.fresh:
        out.setdefault(r.rid, "def")
    return list(out.items())


def _whole(r: Ref, sizes: dict[int, int]) -> bool:
    n = sizes.get(r.rid, -1)
    return r.offset == 0 and math.prod(r.size) * _itemsize(r.dtype) == n and _span(r) == n


#: In-place ops that set every element without reading the old value.
_OVERWRITES = {
    "zero_",
    "fill_",
    "uniform_",
    "normal_",
    "random_",
    "bernoulli_",
    "exponential_",
    "cauchy_",
    "log_normal_",
    "geometric_",
    "copy_",
}


def _itemsize(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def _span(r: Ref) -> int:
    if any(s == 0 for s in r.size):
        return 0
    elems = r.offset + 1 + sum((s - 1) * st for s, st in zip(r.size, r.stride, strict=True))
    return elems * _itemsize(r.dtype)


def _refs(obj: Any) -> list[Ref]:
    out: list[Ref] = []
    stack = [obj]
    while stack:
        x = stack.pop()
        if isinstance(x, Ref):
            out.append(x)
        elif isinstance(x, (list, tuple)):
            stack.extend(x)
        elif isinstance(x, dict):
            stack.extend(x.values())
    return out


def _materialize(obj: Any, view: Callable[[Ref], torch.Tensor]) -> Any:
    if isinstance(obj, Ref):
        return view(obj)
    if isinstance(obj, tuple):
        return tuple(_materialize(x, view) for x in obj)
    if isinstance(obj, list):
        return [_materialize(x, view) for x in obj]
    if isinstance(obj, dict):
        return {k: _materialize(v, view) for k, v in obj.items()}
    return obj


def stream_freeze(
    target: Any,
    seed: int = 0,
    *,
    dtype: torch.dtype | None = None,
    traced: tuple[Any, Any] | None = None,
    on_tensor: Callable[[int, int, int, float], None] | None = None,
) -> tuple[Any, StreamResult]:
    """Freeze ``target`` in digest mode without holding the model: meta trace, then replay."""
    from .snapshot import Snapshot, build_manifest

    trace, tracer = traced if traced is not None else meta_trace(target.build, seed, dtype)
    result = replay(trace, tracer, seed, on_tensor=on_tensor)
    trace.rng_after = result.rng_after
    manifest = build_manifest(
        target, trace, seed, device="cpu", dtype=dtype, digests=result.digests
    )
    for entry in manifest["tensors"]:
        entry["device"] = "cpu"
    manifest["provenance"]["streamed"] = True
    return Snapshot(manifest=manifest, values=None), result


def available_bytes() -> int:
    """Memory available to this process now (MemAvailable, else physical memory)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):  # pragma: no cover
        return 1 << 62


# --------------------------------------------------------------------------- safetensors

_ST_DTYPES = {
    torch.float64: "F64",
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
    torch.complex64: "C64",
}
_CHUNK = 1 << 26
_OVERLAP_FROM = 1 << 20  # bytes: hash and write larger tensors side by side


def write_safetensors(
    tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None
) -> str:
    """Write ``tensors`` as a safetensors file, hashing it while writing; return its sha256."""
    from .snapshot import tensor_bytes

    header: dict[str, Any] = {}
    if metadata:
        header["__metadata__"] = dict(metadata)
    offset = 0
    for name, t in tensors.items():
        code = _ST_DTYPES.get(t.dtype)
        if code is None:
            raise OutputError(f"cannot store {name} of dtype {t.dtype} in safetensors")
        n = t.numel() * t.element_size()
        header[name] = {"dtype": code, "shape": list(t.shape), "data_offsets": [offset, n + offset]}
        offset += n
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    h = hashlib.sha256()
    with open(path, "wb") as f, ThreadPoolExecutor(1) as pool:
        head = struct.pack("<Q", len(raw)) + raw
        h.update(head)
        f.write(head)
        for t in tensors.values():
            mv = tensor_bytes(t)
            if len(mv) < _OVERLAP_FROM:  # a thread hand-off costs more than hashing it
                h.update(mv)
                f.write(mv)
                continue
            for i in range(0, len(mv), _CHUNK):
                chunk = mv[i : i + _CHUNK]
                pending = pool.submit(h.update, chunk)  # hashlib releases the GIL
                f.write(chunk)
                pending.result()
    return "sha256:" + h.hexdigest()


# --------------------------------------------------------------------------- command line


def freeze_digest(
    target: Target,
    seed: int,
    *,
    device: str = "cpu",
    dtype: torch.dtype | None = None,
    stream: bool,
    quiet: bool = False,
) -> Snapshot | None:
    """``freeze --digest-only``: the streamed snapshot when asked for or when the model would
    not fit in memory; None when the ordinary in-memory freeze should run instead."""
    from . import render

    if device != "cpu":
        if stream:
            raise StreamError(f"--stream replays on the CPU; it cannot build on --device {device}")
        return None
    torch_dtype = dtype
    reporter = render.Reporter(enabled=not quiet)
    if not stream:
        # An untraced meta build (no values, no per-op tracing) tells the model's size.
        need, have = meta_size(target.build, torch_dtype), available_bytes()
        if need is None or need < 0.8 * have:
            return None
        render.warn(
            f"{target.name} needs about {render.human_bytes(need)} and "
            f"{render.human_bytes(have)} is available: streaming it one tensor at a time"
        )
    with reporter.stage(f"tracing {target.name} on the meta device"):
        traced = meta_trace(target.build, seed, torch_dtype)
    total = len(traced[0].tensors)
    with reporter.stage(f"streaming {target.name}", total=total) as rep:

        def progress(done: int, n: int, nbytes: int, seconds: float) -> None:
            rate = nbytes / seconds if seconds > 0 else 0.0
            rep.update(
                done,
                total=n,
                text=f"streaming {target.name}: {render.human_bytes(nbytes)} hashed "
                f"at {render.human_bytes(rate)}/s",
            )

        snap, _ = stream_freeze(target, seed, dtype=torch_dtype, traced=traced, on_tensor=progress)
    return snap
