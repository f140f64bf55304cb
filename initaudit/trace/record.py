"""Record mode of the tracer: each storage-writing ATen op kept with its tensors replaced by references.

With ``InitTracer(record=True)`` the build runs on the meta device; :func:`record_op` keeps every op
that created or wrote a storage (tensors replaced by :class:`Ref`), so that :mod:`initaudit.trace.meta`
can replay it later on real CPU tensors, one storage at a time.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from initaudit.errors import StreamError

_META = torch.device("meta")


_CPU = torch.device("cpu")


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
    CPU as the default device, so code that skips init on meta, like transformers', runs it).

    The small value factories (:data:`VALUE_FACTORIES`: ``arange``, ``linspace``…) stay on the
    CPU: their values are computed for real (see :func:`run_recorded`).
    """
    if func in _KEEP_ON_CPU:
        return kwargs
    if func.overloadpacket in VALUE_FACTORIES:
        dev = kwargs.get("device")
        if dev is not None and torch.device(dev).type == "meta":
            kwargs = dict(kwargs)
            kwargs["device"] = _CPU
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

_A = torch.ops.aten

#: Factories of small computed values, run for real during the meta trace (drop-path rates from
#: ``linspace(...).tolist()``, RegNet widths from ``arange``): they draw no random number, and
#: the replay re-runs them, so their values are the real build's.
VALUE_FACTORIES = {
    _A.arange,
    _A.linspace,
    _A.logspace,
    _A.scalar_tensor,
}

#: Most elements a tensor computed for real during the meta trace may have; a value factory
#: making a larger one runs on meta instead (it is model data, not a small computed value).
REAL_NUMEL = 1 << 20


def run_recorded(tracer: Any, func: Any, args: Any, kwargs: dict[str, Any]) -> Any:
    """Run one op of a recorded build: for real when all its tensors hold real values (small
    values computed from ``arange``/``linspace``/``torch.tensor``), on meta otherwise.

    A random op on real values runs for real with the generators left as they were (every draw
    happens in the replay, in global order) and its result is marked *stale*: not the value the
    real build has at this point, so reading it (``.item()``, ``unique``) is refused. A meta
    kernel that is missing is replaced by the CPU kernel on zeros, for ops whose output shape
    does not depend on the values.
    """
    leaves = _leaves((args, kwargs))
    stale: set[int] = tracer.__dict__.setdefault("stale_keys", set())
    if not leaves:
        out = func(*args, **kwargs)
        if (
            func.overloadpacket in VALUE_FACTORIES
            and isinstance(out, torch.Tensor)
            and out.device.type == "cpu"
            and out.numel() > REAL_NUMEL
        ):
            kwargs = dict(kwargs)
            kwargs["device"] = _META
            out = func(*args, **kwargs)
        return out
    if all(t.device.type == "cpu" for t in leaves):
        reads_stale = bool(stale) and any(tracer._key(t) in stale for t in leaves)
        if reads_stale and _refused_on_meta(func):
            raise StreamError(
                f"the build reads a value drawn at random ({op_name(func)} on a tensor a random "
                "op wrote); its value is only known in the replay",
            )
        if torch.Tag.nondeterministic_seeded in func.tags:
            with _generators_kept(kwargs.get("generator")):
                out = func(*args, **kwargs)
            reads_stale = True
        else:
            out = func(*args, **kwargs)
        if reads_stale:
            stale.update(_written_keys(tracer, func, args, kwargs, out))
        return out
    if all(t.device.type == "meta" for t in leaves):  # the common case: nothing to swap
        return _on_meta(func, args, kwargs, args, kwargs)
    return _run_on_meta(tracer, func, args, kwargs, stale)


def _on_meta(func: Any, margs: Any, mkwargs: Any, args: Any, kwargs: Any) -> Any:
    """``func`` on meta tensors; the CPU kernel on zeros where no meta kernel exists."""
    try:
        return func(*margs, **mkwargs)
    except (NotImplementedError, RuntimeError) as exc:
        if _refused_on_meta(func):
            raise StreamError(_READS_META.format(op=op_name(func))) from None
        if isinstance(exc, NotImplementedError):  # no meta kernel
            return _on_cpu_zeros(func, args, kwargs)
        raise


_READS_META = (
    "the build reads the value of a parameter, a buffer or a tensor computed from one "
    "({op} on the meta device: .item(), .tolist(), bool(), unique, nonzero or a shape that "
    "depends on values)"
)


