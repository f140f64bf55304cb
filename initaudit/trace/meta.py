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
import inspect
import itertools
import math
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from initaudit.errors import InitAuditError, StreamError
from initaudit.libraries import USER, Library, classify_file
from initaudit.tensors import tensor_hash, tensor_stats
from initaudit.trace.callsite import callsite, jsonable
from initaudit.trace.context import build_context, rng_digest, seeded
from initaudit.trace.events import Event
from initaudit.trace.record import Op, Ref, map_leaves, op_name, value_at
from initaudit.trace.storages import StoragePool
from initaudit.trace.tracer import InitTracer, trace_build

if TYPE_CHECKING:
    pass







# --------------------------------------------------------------------------- recording
























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

    tracer = InitTracer(record=True)
    try:
        with _record_whole_calls(tracer):
            trace = trace_build(build, seed, device=None, dtype=dtype, tracer=tracer)
    except (InitAuditError, RuntimeError, NotImplementedError, TypeError, ValueError) as exc:
        raise _refusal(exc) from None
    return trace, tracer


def _refusal(exc: BaseException) -> StreamError:
    """The one-line refusal for a build that failed on the meta device: the op, the line."""
    cause = exc.__cause__ if isinstance(exc, InitAuditError) else exc
    if isinstance(cause, StreamError):  # raised by the recording: it names the op
        return StreamError(
            f"the build cannot run on the meta device{build_site(cause)}: {cause.message}"
        )
    if isinstance(cause, (RuntimeError, NotImplementedError)):
        first = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
        return StreamError(
            f"the build cannot run on the meta device{build_site(cause)} "
            f"({type(cause).__name__}: {first}); it probably reads tensor values while building"
        )
    return StreamError(f"the build cannot run on the meta device: {exc}")


def build_site(exc: BaseException) -> str:
    """`` at FILE:LINE in FUNCTION``: the innermost user or library frame an error went through."""
    site = ""
    tb = exc.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        cls = classify_file(code.co_filename)
        if isinstance(cls, Library):
            site = f" at {cls.path}:{tb.tb_lineno} in {code.co_name}"
        elif cls == USER:
            site = f" at {code.co_filename}:{tb.tb_lineno} in {code.co_name}"
        tb = tb.tb_next
    return site


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

    recorders = {id(fn): recorder(name, fn) for name, fn in originals.items()}
    # Every reference to the originals: nn.init's own, `from torch.nn.init import …` in any
    # module, and registries of them (transformers' TORCH_INIT_FUNCTIONS). One bypassed would
    # return early on the meta tensor (torch skips these on meta) and its draws would be lost.
    patched = _references(recorders)
    for c, k, v in patched:
        c[k] = recorders[id(v)]
    try:
        yield
    finally:
        for c, k, v in reversed(patched):
            c[k] = v
        # Modules imported during the build took the recorders: give them the originals.
        back = {id(r): fn for fn, r in zip(originals.values(), recorders.values(), strict=True)}
        for c, k, v in _references(back):
            c[k] = back[id(v)]


def _references(targets: dict[int, Any]) -> list[tuple[dict[Any, Any], Any, Any]]:
    """``(dict, key, value)`` wherever a loaded module holds one of ``targets`` (by id): as a
    global, or as a value of a small dict global (a registry of functions)."""
    out: list[tuple[dict[Any, Any], Any, Any]] = []
    for module in list(sys.modules.values()):
        space = getattr(module, "__dict__", None)
        if type(space) is not dict:
            continue
        for key, value in list(space.items()):
            if id(value) in targets:
                out.append((space, key, value))
            elif type(value) is dict and len(value) <= 256:  # type(): no __class__ hooks
                out.extend((value, k, v) for k, v in list(value.items()) if id(v) in targets)
    return out


