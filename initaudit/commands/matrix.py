"""``initaudit matrix``: freeze a target in several environments side by side and diff
consecutive columns."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from initaudit.commands.options import (
    check_report_out,
    format_option,
    print_matrix,
    report_out_option,
    snapshot_dir_option,
    target_options,
)

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


@click.command(epilog=_EPILOG_MATRIX)
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
