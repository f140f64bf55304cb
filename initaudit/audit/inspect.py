"""Audit how a model is initialized, and catch initialization that cannot be reproduced.

:func:`~initaudit.audit.report.audit` reads a traced build (a
:class:`~initaudit.snapshot.read.Snapshot` and, when available, its
:class:`~initaudit.trace.tracer.Trace`) and returns an
:class:`~initaudit.audit.report.AuditReport`: one row per tensor in RNG order (its final init,
origin, RNG draws and statistics next to what the init's recipe predicts) and a list of
:class:`~initaudit.audit.findings.Finding` objects. :func:`inspect_target` here builds a target
under the tracer (materializing lazy modules with an example input if asked) and, unless told
not to, rebuilds it in a fresh process where only torch is seeded
(:func:`~initaudit.audit.nondeterminism.rerun_fresh`), to catch values that the torch seed
alone does not fix. :mod:`initaudit.audit.rebuild` is that rebuild.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from initaudit.audit.findings import LazyModule
from initaudit.audit.nondeterminism import rerun_fresh
from initaudit.audit.report import AuditReport, audit
from initaudit.freeze.manifest import build_manifest
from initaudit.snapshot.read import Snapshot
from initaudit.target import Target, is_lazy, materialize_lazy
from initaudit.trace.tracer import Trace, trace_build


def lazy_modules(model: nn.Module) -> list[LazyModule]:
    """The lazy modules that still hold uninitialized parameters or buffers."""
    out = []
    for name, m in model.named_modules():
        own = [
            (f"{name}.{n}" if name else n)
            for n, t in list(m._parameters.items()) + list(m._buffers.items())
            if is_lazy(t)
        ]
        if own:
            out.append(LazyModule(name or "(root)", type(m).__name__, own, materialized=False))
    return out


def _drop_lazy(model: nn.Module) -> None:
    for m in model.modules():
        for store in (m._parameters, m._buffers):
            for n, t in list(store.items()):
                if is_lazy(t):
                    store[n] = None


def audit_builder(
    target: Target, example_input: list[int] | None, lazy_out: list[LazyModule]
) -> Callable[[], nn.Module]:
    """A build function: the target, then the example forward (or lazy parameters set aside)."""

    def build() -> nn.Module:
        model = target.build()
        pending = lazy_modules(model)
        if example_input is not None:
            materialize_lazy(model, example_input)
            for m in pending:
                m.materialized = True
            still = lazy_modules(model)
            if still:
                _drop_lazy(model)
                pending = [m for m in pending if m.name not in {s.name for s in still}] + still
        elif pending:
            _drop_lazy(model)
        lazy_out.extend(pending)
        return model

    return build


def trace_for_audit(
    target: Target,
    seed: int = 0,
    *,
    device: str = "cpu",
    dtype: torch.dtype | None = None,
    example_input: list[int] | None = None,
    on_event: Callable[[int], None] | None = None,
    on_tensor: Callable[[int, int, int], None] | None = None,
) -> tuple[Snapshot, Trace, list[LazyModule]]:
    """Trace a seeded build for auditing (example forward included); return snapshot, trace, lazy."""
    lazy: list[LazyModule] = []
    build = audit_builder(target, example_input, lazy)
    trace = trace_build(build, seed, device=device, dtype=dtype, on_event=on_event)
    manifest = build_manifest(target, trace, seed, device=device, dtype=dtype, on_tensor=on_tensor)
    values = {tt.name: tt.tensor for tt in trace.tensors}
    return Snapshot(manifest=manifest, values=values), trace, lazy


def inspect_target(
    target: Target,
    seed: int = 0,
    *,
    device: str = "cpu",
    dtype: torch.dtype | None = None,
    example_input: list[int] | None = None,
    require_explicit: bool = False,
    rerun: bool = True,
    on_event: Callable[[int], None] | None = None,
    on_tensor: Callable[[int, int, int], None] | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> AuditReport:
    """Trace a build of ``target``, rebuild it in a fresh process (unless ``rerun`` is False), audit."""
    snap, trace, lazy = trace_for_audit(
        target,
        seed,
        device=device,
        dtype=dtype,
        example_input=example_input,
        on_event=on_event,
        on_tensor=on_tensor,
    )
    result = None
    if rerun:
        if on_stage is not None:
            on_stage("rebuilding in a fresh process with only torch seeded")
        result = rerun_fresh(target, seed, device=device, dtype=dtype, example_input=example_input)
    return audit(
        snap,
        trace,
        require_explicit=require_explicit,
        rerun=result,
        lazy=lazy,
        example_input=example_input,
    )


__all__ = ["audit_builder", "inspect_target", "lazy_modules", "trace_for_audit"]
