"""The ``initaudit`` command line: click parses, rich renders, the core does the work.

Domain errors (:class:`initaudit.errors.InitAuditError`) are caught once, here, and printed as
one line with the error's exit code (0 clean, 1 drift or failed audit, 2 usage or input error).
"""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path
from typing import Any

import click

from . import __version__, render
from .errors import InitAuditError, UsageError

_DEBUG_FLAG = "--debug"


class _Group(click.Group):
    """A click group that turns domain errors into one line and an exit code."""

    def main(self, args: list[str] | None = None, *a: Any, **kw: Any) -> Any:  # type: ignore[override]
        argv = list(sys.argv[1:] if args is None else args)
        debug = _DEBUG_FLAG in argv or bool(os.environ.get("INITAUDIT_DEBUG"))
        argv = [x for x in argv if x != _DEBUG_FLAG]
        try:
            return super().main(argv, *a, standalone_mode=False, **kw)
        except InitAuditError as exc:
            if debug:
                traceback.print_exc()
            render.error(str(exc))
            sys.exit(exc.exit_code)
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            exc.show()
            sys.exit(2 if exc.exit_code not in (0, 1) else exc.exit_code)
        except click.Abort:
            render.error("aborted")
            sys.exit(130)
        except KeyboardInterrupt:
            render.error("interrupted; nothing was half-written")
            sys.exit(130)
        except Exception as exc:
            if debug:
                traceback.print_exc()
            render.error(
                f"internal error: {type(exc).__name__}: {exc} "
                "(run again with --debug for the traceback, and please report it)"
            )
            sys.exit(2)


_EPILOG_MAIN = """\b
Examples:
  initaudit freeze examples/mlp.py               # snapshot the seeded initial weights
  initaudit freeze examples/highway.py --format json
  initaudit diff snapshots/mlp/A.json snapshots/mlp/B.json
  initaudit check examples/mlp.py                # CI gate against the committed snapshot

Exit codes: 0 clean, 1 drift or failed audit, 2 usage or input error.
Add --debug anywhere to see tracebacks.
"""


@click.group(
    cls=_Group, epilog=_EPILOG_MAIN, context_settings={"help_option_names": ["-h", "--help"]}
)
@click.version_option(__version__, prog_name="initaudit")
def main() -> None:
    """Audit, freeze and diff how PyTorch models get their initial weights."""


# ------------------------------------------------------------------------------ shared options


def target_options(fn: Any) -> Any:
    """Options every command that builds a model takes."""
    for opt in reversed(
        [
            click.argument("target"),
            click.option(
                "--arg",
                "args",
                multiple=True,
                metavar="KEY=VALUE",
                help="Keyword argument for the model (VALUE is a Python literal); repeatable.",
            ),
            click.option(
                "--seed", default=0, show_default=True, type=int, help="Seed for the build."
            ),
            click.option(
                "--device",
                default="cpu",
                show_default=True,
                help="Device to build on (cpu, cuda, …).",
            ),
            click.option(
                "--dtype",
                default=None,
                help="Default dtype during the build (float32, float64, bfloat16, …).",
            ),
            click.option("-q", "--quiet", is_flag=True, help="No progress output."),
        ]
    ):
        fn = opt(fn)
    return fn


def format_option(*choices: str) -> Any:
    """``--format`` with the given choices, ``text`` first and default."""
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(list(choices)),
        default=choices[0],
        show_default=True,
        help="Output format.",
    )


def resolve_target(spec: str, args: tuple[str, ...]) -> Any:
    """Parse ``--arg`` pairs and resolve the target spec."""
    from .target import parse_args, resolve

    return resolve(spec, parse_args(args))


def resolve_dtype(name: str | None) -> Any:
    """``--dtype`` as a torch dtype (or None)."""
    if name is None:
        return None
    from .snapshot import parse_dtype

    try:
        return parse_dtype(name)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def check_device(device: str) -> None:
    """Fail early, with a clear line, when the device cannot be used."""
    import torch

    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise UsageError(f"--device {device!r}: {exc}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {device}: CUDA is not available in this torch installation")


def freeze_target(
    spec: str, args: tuple[str, ...], seed: int, device: str, dtype: str | None, quiet: bool
) -> tuple[Any, Any]:
    """Resolve and freeze a target in memory, with progress on a terminal."""
    from .snapshot import freeze

    check_device(device)
    target = resolve_target(spec, args)
    reporter = render.Reporter(enabled=not quiet)
    with reporter.stage(f"building {target.name} under seed {seed}") as rep:
        snap, _ = freeze(
            target,
            seed,
            device=device,
            dtype=resolve_dtype(dtype),
            on_event=lambda n: rep.update(n, text=f"building {target.name}: {n} ops traced"),
        )
    return target, snap


# ------------------------------------------------------------------------------ freeze

_EPILOG_FREEZE = """\b
Examples:
  initaudit freeze examples/mlp.py
  initaudit freeze examples/highway.py:build_model --arg depth=20 --seed 1
  initaudit freeze my_pkg.models:ResNet --out resnet.json --digest-only
  initaudit freeze examples/cnn.py --format json | jq '.tensors[0]'
"""


@main.command(epilog=_EPILOG_FREEZE)
@target_options
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Manifest path (values go beside it as .safetensors). "
    "Default: snapshots/<model>/torch-<version>-seed<seed>.json",
)
@click.option(
    "--digest-only", is_flag=True, help="Write the manifest only (hashes and statistics)."
)
@click.option("--force", is_flag=True, help="Overwrite an existing snapshot.")
@click.option(
    "--snapshot-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("snapshots"),
    show_default=True,
    help="Root for default snapshot paths.",
)
@format_option("text", "json")
def freeze(
    target: str,
    args: tuple[str, ...],
    seed: int,
    device: str,
    dtype: str | None,
    quiet: bool,
    out: Path | None,
    digest_only: bool,
    force: bool,
    snapshot_dir: Path,
    fmt: str,
) -> None:
    """Build TARGET under a seed and snapshot its initial parameters and buffers.

    TARGET is path/to/file.py, path/to/file.py:NAME or package.module:NAME, where NAME is an
    nn.Module subclass or a function returning one.
    """
    from . import snapshot as snapshot_mod

    _, snap = freeze_target(target, args, seed, device, dtype, quiet)
    path = out or snapshot_mod.default_path(snap.manifest, snapshot_dir)
    snapshot_mod.write(snap, path, digest_only=digest_only, force=force)
    written = [str(path)]
    if not digest_only:
        written.append(str(snapshot_mod.values_path_for(path)))
    if fmt == "json":
        render.print_json(snap.manifest)
    else:
        render.freeze_summary(snap.manifest, written)


# ------------------------------------------------------------------------------ diff, check (issue 3)
# (commands diff and check go here)

# ------------------------------------------------------------------------------ explicit, rewrite (issue 4)
# (commands explicit and rewrite go here)

# ------------------------------------------------------------------------------ inspect (issue 5)
# (command inspect goes here)

# ------------------------------------------------------------------------------ matrix (issue 6)
# (command matrix goes here)


if __name__ == "__main__":  # pragma: no cover
    main()
