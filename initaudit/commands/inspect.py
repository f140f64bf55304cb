"""``initaudit inspect``: how every parameter and buffer of a model (or a snapshot) gets its
initial value, as findings."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from initaudit.commands.options import (
    check_device,
    check_report_out,
    example_input_option,
    format_option,
    parse_example_input,
    report_out_option,
    resolve_dtype,
    resolve_target,
    target_options,
)
from initaudit.errors import UsageError
from initaudit.render import console as render

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


@click.command(epilog=_EPILOG_INSPECT)
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
    from initaudit import audit as audit_mod
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