def _run_on_meta(tracer: Any, func: Any, args: Any, kwargs: dict[str, Any], stale: set[int]) -> Any:
    """Run an op with some meta tensors on meta (its real tensors as meta copies)."""
    swap: dict[int, torch.Tensor] = {}  # id(meta stand-in) -> the real tensor it stands for
    writes = {id(t) for t in _written(func, args, kwargs)}

    def meta(t: torch.Tensor) -> torch.Tensor:
        if t.device.type == "meta":
            return t
        m = torch.empty_strided(t.shape, t.stride(), dtype=t.dtype, device=_META)
        swap[id(m)] = t
        if id(t) in writes:
            stale.add(tracer._key(t))  # written from meta values: unknown until the replay
        return m

    margs, mkwargs = _map_tensors((args, kwargs), meta)
    out = _on_meta(func, margs, mkwargs, args, kwargs)
    return _map_tensors(out, lambda t: swap.get(id(t), t))


def _on_cpu_zeros(func: Any, args: Any, kwargs: dict[str, Any]) -> Any:
    """An op without a meta kernel: its CPU kernel with zeros for the meta tensors (the output
    shapes do not depend on the values), the new outputs as meta tensors. The real run is
    only for shapes; the replay computes the values."""
    back: dict[int, torch.Tensor] = {}

    def cpu(t: torch.Tensor) -> torch.Tensor:
        if t.device.type != "meta":
            return t
        c = torch.zeros(t.untyped_storage().nbytes(), dtype=torch.uint8).view(t.dtype)
        c = c.as_strided(t.shape, t.stride(), t.storage_offset())
        back[id(c)] = t
        return c

    def dev(x: Any) -> Any:
        return _CPU if isinstance(x, torch.device) and x.type == "meta" else x

    cargs, ckwargs = _map_tensors((args, kwargs), cpu)
    ckwargs = {k: dev(v) for k, v in ckwargs.items()}
    with _generators_kept(ckwargs.get("generator")):
        out = func(*cargs, **ckwargs)

    def to_meta(t: torch.Tensor) -> torch.Tensor:
        if id(t) in back:
            return back[id(t)]
        return torch.empty_strided(t.shape, t.stride(), dtype=t.dtype, device=_META)

    return _map_tensors(out, to_meta)


@contextmanager
def _generators_kept(generator: torch.Generator | None) -> Iterator[None]:
    """Restore the CPU generator (and a private one) after a draw made during the meta trace."""
    gens = [torch.default_generator] + ([generator] if generator is not None else [])
    states = [g.get_state() for g in gens]
    try:
        yield
    finally:
        for g, st in zip(gens, states, strict=True):
            g.set_state(st)


@functools.cache
def _refused_on_meta(func: Any) -> bool:
    """Whether an op needs values: it hands one to Python (``.item()``, ``bool()``,
    ``equal``) or its output shape depends on them (``unique``, ``nonzero``)."""
    tags = func.tags
    return (
        func.overloadpacket in _VALUE_READS
        or torch.Tag.dynamic_output_shape in tags
        or torch.Tag.data_dependent_output in tags
    )


_VALUE_READS = {_A._local_scalar_dense, _A.equal, _A.is_nonzero, _A.allclose}


@functools.cache
def _write_positions(func: Any) -> tuple[tuple[int, str], ...]:
    return tuple(
        (i, arg.name)
        for i, arg in enumerate(func._schema.arguments)
        if arg.alias_info is not None and arg.alias_info.is_write
    )


def _written(func: Any, args: Any, kwargs: dict[str, Any]) -> list[torch.Tensor]:
    out: list[torch.Tensor] = []
    for i, name in _write_positions(func):
        value = args[i] if i < len(args) else kwargs.get(name)
        out.extend(_leaves(value))
    return out


def _written_keys(tracer: Any, func: Any, args: Any, kwargs: Any, out: Any) -> set[int]:
    keys = {tracer._key(t) for t in _written(func, args, kwargs)}
    keys.update(tracer._key(t) for t in _leaves(out))
    keys.discard(None)
    return keys


def map_leaves(obj: Any, leaf: type, fn: Callable[[Any], Any]) -> Any:
    """``obj`` with every instance of ``leaf`` inside its tuples, lists and dicts replaced by ``fn(x)``."""
    if isinstance(obj, leaf):
        return fn(obj)
    if isinstance(obj, tuple):
        return tuple(map_leaves(x, leaf, fn) for x in obj)
    if isinstance(obj, list):
        return [map_leaves(x, leaf, fn) for x in obj]
    if isinstance(obj, dict):
        return {k: map_leaves(v, leaf, fn) for k, v in obj.items()}
    return obj


def _map_tensors(obj: Any, fn: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    return map_leaves(obj, torch.Tensor, fn)


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
            raise StreamError(f"{op_name(func)} used a tensor the trace never saw")
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


def op_name(func: Any) -> str:
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


def value_at(obj: Any, path: tuple[int, ...]) -> Any:
    for i in path:
        obj = obj[i]
    return obj
