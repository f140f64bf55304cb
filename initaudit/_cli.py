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
        except click.UsageError as exc:
            # one line, like every other error: click's own form is three (usage, hint, error)
            where = exc.ctx.command_path if exc.ctx is not None else "initaudit"
            render.error(f"{exc.format_message()} (see '{where} --help')")
            sys.exit(2)
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


def snapshot_dir_option(help_text: str) -> Any:
    """``--snapshot-dir DIR`` (default ``snapshots``) with a command's own help text."""
    return click.option(
        "--snapshot-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=Path("snapshots"),
        show_default=True,
        help=help_text,
    )


def example_input_option(fn: Any) -> Any:
    """``--example-input SHAPE``: one forward on zeros after the build (lazy modules)."""
    return click.option(
        "--example-input",
        metavar="SHAPE",
        default=None,
        help="Run model(torch.zeros(SHAPE)) once after the build, e.g. 2,3, so lazy "
        "modules (LazyLinear & co.) create their parameters.",
    )(fn)


def parse_example_input(text: str | None) -> tuple[int, ...] | None:
    """``--example-input`` as a shape (or None)."""
    if text is None:
        return None
    from .target import parse_shape

    return parse_shape(text)


def freeze_target(
    spec: str,
    args: tuple[str, ...],
    seed: int,
    device: str,
    dtype: str | None,
    quiet: bool,
    example_input: str | None = None,
) -> tuple[Any, Any]:
    """Resolve and freeze a target in memory, with progress on a terminal."""
    from .snapshot import freeze

    check_device(device)
    shape = parse_example_input(example_input)
    target = resolve_target(spec, args)
    reporter = render.Reporter(enabled=not quiet)
    with reporter.stage(f"building {target.name} under seed {seed}") as rep:
        snap, _ = freeze(
            target,
            seed,
            device=device,
            dtype=resolve_dtype(dtype),
            on_event=lambda n: rep.update(n, text=f"building {target.name}: {n} ops traced"),
            on_tensor=rep.hashing(target.name),
            example_input=shape,
        )
    return target, snap


# ------------------------------------------------------------------------------ freeze

_EPILOG_FREEZE = """\b
Examples:
  initaudit freeze examples/mlp.py
  initaudit freeze examples/highway.py:build_model --arg depth=20 --seed 1
  initaudit freeze my_pkg.models:ResNet --out resnet.json --digest-only
  initaudit freeze big.py:build --digest-only --stream   # larger than memory
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
@click.option(
    "--stream",
    is_flag=True,
    help="With --digest-only: trace on the meta device, then replay one tensor at a time "
    "(models larger than memory; taken by itself when the model would not fit).",
)
@click.option("--force", is_flag=True, help="Overwrite an existing snapshot.")
@snapshot_dir_option("Root for default snapshot paths.")
@example_input_option
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
    stream: bool,
    force: bool,
    snapshot_dir: Path,
    example_input: str | None,
    fmt: str,
) -> None:
    """Build TARGET under a seed and snapshot its initial parameters and buffers.

    TARGET is path/to/file.py, path/to/file.py:NAME or package.module:NAME, where NAME is an
    nn.Module subclass or a function returning one.
    """
    from . import snapshot as snapshot_mod

    snap = None
    if stream and not digest_only:
        raise UsageError("--stream needs --digest-only (a streamed model's values are not kept)")
    if stream and example_input is not None:
        raise UsageError(
            "--stream cannot run an --example-input forward; drop --stream for lazy models"
        )
    if digest_only and example_input is None:
        from .stream import freeze_digest

        check_device(device)
        snap = freeze_digest(
            resolve_target(target, args),
            seed,
            device=device,
            dtype=resolve_dtype(dtype),
            stream=stream,
            quiet=quiet,
        )
    if snap is None:
        _, snap = freeze_target(target, args, seed, device, dtype, quiet, example_input)
    path = out or snapshot_mod.default_path(snap.manifest, snapshot_dir)
    snapshot_mod.write(snap, path, digest_only=digest_only, force=force)
    written = [str(path)]
    if not digest_only:
        written.append(str(snapshot_mod.values_path_for(path)))
    if fmt == "json":
        render.print_json(snap.manifest)
    else:
        render.freeze_summary(snap.manifest, written)


# ------------------------------------------------------------------------------ diff, check

_EPILOG_DIFF = """\b
Examples:
  initaudit diff snapshots/mlp/torch-2.12.0-seed0.json snapshots/mlp/torch-2.13.0-seed0.json
  initaudit diff A.json B.json --format markdown >> "$GITHUB_STEP_SUMMARY"
  initaudit diff A.json B.json --atol 1e-6      # accept tiny kernel differences
  initaudit diff snapshots/mlp/                 # every version in the folder, consecutive pairs

