"""The ``initaudit`` command line: click parses, rich renders, the core does the work.

Domain errors (:class:`initaudit.errors.InitAuditError`) are caught once, here, and printed as
one line with the error's exit code (0 clean, 1 drift or failed audit, 2 usage or input error).
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import threading
import traceback
from pathlib import Path
from typing import Any, NoReturn

import click

from initaudit import __version__
from initaudit.errors import InitAuditError, UsageError
from initaudit.render import console as render

_DEBUG_FLAG = "--debug"


#: Exit status after stdout's reader went away (``initaudit check X | head -1``): 128 + SIGPIPE,
#: what a program killed by SIGPIPE gives, never 1 (drift) or 0 for a report nobody read whole.
EXIT_BROKEN_PIPE = 141


class _PipeClosed(Exception):
    """stdout's reader went away; raised past click, whose own EPIPE handling exits 1."""


class _Group(click.Group):
    """A click group that turns domain errors into one line and an exit code."""

    def main(self, args: list[str] | None = None, *a: Any, **kw: Any) -> Any:  # type: ignore[override]
        as_program = args is None  # run as `initaudit ...`, not called from Python (CliRunner)
        argv = list(sys.argv[1:] if args is None else args)
        debug = _DEBUG_FLAG in argv or bool(os.environ.get("INITAUDIT_DEBUG"))
        argv = [x for x in argv if x != _DEBUG_FLAG]
        try:
            code = self._run(argv, debug, *a, **kw)
        except BrokenPipeError:  # stderr's reader went away too, while an error was printed
            code = _pipe_closed()
        _finish(code, as_program)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            raise _PipeClosed from None

    def _run(self, argv: list[str], debug: bool, *a: Any, **kw: Any) -> int:
        try:
            rv = super().main(argv, *a, standalone_mode=False, **kw)
            return rv if type(rv) is int else 0  # click returns --help's and --version's code
        except SystemExit as exc:  # a command's own sys.exit(verdict); model code never gets here
            return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
        except _PipeClosed:
            return _pipe_closed()
        except InitAuditError as exc:
            if debug:
                traceback.print_exc()
            render.error(str(exc))
            return exc.exit_code
        except click.exceptions.Exit as exc:
            return exc.exit_code
        except click.UsageError as exc:
            # one line, like every other error: click's own form is three (usage, hint, error)
            where = exc.ctx.command_path if exc.ctx is not None else "initaudit"
            render.error(f"{exc.format_message()} (see '{where} --help')")
            return 2
        except click.ClickException as exc:
            exc.show()
            return 2 if exc.exit_code not in (0, 1) else exc.exit_code
        except click.Abort:
            render.error("aborted")
            return 130
        except KeyboardInterrupt:
            render.error("interrupted; nothing was half-written")
            return 130
        except BaseException as exc:  # Exception, and any other BaseException: never exit 1
            if debug:
                traceback.print_exc()
            render.error(
                f"internal error: {type(exc).__name__}: {exc} "
                "(run again with --debug for the traceback, and please report it)"
            )
            return 2


def _pipe_closed() -> int:
    """Quiet exit after a broken stdout pipe: later writes and the final flush go to /dev/null."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    return EXIT_BROKEN_PIPE


def _finish(code: int, as_program: bool) -> NoReturn:
    """Flush stdout and exit with ``code``; without interpreter shutdown if model threads live on."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        code = _pipe_closed()
    except (OSError, ValueError, AttributeError):
        pass
    others = [t for t in threading.enumerate() if t is not threading.main_thread() and t.is_alive()]
    if as_program and others:
        # A thread the model started that keeps running torch ops would be killed mid-op by
        # interpreter shutdown (std::terminate, SIGABRT). Output is complete: leave at once.
        with contextlib.suppress(Exception):
            render.warn(
                f"{len(others)} thread(s) started by model code still running "
                f"({', '.join(t.name for t in others[:3])}): initaudit traced only the thread "
                "that built the model, and exits without waiting for them"
            )
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)
    sys.exit(code)


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


