"""Tracing a build: the dispatch tracer, its events and storage records, and meta-device replay."""

from initaudit.trace.tracer import (
    Event,
    InitTracer,
    StorageRecord,
    TensorTrace,
    Trace,
    build_context,
    module_type_of,
    named_tensors,
    rng_digest,
    seeded,
    signature_of,
    trace_build,
)

__all__ = [
    "Event",
    "InitTracer",
    "StorageRecord",
    "TensorTrace",
    "Trace",
    "build_context",
    "module_type_of",
    "named_tensors",
    "rng_digest",
    "seeded",
    "signature_of",
    "trace_build",
]
