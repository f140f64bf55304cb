"""``initaudit diff``: what drifted between two snapshots (or a folder of them), how, and why."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from initaudit.commands.options import (
    allow_renames_option,
    check_report_out,
    format_option,
    print_diff,
    print_matrix,
    report_out_option,
    tolerance_options,
)
from initaudit.errors import UsageError

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


@click.command(epilog=_EPILOG_DIFF)
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
