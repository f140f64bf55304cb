"""``initaudit check``: the CI gate, one target (or every configured model) against its
committed snapshot."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from initaudit.commands.options import (
    allow_renames_option,
    configured_models,
    example_input_option,
    format_option,
    freeze_model,
    freeze_target,
    from_config,
    print_diff,
    project_config,
    snapshot_dir_option,
    target_options,
    tolerance_options,
)
from initaudit.errors import UsageError
from initaudit.render import console as render

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


@click.command(epilog=_EPILOG_CHECK)
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


def _with(cfg: Any, **changes: Any) -> Any:
    import dataclasses

    return dataclasses.replace(cfg, **changes)
