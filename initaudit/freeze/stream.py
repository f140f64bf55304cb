"""Streamed freeze: meta-device trace, replay one tensor at a time, digests without holding the model."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import torch

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
