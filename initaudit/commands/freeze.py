"""``initaudit freeze``: the command, and orchestration of the in-memory and the streamed
digest freeze, with progress."""

from __future__ import annotations

import gc
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from initaudit.commands.options import (
    check_device,
    configured_models,
    example_input_option,
    format_option,
    freeze_model,
    freeze_resolved,
    freeze_target,
    parse_bytes,
    project_config,
    resolve_dtype,
    resolve_target,
    snapshot_dir_option,
    target_options,
)
from initaudit.errors import InitAuditError, StreamError, UsageError
from initaudit.render import console as render

if TYPE_CHECKING:
    from initaudit.snapshot.read import Snapshot
    from initaudit.target import Target


_EPILOG_FREEZE = """\b
Examples:
  initaudit freeze examples/mlp.py
  initaudit freeze examples/highway.py:build_model --arg depth=20 --seed 1
  initaudit freeze my_pkg.models:ResNet --out resnet.json --digest-only
  initaudit freeze big.py:build --digest-only --stream   # larger than memory
  initaudit freeze big.py:build --digest-only --max-memory 8G   # stream past 8 GiB
  initaudit freeze examples/cnn.py --format json | jq '.tensors[0]'
"""


@click.command(epilog=_EPILOG_FREEZE)
@target_options(optional=True)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Manifest path, ending in .json (values go beside it as NAME.<hash>.safetensors). "
    "Default: snapshots/<model>/torch-<version>-seed<seed>.json",
)
@click.option(
    "--digest-only", is_flag=True, help="Write the manifest only (hashes and statistics)."
)
@click.option(
    "--stream",
    is_flag=True,
    help="With --digest-only: trace on the meta device, then replay one tensor at a time "
    "(models larger than memory; taken by itself when the model would not fit).",
)
@click.option(
    "--max-memory",
    metavar="SIZE",
    default=None,
    help="With --digest-only: stream once the in-memory build has grown by SIZE (e.g. 8G, 512M; "
    "default 80% of the memory available now). For containers whose limit the system's "
    "free memory does not show.",
)
@click.option("--force", is_flag=True, help="Overwrite an existing snapshot.")
@snapshot_dir_option("Root for default snapshot paths.")
@example_input_option
@format_option("text", "json")
def freeze(
    target: str | None,
    args: tuple[str, ...],
    seed: int,
    device: str,
    dtype: str | None,
    quiet: bool,
    out: Path | None,
    digest_only: bool,
    stream: bool,
    max_memory: str | None,
    force: bool,
    snapshot_dir: Path,
    example_input: str | None,
    fmt: str,
) -> None:
    """Build TARGET under a seed and snapshot its initial parameters and buffers.

    TARGET is path/to/file.py, path/to/file.py:NAME or package.module:NAME, where NAME is an
    nn.Module subclass or a function returning one. Without TARGET: every model of
    [tool.initaudit] in the nearest pyproject.toml, each to its default snapshot path.
    """
    from initaudit import snapshot as snapshot_mod

    if target is None:
        cfg = configured_models(
            project_config(),
            "freeze",
            arg=args,
            out=out,
            stream=stream,
            example_input=example_input,
        )
        snapshot_dir = snapshot_dir.resolve()
        os.chdir(cfg.root)  # the config's paths are relative to its folder
        done: list[dict[str, Any]] = []
        for model in cfg.models:
            entry: dict[str, Any] = {"target": model.target, "args": model.args, "seed": model.seed}
            try:
                snap = freeze_model(model, device, dtype, quiet)
                path = snapshot_mod.default_path(snap.manifest, snapshot_dir)
                entry["written"] = str(
                    snapshot_mod.write(snap, path, digest_only=digest_only, force=force)
                )
                entry["tensors"] = len(snap.tensors)
            except InitAuditError as exc:
                entry["error"] = str(exc)
            done.append(entry)
        failed = [e for e in done if "error" in e]
        if fmt == "json":
            render.print_json({"models": done, "exit_code": 2 if failed else 0})
        else:
            for e in done:
                label = e["target"] + "".join(f" {k}={v!r}" for k, v in e["args"].items())
                if "error" in e:
                    render.error(f"{label}: {e['error']}")
                else:
                    render.console().print(
                        f"{label}: wrote {e['written']} ({e['tensors']} tensors)",
                        markup=False,
                        highlight=False,
                    )
        sys.exit(2 if failed else 0)
    snap = None
    if out is not None:
        snapshot_mod.check_manifest_path(out)  # before the build: x.safetensors is refused
    if stream and not digest_only:
        raise UsageError("--stream needs --digest-only (a streamed model's values are not kept)")
    if stream and example_input is not None:
        raise UsageError(
            "--stream cannot run an --example-input forward; drop --stream for lazy models"
        )
    if max_memory is not None and not digest_only:
        raise UsageError(
            "--max-memory needs --digest-only (it chooses between memory and --stream)"
        )
    if digest_only and example_input is None:
        check_device(device)
        snap = freeze_digest(
            resolve_target(target, args),
            seed,
            device=device,
            dtype=dtype,
            stream=stream,
            quiet=quiet,
            max_memory=parse_bytes(max_memory) if max_memory is not None else None,
        )
    if snap is None:
        _, snap = freeze_target(
            target, args, seed, device, dtype, quiet, example_input, values_ahead=not digest_only
        )
    path = out or snapshot_mod.default_path(snap.manifest, snapshot_dir)
    snapshot_mod.write(snap, path, digest_only=digest_only, force=force)
    written = [str(path)]
    if snap.values_path is not None:
        written.append(str(snap.values_path))
    if fmt == "json":
        render.print_json(snap.manifest)
    else:
        render.freeze_summary(snap.manifest, written)