Statuses: identical, recipe-drift, implementation-drift, kernel-drift, stream-shift,
shape-drift, dtype-drift, added, removed, renamed. The root cause is the first tensor (or thrown-away
draw) in RNG order whose own init diverged.
Exit codes: 0 identical, 1 drift, 2 usage or input error.
"""


def allow_renames_option(fn: Any) -> Any:
    """``--allow-renames``: tensors that were only renamed are not drift."""
    return click.option(
        "--allow-renames",
        is_flag=True,
        help="Tensors only renamed (bitwise identical, same shape and RNG state, another "
        "name) count as identical: exit 0 for a refactor that renames and changes nothing else.",
    )(fn)


def tolerance_options(fn: Any) -> Any:
    """``--atol`` and ``--rtol``."""
    for opt in reversed(
        [
            click.option(
                "--atol",
                type=float,
                default=None,
                help="Absolute tolerance: tensors within it count as equal (default: bitwise).",
            ),
            click.option(
                "--rtol",
                type=float,
                default=None,
                help="Relative tolerance (|after − before| ≤ atol + rtol·|before|).",
            ),
        ]
    ):
        fn = opt(fn)
    return fn


@main.command(epilog=_EPILOG_DIFF)
@click.argument("snapshots", nargs=-1, required=True, metavar="BEFORE.json AFTER.json | DIR")
@tolerance_options
@allow_renames_option
@click.option(
    "--verify",
    is_flag=True,
    help="Hash-check every stored value of both snapshots first (diff otherwise reads only "
    "the values of tensors whose digests differ).",
)
@format_option("text", "json", "markdown")
def diff(
    snapshots: tuple[str, ...],
    atol: float | None,
    rtol: float | None,
    allow_renames: bool,
    verify: bool,
    fmt: str,
) -> None:
    """Say what drifted between two snapshots of one target, how, and why.

    With one folder instead of two files: every snapshot of one target in it, ordered by torch
    version, each diffed against the one before.
    """
    from . import diff as diff_mod
    from . import render_diff
    from . import snapshot as snapshot_mod

    if len(snapshots) == 1 and Path(snapshots[0]).is_dir():
        from . import matrix as matrix_mod
        from . import render_matrix

        if verify:
            raise UsageError("--verify takes two snapshot files, not a folder")
        result = matrix_mod.diff_folder(snapshots[0], atol, rtol)
        {"json": render_matrix.matrix_json, "markdown": render_matrix.print_markdown}.get(
            fmt, render_matrix.matrix_text
        )(result)
        sys.exit(result.exit_code)
    if len(snapshots) != 2:
        raise UsageError(
            f"diff takes two snapshot files (or one folder), got {len(snapshots)} argument(s)"
        )
    before, after = (snapshot_mod.read(p) for p in snapshots)
    if verify:
        for snap in (before, after):
            if snap.has_values():
                for _ in snapshot_mod.verify_values(snap):
                    pass
    report = diff_mod.diff_snapshots(
        before, after, atol=atol, rtol=rtol, allow_renames=allow_renames
    )
    {"json": render_diff.diff_json, "markdown": render_diff.print_markdown}.get(
        fmt, render_diff.diff_text
    )(report)
    sys.exit(report.exit_code)


_EPILOG_CHECK = """\b
Examples:
  initaudit check examples/mlp.py                 # against the newest snapshots/mlp/*.json
  initaudit check examples/mlp.py --against snapshots/mlp/torch-2.13.0+cpu-seed0.json
  initaudit check examples/mlp.py --update        # accept: write the new snapshot
  initaudit check examples/cnn.py --format markdown >> "$GITHUB_STEP_SUMMARY"

