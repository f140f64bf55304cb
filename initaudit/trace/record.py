"""Record mode of the tracer: each storage-writing ATen op kept with its tensors replaced by references.

With ``InitTracer(record=True)`` the build runs on the meta device; :func:`record_op` keeps every op
that created or wrote a storage (tensors replaced by :class:`Ref`), so that :mod:`initaudit.trace.meta`
can replay it later on real CPU tensors, one storage at a time.
"""

from __future__ import annotations

from collections.abc import Callable
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
