"""``initaudit freeze``: orchestration of the in-memory and the streamed digest freeze, with progress."""

from __future__ import annotations

from typing import TYPE_CHECKING

from initaudit.errors import StreamError
from initaudit.freeze.stream import available_bytes, stream_freeze
from initaudit.render import console as render
from initaudit.trace.meta import meta_size, meta_trace

if TYPE_CHECKING:
    import torch

    from initaudit.snapshot.read import Snapshot
    from initaudit.target import Target




def freeze_digest(
    target: Target,
    seed: int,
    *,
    device: str = "cpu",
    dtype: torch.dtype | None = None,
    stream: bool,
    quiet: bool = False,
) -> Snapshot | None:
    """``freeze --digest-only``: the streamed snapshot when asked for or when the model would
    not fit in memory; None when the ordinary in-memory freeze should run instead."""

    if device != "cpu":
        if stream:
            raise StreamError(f"--stream replays on the CPU; it cannot build on --device {device}")
        return None
    torch_dtype = dtype
    reporter = render.Reporter(enabled=not quiet)
    if not stream:
        # An untraced meta build (no values, no per-op tracing) tells the model's size.
        need, have = meta_size(target.build, torch_dtype), available_bytes()
        if need is None or need < 0.8 * have:
            return None
        render.warn(
            f"{target.name} needs about {render.human_bytes(need)} and "
            f"{render.human_bytes(have)} is available: streaming it one tensor at a time"
        )
    with reporter.stage(f"tracing {target.name} on the meta device"):
        traced = meta_trace(target.build, seed, torch_dtype)
    total = len(traced[0].tensors)
    with reporter.stage(f"streaming {target.name}", total=total) as rep:

        def progress(done: int, n: int, nbytes: int, seconds: float) -> None:
            rate = nbytes / seconds if seconds > 0 else 0.0
            rep.update(
                done,
                total=n,
                text=f"streaming {target.name}: {render.human_bytes(nbytes)} hashed "
                f"at {render.human_bytes(rate)}/s",
            )

        snap, _ = stream_freeze(target, seed, dtype=torch_dtype, traced=traced, on_tensor=progress)
    return snap