The default snapshot is the newest (by torch version, then file time) one of the same target,
seed, device and dtype under --snapshot-dir/<model>/.
Exit codes: 0 matches (or --update wrote it), 1 drift, 2 usage or input error.
"""


@main.command(epilog=_EPILOG_CHECK)
@target_options
@click.option(
    "--against",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The committed snapshot to compare with (default: the newest for this target).",
)
@click.option(
    "--update",
    is_flag=True,
    help="On drift (or with no snapshot yet), write the new snapshot instead of failing.",
)
@snapshot_dir_option("Where committed snapshots live (<dir>/<model>/*.json).")
@tolerance_options
@allow_renames_option
@example_input_option
@format_option("text", "json", "markdown")
def check(
    target: str,
    args: tuple[str, ...],
    seed: int,
    device: str,
    dtype: str | None,
    quiet: bool,
    against: Path | None,
    update: bool,
    snapshot_dir: Path,
    atol: float | None,
    rtol: float | None,
    allow_renames: bool,
    example_input: str | None,
    fmt: str,
) -> None:
    """Rebuild TARGET and check its initial weights against its committed snapshot."""
    from . import check as check_mod
    from . import render_diff

    _, fresh = freeze_target(target, args, seed, device, dtype, quiet, example_input)
    result = check_mod.check_snapshot(
        fresh,
        against=against,
        snapshot_dir=snapshot_dir,
        update=update,
        atol=atol,
        rtol=rtol,
        allow_renames=allow_renames,
    )
    if result.report is not None:
        {"json": render_diff.diff_json, "markdown": render_diff.print_markdown}.get(
            fmt, render_diff.diff_text
        )(result.report)
    elif fmt == "json":
        render.print_json({"verdict": "created", "written": str(result.written)})
    if result.written is not None:
        render.err_console().print(f"initaudit: wrote {result.written}", highlight=False)
    sys.exit(result.exit_code)


# ------------------------------------------------------------------------------ explicit, rewrite

_EPILOG_EXPLICIT = """\b
Examples:
  initaudit explicit examples/mlp.py                       # print the code
  initaudit explicit examples/cnn.py --out cnn_init.py     # verify, then write
  initaudit explicit examples/cnn.py --check cnn_init.py   # CI: re-verify after an upgrade
  initaudit explicit tests/models/lazy.py --example-input 2,3

Use the file: torch.manual_seed(SEED); initialize(model)
"""


@main.command(epilog=_EPILOG_EXPLICIT)
@target_options
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the verified module here (default: print it).",
)
@click.option(
    "--check",
    "check_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Re-verify an existing generated FILE.py against the installed torch.",
)
@example_input_option
@format_option("text", "json")
def explicit(
    target: str,
    args: tuple[str, ...],
    seed: int,
    device: str,
    dtype: str | None,
    quiet: bool,
    out: Path | None,
    check_file: Path | None,
    example_input: str | None,
    fmt: str,
) -> None:
    """Write TARGET's initialization as explicit code that reproduces it bit for bit.

    The generated module's initialize(model), called right after torch.manual_seed(SEED), sets
    every parameter and buffer to the values the seeded build gives and leaves torch's RNG in
    the same state, without relying on torch's module defaults. The code is verified (bitwise,
    with torch defaults on and with them replaced by NaN) before anything is written.
    """
    from . import codegen

    if device != "cpu" or dtype is not None:
        raise UsageError("explicit supports the default --device cpu and dtype only")
    if out is not None and check_file is not None:
        raise UsageError("--out and --check exclude each other")
    shape = parse_example_input(example_input)
    spec = resolve_target(target, args)
    reporter = render.Reporter(enabled=not quiet)
    with reporter.stage(f"tracing, generating and verifying {spec.name}"):
        result = codegen.explicit(spec, seed, out=out, check=check_file, example_input=shape)
    if fmt == "json":
        render.print_json(result.to_json())
        return
    if out is None and check_file is None:
        click.echo(result.source, nl=False)
        render.err_console().print(codegen.summary_line(result), markup=False, highlight=False)
    else:
        render.console().print(codegen.summary_line(result), markup=False, highlight=False)


_EPILOG_REWRITE = """\b
Examples:
  initaudit rewrite model.py:Net --diff     # show the edit, write nothing
  initaudit rewrite model.py:Net            # verify, then replace model.py atomically