def _emit_call(tracer: Any, name: str, tensor: torch.Tensor, arguments: dict[str, Any]) -> None:

    rec = tracer._lookup(tensor) or tracer._adopt(tensor)
    cs = callsite(sys._getframe(2), tensor, getattr(tracer, "files", None))
    tracer._call_id += 1
    args = {k: jsonable(v) for k, v in arguments.items() if k != "tensor"}
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
    sink: Callable[[str, torch.Tensor], None] | None = None,
) -> StreamResult:
    """Re-run a recorded meta build on CPU one storage at a time, digesting the model's tensors.

    ``sink(name, tensor)``, when given, receives each model tensor as soon as its value is final
    (it must not modify it) instead of the replay hashing and summarizing it inline; then
    ``digests`` is left empty and ``on_tensor`` is the sink's to call.

    A write whose value is overwritten whole before anything reads it (Linear's default
    ``kaiming_uniform_`` before transformers re-inits the weight with ``normal_``) still runs,
    for the random numbers it draws, but into a scratch buffer freed at once: a storage is held
    only while its value can still be read.
    """

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
    # Freed storages are reused (no page faults): up to twice the largest, the replay's working set
    # and the one a digest worker reads.
    pool = StoragePool(2 * max(sizes.values(), default=0))
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
            pool.give(st)

    def view_in(st: torch.UntypedStorage, r: Ref) -> torch.Tensor:
        return torch.empty(0, dtype=r.dtype).set_(st, r.offset, r.size, r.stride)

    def prepare(
        i: int, op: Op | Call, scratch: list[torch.UntypedStorage]
    ) -> dict[int, torch.UntypedStorage]:
        """Storages for op ``i``: held ones, fresh ones for overwrites, scratch for dead ones."""
        out: dict[int, torch.UntypedStorage] = {}
        for rid, kind in _accesses(op, sizes):
            if kind == "def":
                continue
            if (i, rid) in dead:
                out[rid] = pool.take(sizes[rid])  # scratch: drawn into, then given back
                scratch.append(out[rid])
                drop(rid)
                pending[rid] = sizes[rid]
            elif rid in storages:
                out[rid] = storages[rid]
            elif rid in pending and kind == "over":
                del pending[rid]
                hold(rid, pool.take(sizes[rid]))
                out[rid] = storages[rid]
            else:
                raise StreamError(
                    f"{op_name(op.func) if isinstance(op, Op) else op.fn.__name__} reads a value "
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
            numel += value.numel()
            nbytes += value.numel() * value.element_size()
            if sink is not None:
                sink(tt.name, value)  # digested elsewhere (another thread), while we replay on
                continue
            digests[tt.name] = (tensor_hash(value), tensor_stats(value))
            if on_tensor is not None:
                on_tensor(len(digests), total, nbytes, time.perf_counter() - t0)
        drop(rid)

    with seeded(seed), torch.no_grad():
        # Storages used by no op (an external value kept as is) are final from the start.
        for rid in [r for r in finals if r not in last]:
            finish(rid)
        for i, op in enumerate(program):
            scratch: list[torch.UntypedStorage] = []
            held = prepare(i, op, scratch)

            def view(r: Ref, held: dict[int, torch.UntypedStorage] = held) -> torch.Tensor:
                return view_in(held[r.rid], r)

            if isinstance(op, Call):
                ev = by_seq.get(op.seq)
                if ev is not None and ev.rng == "global":
                    ev.rng_before = rng_digest()
                op.fn(view(op.tensor), *op.args, **op.kwargs)
            else:
                args = map_leaves(op.args, Ref, view)
                kwargs = map_leaves(op.kwargs, Ref, view)
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
                    real = value_at(out, path)
                    if tuple(real.shape) != r.size:
                        # The meta kernel disagrees with the CPU kernel on an output's shape
                        # (native_batch_norm in eval: (C,) statistics on meta, empty on CPU).
                        if last.get(r.rid) == i and r.rid not in finals:
                            continue  # nothing reads it: nothing to keep
                        raise StreamError(
                            f"{op_name(op.func)} made a tensor of shape {tuple(real.shape)} on "
                            f"the CPU where its meta kernel said {r.size}, and the build uses it"
                        )
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
            while scratch:  # (no loop variable: it would keep the last one alive)
                pool.give(scratch.pop())
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
    overwrites = op_name(op.func).split(".")[0] in _OVERWRITES
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








# --------------------------------------------------------------------------- safetensors





# --------------------------------------------------------------------------- command line