def target_options(fn: Any = None, *, optional: bool = False) -> Any:
    """Options every command that builds a model takes (``optional``: TARGET may be left out,
    and the command then acts on every model of ``[tool.initaudit]``)."""
    if fn is None:
        return lambda f: target_options(f, optional=optional)
    for opt in reversed(
        [
            click.argument("target", required=not optional),
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
    """``--format`` with the given choices, ``text`` first and default (``github`` by default
    inside GitHub Actions, where a command offers it)."""

    def pick(ctx: click.Context, param: click.Parameter, value: str | None) -> str:
        if value is not None:
            return value
        if "github" in choices and os.environ.get("GITHUB_ACTIONS") == "true":
            return "github"
        return choices[0]

    return click.option(
        "--format",
        "fmt",
        type=click.Choice(list(choices)),
        default=None,
        callback=pick,
        show_default=choices[0] + (" (github under GITHUB_ACTIONS)" if "github" in choices else ""),
        help="Output format.",
    )


def resolve_target(spec: str, args: tuple[str, ...]) -> Any:
    """Parse ``--arg`` pairs and resolve the target spec."""
    from initaudit.target import parse_args, resolve

    return resolve(spec, parse_args(args))


def resolve_dtype(name: str | None) -> Any:
    """``--dtype`` as a torch dtype (or None)."""
    if name is None:
        return None
    from initaudit.tensors import parse_dtype

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
    """``--snapshot-dir DIR`` with a command's own help text; left out, it is the project
    config's ``snapshot-dir`` (``[tool.initaudit]``), else ``snapshots``."""

    def pick(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path:
        if value is not None:
            return value
        cfg = project_config(ctx)
        return cfg.snapshot_dir if cfg is not None and cfg.snapshot_dir else Path("snapshots")

    return click.option(
        "--snapshot-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        callback=pick,
        show_default="snapshots, or [tool.initaudit] snapshot-dir",
        help=help_text,
    )


def project_config(ctx: click.Context | None = None) -> Any:
    """The ``[tool.initaudit]`` of the nearest pyproject.toml (None without one), read once."""
    from initaudit import config

    ctx = ctx or click.get_current_context()
    root = ctx.find_root()
    if "initaudit_config" not in root.meta:
        root.meta["initaudit_config"] = config.discover()
    return root.meta["initaudit_config"]


def from_config(ctx: click.Context, name: str, value: Any, configured: Any) -> Any:
    """``value`` as given on the command line, else the project config's ``configured``."""
    source = ctx.get_parameter_source(name)
    if configured is not None and source is click.core.ParameterSource.DEFAULT:
        return configured
    return value


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
    from initaudit.target import parse_shape

    return parse_shape(text)


def freeze_target(
    spec: str,
    args: tuple[str, ...],
    seed: int,
    device: str,
    dtype: str | None,
    quiet: bool,
    example_input: str | None = None,
    values_ahead: bool = False,
) -> tuple[Any, Any]:
    """Resolve and freeze a target in memory, with progress on a terminal."""
    check_device(device)
    shape = parse_example_input(example_input)
    target = resolve_target(spec, args)
    return target, freeze_resolved(target, seed, device, dtype, quiet, shape, values_ahead)


def freeze_model(model: Any, device: str, dtype: str | None, quiet: bool) -> Any:
    """Freeze one configured model (``[[tool.initaudit.models]]``) in memory."""
    from initaudit.target import resolve

    check_device(device)
    shape = parse_example_input(model.example_input)
    return freeze_resolved(resolve(model.target, model.args), model.seed, device, dtype, quiet, shape)


def freeze_resolved(
    target: Any,
    seed: int,
    device: str,
    dtype: str | None,
    quiet: bool,
    shape: tuple[int, ...] | None,
    values_ahead: bool = False,
) -> Any:
    """Freeze a resolved target in memory, with progress on a terminal; return the snapshot."""
    from initaudit.freeze.memory import freeze

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
            values_ahead=values_ahead,
        )
    return snap


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
                entry["written"] = str(snapshot_mod.write(snap, path, digest_only=digest_only, force=force))
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
    if digest_only and example_input is None:
        from initaudit.commands.freeze import freeze_digest

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


def report_out_option(fn: Any) -> Any:
    """``--out FILE.html``: where ``--format html`` writes its page (default: stdout)."""
    return click.option(
        "--out",
        "report_out",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="With --format html: write the self-contained page here (default: stdout).",
    )(fn)


def check_report_out(fmt: str, report_out: Path | None) -> None:
    """Refuse ``--out`` without ``--format html`` (it would silently be ignored)."""
    if report_out is not None and fmt != "html":
        raise UsageError("--out writes the HTML report; add --format html")


def print_matrix(result: Any, fmt: str, report_out: Path | None = None) -> None:
    """Print a matrix (or ``diff DIR``) as text, json, markdown, html or github."""
    from initaudit.render import matrix as render_matrix

    if fmt == "html":
        from initaudit.render import html as render_html

        render_html.write(render_html.matrix_html(result), report_out)
    elif fmt == "github":
        from initaudit.render.github import matrix_github

        matrix_github(result)
    else:
        {"json": render_matrix.matrix_json, "markdown": render_matrix.print_markdown}.get(
            fmt, render_matrix.matrix_text
        )(result)


def print_diff(report: Any, fmt: str) -> None:
    """Print a diff report as ``text``, ``json``, ``markdown`` or ``github``."""
    from initaudit.render import diff as render_diff

    if fmt == "github":
        from initaudit.render.github import diff_github

        diff_github(report)
        return
    {"json": render_diff.diff_json, "markdown": render_diff.print_markdown}.get(
        fmt, render_diff.diff_text
    )(report)


def _tolerance(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    """A tolerance is a finite number ≥ 0 (NaN would compare nothing, inf accept anything)."""
    if value is not None and not (math.isfinite(value) and value >= 0):
        raise click.BadParameter(f"must be a finite number ≥ 0, got {value}")
    return value


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
                callback=_tolerance,
                help="Absolute tolerance: tensors within it count as equal (default: bitwise).",
            ),
            click.option(
                "--rtol",
                type=float,
                default=None,
                callback=_tolerance,
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
@format_option("text", "json", "markdown", "html", "github")
@report_out_option
def diff(
    snapshots: tuple[str, ...],
    atol: float | None,
    rtol: float | None,
    allow_renames: bool,
    verify: bool,
    fmt: str,
    report_out: Path | None,
) -> None:
    """Say what drifted between two snapshots of one target, how, and why.

    With one folder instead of two files: every snapshot of one target in it, ordered by torch
    version, each diffed against the one before.
    """
    from initaudit import snapshot as snapshot_mod
    from initaudit.diff import compare as diff_mod

    check_report_out(fmt, report_out)
    if len(snapshots) == 1 and Path(snapshots[0]).is_dir():
        from initaudit.envs import matrix as matrix_mod

        if verify:
            raise UsageError("--verify takes two snapshot files, not a folder")
        result = matrix_mod.diff_folder(snapshots[0], atol, rtol)
        print_matrix(result, fmt, report_out)
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
    if fmt == "html":
        from initaudit.render import html as render_html

        render_html.write(render_html.diff_html(report), report_out)
    else:
        print_diff(report, fmt)
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
@target_options(optional=True)
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
@format_option("text", "json", "markdown", "github")
def check(
    target: str | None,
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
    """Rebuild TARGET and check its initial weights against its committed snapshot.

    Without TARGET: check every model of [tool.initaudit] in the nearest pyproject.toml, with
    one summary and one exit code.
    """
    from initaudit.diff import check as check_mod

    ctx = click.get_current_context()
    cfg = project_config(ctx)
    if cfg is not None:
        fmt = from_config(ctx, "fmt", fmt, cfg.format)
        atol = atol if atol is not None else cfg.atol
        rtol = rtol if rtol is not None else cfg.rtol
    if target is None:
        cfg = configured_models(
            cfg, "check", arg=args, against=against, example_input=example_input
        )
        if fmt == "html":
            raise UsageError("check writes no HTML report; use diff --format html")
        os.chdir(cfg.root)  # the config's paths are relative to its folder
        from initaudit.render.project import print_project

        project = check_mod.check_project(
            _with(cfg, atol=atol, rtol=rtol, snapshot_dir=snapshot_dir.resolve()),
            lambda m: freeze_model(m, device, dtype, quiet),
            update=update,
        )
        print_project(project, fmt)
        for m in project.models:
            if m.result is not None and m.result.written is not None:
                render.err_console().print(
                    f"initaudit: wrote {m.result.written}", markup=False, highlight=False
                )
        sys.exit(project.exit_code)
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
        print_diff(result.report, fmt)
    elif fmt == "json":
        verdict = "repaired" if result.repaired else "created"
        render.print_json({"verdict": verdict, "written": str(result.written)})
    if result.repaired is not None:
        render.err_console().print(
            f"initaudit: repairing: {result.repaired}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
    if result.written is not None:
        render.err_console().print(
            f"initaudit: wrote {result.written}", markup=False, highlight=False
        )
    sys.exit(result.exit_code)


def configured_models(cfg: Any, command: str, **given: Any) -> Any:
    """The project config, when it configures models; a usage error otherwise."""
    if cfg is None or not cfg.models:
        where = cfg.path if cfg is not None else "no pyproject.toml found"
        raise UsageError(
            f"{command} needs a TARGET, or [[tool.initaudit.models]] in pyproject.toml ({where})"
        )
    extra = [f"--{k.replace('_', '-')}" for k, v in given.items() if v]
    if extra:
        raise UsageError(f"{', '.join(extra)} go(es) with a TARGET, not with the configured models")
    return cfg


def _with(cfg: Any, **changes: Any) -> Any:
    import dataclasses

    return dataclasses.replace(cfg, **changes)


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
@click.option(
    "--unroll",
    is_flag=True,
    help="One statement per tensor: no loops over repeated blocks (ModuleList, Sequential).",
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
    unroll: bool,
    example_input: str | None,
    fmt: str,
) -> None:
    """Write TARGET's initialization as explicit code that reproduces it bit for bit.

    The generated module's initialize(model), called right after torch.manual_seed(SEED), sets
    every parameter and buffer to the values the seeded build gives and leaves torch's RNG in
    the same state, without relying on torch's module defaults. The code is verified (bitwise,
    with torch defaults on and with them replaced by NaN) before anything is written.
    """
    from initaudit.codegen import program as codegen

    if device != "cpu" or dtype is not None:
        raise UsageError("explicit supports the default --device cpu and dtype only")
    if out is not None and check_file is not None:
        raise UsageError("--out and --check exclude each other")
    shape = parse_example_input(example_input)
    spec = resolve_target(target, args)
    reporter = render.Reporter(enabled=not quiet)
    with reporter.stage(f"tracing, generating and verifying {spec.name}"):
        result = codegen.explicit(
            spec, seed, out=out, check=check_file, example_input=shape, unroll=unroll
        )
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
    from initaudit.codegen import rewrite as rewrite_mod

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

Findings: kept-default, overwritten, tied (info); uninitialized, nondeterministic,
suspicious (errors; an all-zero weight matrix is info); lazy (an error without
--example-input, info with it). By default the model is also
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
@format_option("text", "json", "html")
@report_out_option
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
    report_out: Path | None,
) -> None:
    """Audit how every parameter and buffer of TARGET gets its initial value.

    TARGET is a model (path/to/file.py[:NAME] or package.module:NAME) or a snapshot .json
    written by `initaudit freeze` (audited as recorded: no rebuild, no lazy check).
    """
    from initaudit.audit import inspect as audit_mod
    from initaudit.render import audit as render_audit
    from initaudit.target import SNAPSHOT_SUFFIXES

    check_report_out(fmt, report_out)
    shape = parse_example_input(example_input)
    # A TARGET ending in .json, ':' or not, or naming an existing file other than a .py, is a
    # snapshot: a snapshot path never imports code.
    if target.lower().endswith(SNAPSHOT_SUFFIXES) or (
        not target.endswith(".py") and Path(target).is_file()
    ):
        from initaudit import snapshot as snapshot_mod

        if args or shape is not None:
            raise UsageError("--arg and --example-input need a model TARGET, not a snapshot")
        if target.lower().endswith(".safetensors"):
            raise UsageError(
                f"{target} is a snapshot's values file; inspect its manifest "
                f"{Path(target).with_suffix('.json')}"
            )
        report = audit_mod.audit(snapshot_mod.read(target), require_explicit=require_explicit)
        report.rerun["skipped"] = "a snapshot is audited as recorded"
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
        if no_rerun:
            report.rerun["skipped"] = "--no-rerun"
    if fmt == "json":
        render_audit.audit_json(report)
    elif fmt == "html":
        from initaudit.render import html as render_html

        render_html.write(render_html.audit_html(report), report_out)
    else:
        render_audit.audit_text(report)
    if report.exit_code:
        sys.exit(report.exit_code)


# ------------------------------------------------------------------------------ matrix

_EPILOG_MATRIX = """\b
Examples:
  initaudit matrix examples/mlp.py --torch 2.13.0 --torch 2.14.1
  initaudit matrix examples/highway.py --torch 2.12.0 --torch 2.13.0 --torch 2.14.1 --jobs 2
  initaudit matrix tests/models/hf_tiny.py:gpt2 --env transformers==4.57.6 --env transformers==5.0.0
  initaudit matrix my_pkg.models:Net --env "torch==2.14.1 timm==1.0.9" --env "torch==2.14.1 timm==1.0.20"
  initaudit matrix my_pkg.models:Net --torch 2.13.0 --torch 2.14.1 --with transformers --format json

\b
Each --env SPEC is one column: pip requirements separated by spaces (--torch V is short for
--env torch==V); --with REQ adds a requirement to every column. A column that pins no torch
gets the running torch's version. Each column gets its own virtual environment (python -m venv
+ pip, so pip.conf, PIP_INDEX_URL and PIP_FIND_LINKS apply), cached by its requirements in
--env-dir (default $INITAUDIT_ENV_DIR or ~/.cache/initaudit/envs) and reused later. Snapshots
land in snapshots/<model>/, named by what varies (transformers-5.0.0-torch-2.13.0-seed0.json).
Exit codes: 0 every consecutive pair identical, 1 drift, 2 usage, input or install error.
"""


@main.command(epilog=_EPILOG_MATRIX)
@target_options
@click.option(
    "--env",
    "envs",
    multiple=True,
    metavar="SPEC",
    help="One column: pip requirements separated by spaces (repeat; compared in order).",
)
@click.option(
    "--torch",
    "versions",
    multiple=True,
    metavar="VERSION",
    help="A torch version to freeze under (repeat): short for --env torch==VERSION.",
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
    help="A pip requirement added to every column (e.g. transformers); repeatable.",
)
@snapshot_dir_option(
    "Root for the snapshots (snapshots/<model>/[<what varies>-]torch-<version>-seed<seed>.json)."
)
@format_option("text", "json", "markdown", "html", "github")
@report_out_option
def matrix(
    target: str,
    args: tuple[str, ...],
    seed: int,
    device: str,
    dtype: str | None,
    quiet: bool,
    envs: tuple[str, ...],
    versions: tuple[str, ...],
    jobs: int,
    env_dir: Path | None,
    extra: tuple[str, ...],
    snapshot_dir: Path,
    fmt: str,
    report_out: Path | None,
) -> None:
    """Freeze TARGET in several environments side by side and diff consecutive columns."""
    from initaudit.envs import matrix as matrix_mod
    from initaudit.render import matrix as render_matrix

    check_report_out(fmt, report_out)
    result = matrix_mod.run_matrix(
        target,
        list(versions),
        envs=list(envs),
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
    print_matrix(result, fmt, report_out)
    if result.exit_code:
        sys.exit(result.exit_code)


if __name__ == "__main__":  # pragma: no cover
    main()
