"""Streamed freeze: meta-device trace, replay one tensor at a time, digests without holding the model."""

from __future__ import annotations

import os
import resource
import sys
import time
from collections.abc import Callable
from typing import Any

import torch

from initaudit.errors import BuildInterrupted
from initaudit.freeze.manifest import build_manifest
from initaudit.snapshot.read import Snapshot
from initaudit.tensors import DigestPipeline
from initaudit.trace.meta import StreamResult, meta_trace, replay


def stream_freeze(
    target: Any,
    seed: int = 0,
    *,
    dtype: torch.dtype | None = None,
    traced: tuple[Any, Any] | None = None,
    on_tensor: Callable[[int, int, int, float], None] | None = None,
    max_ahead: int = 1 << 28,
) -> tuple[Any, StreamResult]:
    """Freeze ``target`` in digest mode without holding the model: meta trace, then replay.

    The replay makes tensor k+1 on this thread while a worker hashes and summarizes tensor k;
    at most ``max_ahead`` bytes of finished tensors wait for the worker (beyond the replay's own).
    """

    trace, tracer = traced if traced is not None else meta_trace(target.build, seed, dtype)
    total = len(trace.tensors)
    t0 = time.perf_counter()

    def done(n: int, nbytes: int) -> None:
        if on_tensor is not None:
            on_tensor(n, total, nbytes, time.perf_counter() - t0)

    pipeline = DigestPipeline(max_bytes=max_ahead, on_done=done)
    try:
        result = replay(trace, tracer, seed, sink=pipeline.put)
    finally:
        digests = pipeline.close()
    result.digests = digests
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


class MemoryLimitReached(BuildInterrupted):
    """An in-memory build grew past its memory limit: the caller streams the model instead."""

    def __init__(self, grown: int, limit: int, events: int) -> None:
        super().__init__(f"the build grew by {grown} bytes (limit {limit}) after {events} ops")
        self.grown, self.limit, self.events = grown, limit, events


def resident_bytes() -> int:
    """This process's resident memory now (``/proc/self/statm``), else its peak so far."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


def memory_guard(limit: int) -> Callable[[int], None]:
    """An ``on_event`` callback for a traced build: raises :class:`MemoryLimitReached` once the
    process has grown by more than ``limit`` bytes since this call.

    A build's memory grows as its init ops write values (an untouched ``empty`` costs none), so
    the check runs after init events: each of the first 256, then every 16th.
    """
    start = resident_bytes()

    def check(n: int) -> None:
        if n < 256 or n % 16 == 0:
            grown = resident_bytes() - start
            if grown > limit:
                raise MemoryLimitReached(grown, limit, n)

    return check