"""


@main.command(epilog=_EPILOG_REWRITE)
@click.argument("spec", metavar="FILE.py[:CLASS]")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed for verification.")
@click.option("--diff", "show_diff", is_flag=True, help="Print a unified diff; write nothing.")
def rewrite(spec: str, seed: int, show_diff: bool) -> None:
    """Edit CLASS's __init__ in FILE.py so it initializes every tensor explicitly.

    Construction keeps giving bitwise the same tensors and RNG state, now without relying on
    torch's module defaults. Verified before the file is replaced; running it twice changes
    nothing the second time.
    """
    from . import rewrite as rewrite_mod

    result = rewrite_mod.rewrite(spec, seed=seed, write=not show_diff)
    if show_diff:
        click.echo(result.diff(), nl=False)
    elif result.changed:
        render.console().print(
            f"rewrote {result.path} ({result.cls}.__init__): verified bit for bit, "
            "with torch defaults on and replaced by NaN",
            markup=False,
            highlight=False,
        )
    else:
        render.console().print(
            f"{result.path}: {result.cls}.__init__ is already explicit; nothing changed",
            markup=False,
            highlight=False,
        )


# ------------------------------------------------------------------------------ inspect

_EPILOG_INSPECT = """\b
Examples:
  initaudit inspect examples/highway.py           # how is every tensor initialized?
  initaudit inspect examples/mlp.py --require-explicit   # fail if any layer keeps a default
  initaudit inspect model.py:Net --example-input 2,3     # materialize LazyLinear & co.
  initaudit inspect examples/cnn.py --format json | jq '.findings'
  initaudit inspect snapshots/mlp/torch-2.13.0+cpu-seed0.json   # audit a saved snapshot

