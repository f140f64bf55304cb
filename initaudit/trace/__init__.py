"""Tracing a build: the dispatch tracer, its events and storage records, and meta-device replay."""

from initaudit.trace.context import build_context, rng_digest, seeded
from initaudit.trace.events import Event, StorageRecord, TensorTrace, Trace
from initaudit.trace.naming import module_type_of, named_tensors, signature_of
from initaudit.trace.tracer import InitTracer, trace_build

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
