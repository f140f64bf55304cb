"""Freeze in memory: trace a seeded build of a target and return its snapshot and trace."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from initaudit.freeze.manifest import build_manifest
from initaudit.snapshot.read import Snapshot
from initaudit.target import Target, with_example_input
from initaudit.trace import Trace, trace_build

if TYPE_CHECKING:
    import torch


def freeze(
    target: Target,
    seed: int = 0,
    *,
    device: str = "cpu",
    dtype: torch.dtype | None = None,
    on_event: Callable[[int], None] | None = None,
    on_tensor: Callable[[int, int, int], None] | None = None,
    example_input: tuple[int, ...] | None = None,
    values_ahead: bool = False,
) -> tuple[Snapshot, Trace]:
    """Trace a seeded build of ``target`` and return its in-memory snapshot and trace.

    ``example_input`` (a shape) runs one forward on zeros after the build, so lazy modules exist.
    ``values_ahead``: the values will be written (``snapshot.write``); hash their file along with
    the tensors, while the statistics are computed, so the write only writes.
    """
    build = with_example_input(target.build, example_input)
    trace = trace_build(build, seed, device=device, dtype=dtype, on_event=on_event)
    manifest = build_manifest(
        target,
        trace,
        seed,
        device=device,
        dtype=dtype,
        on_tensor=on_tensor,
        values_ahead=values_ahead,
    )
    if example_input is not None:
        manifest["target"]["example_input"] = list(example_input)
    values = {tt.name: tt.tensor for tt in trace.tensors}
    return Snapshot(manifest=manifest, values=values), trace