def freeze_digest(
    target: Target,
    seed: int,
    *,
    device: str = "cpu",
    dtype: str | None = None,
    stream: bool,
    quiet: bool = False,
    max_memory: int | None = None,
) -> Snapshot:
    """``freeze --digest-only``: in memory, or streamed when asked for or when the in-memory
    build grows past ``max_memory`` bytes (default: 80 % of the memory available now)."""
    from initaudit.freeze.stream import MemoryLimitReached, available_bytes, memory_guard

    if device != "cpu":
        if stream:
            raise StreamError(f"--stream replays on the CPU; it cannot build on --device {device}")
        return freeze_resolved(target, seed, device, dtype, quiet, None)
    torch_dtype = resolve_dtype(dtype)
    reporter = render.Reporter(enabled=not quiet)
    outgrew: int | None = None
    if not stream:
        # No sizing pass: build in memory, watching the process grow; past the limit, the
        # partial build is dropped and the model streamed (builds that read values included).
        limit = max_memory if max_memory is not None else int(0.8 * available_bytes())
        try:
            return freeze_resolved(target, seed, device, dtype, quiet, None, memory_guard(limit))
        except MemoryLimitReached as exc:
            events, outgrew = exc.events, limit
        gc.collect()
        render.warn(
            f"{target.name} grew past {render.human_bytes(limit)} while building in memory "
            f"(after {events} init ops): streaming it one tensor at a time instead"
        )
    try:
        return _stream(target, seed, torch_dtype, reporter)
    except StreamError as exc:
        if outgrew is None:
            raise
        # the refusal's own advice (freeze without --stream) is what was just tried
        why = exc.message.removesuffix("; freeze without --stream")
        raise StreamError(
            f"{target.name} outgrew {render.human_bytes(outgrew)} in memory and cannot be "
            f"streamed either: {why}",
            hint="free memory or raise --max-memory",
        ) from exc


def _stream(target: Target, seed: int, torch_dtype: Any, reporter: Any) -> Snapshot:
    """Trace on the meta device, then replay and digest one tensor at a time, with progress."""
    from initaudit.freeze.stream import stream_freeze
    from initaudit.trace.meta import meta_trace

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