Findings: kept-default, overwritten, tied, lazy (info); uninitialized, nondeterministic,
suspicious (errors; an all-zero weight matrix is info). By default the model is also
rebuilt once in a fresh process with only torch seeded, to catch values that the torch
seed does not fix (--no-rerun skips it).
Exit codes: 0 no error finding, 1 an error finding, 2 usage or input error.
"""


@main.command(epilog=_EPILOG_INSPECT)
@target_options
@click.option(
    "--require-explicit",
    is_flag=True,
    help="Fail (exit 1) if any parameter keeps torch's implicit default init.",
)
@example_input_option
@click.option(
    "--no-rerun",
    is_flag=True,
    help="Skip the rebuild in a fresh process with only torch seeded (the check for values "
    "from NumPy/Python RNGs, time, os.urandom or garbage memory).",
)
@format_option("text", "json")
def inspect(
    target: str,
    args: tuple[str, ...],
    seed: int,
    device: str,
    dtype: str | None,
    quiet: bool,
    require_explicit: bool,
    example_input: str | None,
    no_rerun: bool,
    fmt: str,
) -> None:
    """Audit how every parameter and buffer of TARGET gets its initial value.

    TARGET is a model (path/to/file.py[:NAME] or package.module:NAME) or a snapshot .json
    written by `initaudit freeze` (audited as recorded: no rebuild, no lazy check).
    """
    from . import audit as audit_mod
    from . import render_audit

    shape = parse_example_input(example_input)
    if target.endswith(".json") and ":" not in target:
        from . import snapshot as snapshot_mod

        if args or shape is not None:
            raise UsageError("--arg and --example-input need a model TARGET, not a snapshot")
        report = audit_mod.audit(snapshot_mod.read(target), require_explicit=require_explicit)
    else:
        check_device(device)
        tgt = resolve_target(target, args)
        reporter = render.Reporter(enabled=not quiet)
        with reporter.stage(f"building {tgt.name} under seed {seed}") as rep:
            report = audit_mod.inspect_target(
                tgt,
                seed,
                device=device,
                dtype=resolve_dtype(dtype),
                example_input=shape,
                require_explicit=require_explicit,
                rerun=not no_rerun,
                on_event=lambda n: rep.update(n, text=f"building {tgt.name}: {n} ops traced"),
                on_tensor=rep.hashing(tgt.name),
                on_stage=lambda text: rep.update(0, text=text),
            )
    if fmt == "json":
        render_audit.audit_json(report)
    else:
        render_audit.audit_text(report)
    if report.exit_code:
        sys.exit(report.exit_code)


# ------------------------------------------------------------------------------ matrix

_EPILOG_MATRIX = """\b
Examples:
  initaudit matrix examples/mlp.py --torch 2.13.0 --torch 2.14.1
  initaudit matrix examples/highway.py --torch 2.12.0 --torch 2.13.0 --torch 2.14.1 --jobs 2
  initaudit matrix my_pkg.models:Net --torch 2.13.0 --torch 2.14.1 --with transformers --format json

\b
Each version gets its own virtual environment (python -m venv + pip, so pip.conf, PIP_INDEX_URL
and PIP_FIND_LINKS apply), cached in --env-dir (default $INITAUDIT_ENV_DIR or
~/.cache/initaudit/envs) and reused later. Snapshots land in snapshots/<model>/.
Exit codes: 0 every consecutive pair identical, 1 drift, 2 usage, input or install error.
"""


@main.command(epilog=_EPILOG_MATRIX)
@target_options
@click.option(
    "--torch",
    "versions",
    multiple=True,
    required=True,
    metavar="VERSION",
    help="A torch version to freeze under (repeat; compared in the order given).",
)
@click.option("--jobs", "-j", default=1, show_default=True, type=int, help="Versions at once.")
@click.option(
    "--env-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Cache of environments [default: $INITAUDIT_ENV_DIR or ~/.cache/initaudit/envs].",
)
@click.option(
    "--with",
    "extra",
    multiple=True,
    metavar="REQUIREMENT",
    help="Extra pip requirement the model needs in every environment (e.g. transformers).",
)
@snapshot_dir_option("Root for the snapshots (snapshots/<model>/torch-<version>-seed<seed>.json).")
@format_option("text", "json", "markdown")
def matrix(
    target: str,
    args: tuple[str, ...],
    seed: int,
    device: str,
    dtype: str | None,
    quiet: bool,
    versions: tuple[str, ...],
    jobs: int,
    env_dir: Path | None,
    extra: tuple[str, ...],
    snapshot_dir: Path,
    fmt: str,
) -> None:
    """Freeze TARGET under several torch versions side by side and diff consecutive versions."""
    from . import matrix as matrix_mod
    from . import render_matrix

    result = matrix_mod.run_matrix(
        target,
        list(versions),
        args=args,
        seed=seed,
        device=device,
        dtype=dtype,
        jobs=jobs,
        env_dir=env_dir,
        snapshot_dir=snapshot_dir,
        extra=extra,
        log=(lambda m: None) if quiet else render_matrix.note,
    )
    {"json": render_matrix.matrix_json, "markdown": render_matrix.print_markdown}.get(
        fmt, render_matrix.matrix_text
    )(result)
    if result.exit_code:
        sys.exit(result.exit_code)


if __name__ == "__main__":  # pragma: no cover
    main()
