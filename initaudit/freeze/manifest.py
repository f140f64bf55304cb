"""Build a snapshot's manifest from a traced build: per-tensor identity, hash, stats, recipe, origin."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from initaudit import provenance
from initaudit.libraries import library_version
from initaudit.recipes import describe_call
from initaudit.snapshot.schema import FORMAT, FORMAT_VERSION, Manifest, TensorEntry
from initaudit.snapshot.values import hash_values
from initaudit.tensors import dtype_name, tensor_hash, tensor_stats
from initaudit.trace.loaded import loaded_tensors
from initaudit.trace.naming import module_type_of

if TYPE_CHECKING:
    import torch

    from initaudit.target import Target
    from initaudit.trace.events import TensorTrace, Trace

#: Tensors of at least this many bytes are hashed on a second thread while their statistics
#: are computed; smaller ones cost less to hash inline than to hand off.
HASH_AHEAD_FROM = 1 << 20

def _event_json(ev: Any) -> dict[str, Any]:

    out = ev.to_json()
    out["site"] = provenance.portable_site(ev.site)
    return out


def _init_of(events: list[Any]) -> tuple[str, Any | None]:
    """The origin and the event of the readable call that last set a tensor's whole value."""
    value_events = [e for e in events if e.kind not in ("alloc",) and not e.partial]
    if not value_events:
        if any(e.kind == "alloc" for e in events):
            return "uninitialized", None
        return ("unknown", None)
    last = value_events[-1]
    if last.kind == "copy":
        # A copy (deepcopy, clone, .to) carries its source's init: show that, keep the copy's
        # origin only when nothing wrote the source.
        writes = [e for e in value_events if e.kind != "copy"]
        if writes:
            return writes[-1].origin, writes[-1]
    return last.origin, last


def _library_entry(ev: Any | None) -> dict[str, Any] | None:
    """``{name, version, function, site}`` of the library code that set a value, or None."""
    if ev is None or getattr(ev, "library", None) is None:
        return None
    return {
        "name": ev.library,
        "version": library_version(ev.library),
        "function": ev.function,
        "site": ev.lib_site,
    }


def tensor_entry(
    tt: TensorTrace,
    model: torch.nn.Module,
    order: int,
    *,
    with_events: bool = True,
    digest: tuple[str, dict[str, Any]] | None = None,
) -> TensorEntry:
    """The manifest entry of one traced tensor: identity, hash, stats, recipe, provenance."""

    t = tt.tensor
    events = tt.events
    origin, init_ev = _init_of(events)
    random_events = [e for e in events if e.rng]
    entry: TensorEntry = {
        "name": tt.name,
        "order": order,
        "kind": tt.kind,
        "persistent": tt.persistent,
        "module": module_type_of(model, tt.name),
        "shape": list(t.shape),
        "dtype": dtype_name(t.dtype),
        "device": str(t.device),
        "hash": digest[0] if digest else tensor_hash(t),
        "stats": digest[1] if digest else tensor_stats(t),
        "origin": origin,
        "site": provenance.portable_site(init_ev.site) if init_ev else None,
        "scope": init_ev.scope if init_ev else None,
        "init": (
            {
                "call": init_ev.call,
                "args": init_ev.args,
                "text": describe_call(init_ev.call, init_ev.args),
            }
            if init_ev
            else None
        ),
        "library": _library_entry(init_ev),
        "rng_before": random_events[0].rng_before if random_events else None,
        "rng": sorted({e.rng for e in random_events}) or None,
        "draws": sum(e.numel for e in random_events),
        "aliases": list(tt.aliases),
    }
    if with_events:
        entry["events"] = [_event_json(e) for e in events]
    return entry


def _from_outside(entry: dict[str, Any]) -> bool:
    """Whether a tensor's value came from outside the traced ops (no events, or external data
    copied in last: ``set_``/``copy_`` from a tensor no traced op made)."""
    events = [e for e in entry.get("events") or [] if e["kind"] != "alloc"]
    if not events:
        return entry["origin"] == "unknown"
    return events[-1]["kind"] in ("copy", "external") and any(
        e["kind"] == "external" for e in events
    )


def _mark_loaded(model: Any, entries: list[dict[str, Any]]) -> None:
    """Origin ``loaded`` (and ``loaded: {file, key}``) for untraced tensors a checkpoint holds."""
    untraced = [e for e in entries if _from_outside(e)]
    for name, where in loaded_tensors(model, untraced).items():
        entry = next(e for e in untraced if e["name"] == name)
        entry["origin"] = "loaded"
        entry["loaded"] = where


def _hash_values_into(trace: Trace, futures: dict[str, Future[str]]) -> None:
    """Hash the tensors and their values file in one pass; each hash lands in its future (an
    error in every future still waiting)."""
    try:
        hash_values(
            {tt.name: tt.tensor for tt in trace.tensors},
            {"format": FORMAT},
            lambda name, h: futures[name].set_result(h),
        )
    except BaseException as exc:
        for f in futures.values():
            if not f.done():
                f.set_exception(exc)


def build_manifest(
    target: Target,
    trace: Trace,
    seed: int,
    *,
    device: str = "cpu",
    dtype: torch.dtype | None = None,
    on_tensor: Callable[[int, int, int], None] | None = None,
    digests: dict[str, tuple[str, dict[str, Any]]] | None = None,
    values_ahead: bool = False,
) -> Manifest:
    """The manifest of a traced build (hashes and statistics computed tensor by tensor).

    ``on_tensor(done, total, nbytes)`` is called after each tensor with the bytes hashed so far.
    ``values_ahead``: the values file will be written next, so hash it too, in the same pass as
    the tensors (:func:`~initaudit.snapshot.values.hash_values`), while the statistics run here.
    """

    entries: list[TensorEntry] = []
    total = len(trace.tensors)
    nbytes = 0
    with ThreadPoolExecutor(1) as pool:
        # Hash large tensors on a second thread (hashlib releases the GIL) while this one
        # computes their statistics: one pass over the model's bytes' worth of time, not two.
        ahead: dict[str, Future[str]] = {}
        if digests is None and values_ahead:
            ahead = {tt.name: Future() for tt in trace.tensors}
            pool.submit(_hash_values_into, trace, dict(ahead))
        elif digests is None:
            ahead = {
                tt.name: pool.submit(tensor_hash, tt.tensor)
                for tt in trace.tensors
                if tt.tensor.numel() * tt.tensor.element_size() >= HASH_AHEAD_FROM
            }
        for i, tt in enumerate(trace.tensors):
            if digests is not None:
                digest: tuple[str, dict[str, Any]] | None = digests[tt.name]
            elif tt.name in ahead:
                stats = tensor_stats(tt.tensor)
                digest = (ahead.pop(tt.name).result(), stats)
            else:
                digest = None
            entries.append(tensor_entry(tt, trace.model, i, digest=digest))
            if on_tensor is not None:
                nbytes += tt.tensor.numel() * tt.tensor.element_size()
                on_tensor(i + 1, total, nbytes)
    _mark_loaded(trace.model, entries)
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "target": {
            "spec": target.spec,
            **target.identity(),
        },
        "seed": seed,
        "provenance": {
            **provenance.capture(device, dtype),
            **provenance.code_provenance(trace.files, target.source_file),
        },
        "rng": {
            "torch_after": trace.rng_after,
            "drew_from_python_random": trace.drew_from.get("python", False),
            "drew_from_numpy": trace.drew_from.get("numpy", False),
            "private_generators": trace.private_generators,
        },
        "orphan_draws": [_event_json(e) for e in trace.orphan_draws()],
        "tensors": entries,
        "values": None,
    }


