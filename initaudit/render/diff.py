"""Render a :class:`initaudit.diff.DiffReport` as rich text, markdown or JSON."""

from __future__ import annotations

import io
import sys
from typing import Any

from rich.console import Console
from rich.text import Text

from initaudit.diff.report import STATUSES, DiffReport, TensorDiff, init_text, report_to_json
from initaudit.render import console as render
from initaudit.render.tables import Column, layout

STYLE = {
    "identical": "green",
    "recipe-drift": "bold red",
    "implementation-drift": "bold red",
    "kernel-drift": "red",
    "stream-shift": "yellow",
    "shape-drift": "bold magenta",
    "dtype-drift": "bold magenta",
    "added": "magenta",
    "removed": "magenta",
    "renamed": "cyan",
}
_MAX_IDENTICAL_NAMES = 6
_DIFF_COLUMNS = (
    Column("status"),
    Column("tensor", names=True),
    Column("shape", drop=2),
    Column("init", limit=36),
    Column("detail", drop=1, limit=40),
)


def _g(x: float | None) -> str:
    return "—" if x is None else f"{x:.3g}"


def detail(td: TensorDiff) -> str:
    """The numbers behind a tensor's status: error figures, statistics, or what shifted it."""
    parts: list[str] = []
    if td.error and td.error["differing"]:
        e = td.error
        parts.append(
            f"{e['differing']:,}/{e['numel']:,} differ · max abs {_g(e['max_abs'])} · "
            f"mean abs {_g(e['mean_abs'])} · max rel {_g(e['max_rel'])} · max ULP {e['max_ulp']:,}"
        )
    elif td.stats:
        for key, change in td.stats.items():
            b, a = change["before"], change["after"]
            fmt = _g if isinstance(b, float) or isinstance(a, float) else str
            parts.append(f"{key} {fmt(b)} → {fmt(a)}")  # type: ignore[operator]
        parts = ["; ".join(parts)] if parts else ["statistics equal, bytes differ"]
    if td.status == "stream-shift" and td.shifted_by:
        parts.append(f"shifted by {td.shifted_by}")
    return " · ".join(parts)


def tensor_label(td: TensorDiff) -> str:
    """The tensor's name; ``old → new`` for a renamed one."""
    return f"{td.renamed_from} → {td.name}" if td.renamed_from else td.name


def init_change(td: TensorDiff) -> str:
    """``before → after`` when the init text changed, else the init text."""

    a = init_text(td.before) if td.before is not None else None
    b = init_text(td.after) if td.after is not None else None
    if a is None:
        return f"→ {b}"
    if b is None:
        return f"{a} →"
    return a if a == b else f"{a} → {b}"


def _shape(td: TensorDiff) -> str:
    def s(e: dict[str, Any]) -> str:
        return "×".join(map(str, e["shape"])) or "scalar"

    if td.status == "shape-drift" and td.before and td.after:
        return f"{s(td.before)} → {s(td.after)}"
    if td.status == "dtype-drift" and td.before and td.after:
        return f"{s(td.entry)} {td.before['dtype']} → {td.after['dtype']}"
    return s(td.entry)


def _versions(report: DiffReport) -> str:
    a, b = report.before.environment.get("torch"), report.after.environment.get("torch")
    return f"torch {a}" if a == b else f"torch {a} → {b}"


def verdict_line(report: DiffReport) -> str:
    """One line: the verdict, the target and how many tensors got which status."""
    tgt = report.after.target
    n = len(report.tensors)
    head = f"{tgt.get('name')} ({tgt.get('slug')}) · seed {report.after.manifest.get('seed')} · "
    head += _versions(report)
    tol = ""
    if report.tolerance_used:
        within = sum(t.within_tolerance for t in report.tensors)
        tol = f" [tolerance atol={report.atol or 0:g} rtol={report.rtol or 0:g}: "
        tol += f"{within} tensor(s) equal only within it]"
    if not report.drift:
        renamed = len(report.by_status("renamed"))
        also = f" ({renamed} renamed, allowed by --allow-renames)" if renamed else ""
        return f"IDENTICAL: all {n} tensors {'equal' if report.tolerance_used else 'bitwise identical'}{also} · {head}{tol}"
    differ = [t for t in report.tensors if t.status != "identical"]
    counts = ", ".join(f"{v} {k}" for k, v in report.counts().items() if k != "identical")
    if differ:
        text = f"DRIFT: {len(differ)} of {n} tensors differ ({counts})"
    else:
        text = f"DRIFT: all {n} tensors identical, but the RNG draws changed"
    return f"{text} · {head}{tol}"


def root_cause_line(report: DiffReport) -> str | None:
    """``root cause X (status): why; it shifted N later tensors: …``, or None."""
    rc = report.root_cause
    if rc is None:
        return None
    name = render.safe(rc.name)
    what = name if rc.kind == "tensor" else f"thrown-away draw at {name}"
    text = f"root cause {what} ({rc.status}): {rc.reason}"
    code = code_change_text(report)
    if code:
        text += f"; {code}"
    if rc.shifted:
        text += f"; {len(rc.shifted)} later tensor(s) shifted: {_names(rc.shifted)}"
    others = [t.name for t in report.tensors if t.own_change and t.name != rc.name]
    if others:
        text += f"; also diverged on their own: {_names(others)}"
    return text


def _names(names: list[str], limit: int = 8) -> str:
    shown = ", ".join(render.safe(n) for n in names[:limit])
    return shown + (f", … (+{len(names) - limit})" if len(names) > limit else "")


def environment_lines(report: DiffReport) -> list[str]:
    """``key: before → after`` per changed environment key (``transformers 4.57.6 → 5.0.0``)."""
    return environment_change_lines(report.environment)


def environment_change_lines(environment: dict[str, Any]) -> list[str]:
    """The lines of :func:`environment_lines` for a diff's (or its JSON's) ``environment``."""
    out = []
    for k, v in environment.items():
        if k == "libraries":
            out += [
                f"{name}: {c['before'] or 'not used'} → {c['after'] or 'not used'}"
                for name, c in v.items()
            ]
        elif k == "sources":
            for path, c in v.items():
                what = "changed" if c["before"] and c["after"] else "added" if c["after"] else "removed"
                out.append(f"your source {path} {what}")
        elif isinstance(v, dict) and "before" in v:
            out.append(f"{k}: {v['before']} → {v.get('after')}")
        else:
            out.append(f"{k}: {v}")
    return out


def code_change_text(report: DiffReport) -> str | None:
    """Which code changed behind the root cause: ``transformers 4.57.6 → 5.0.0`` or a source."""
    rc = report.root_cause
    if rc is None:
        return None
    if rc.library:
        lib = rc.library
        fn = f" ({lib['function']})" if lib.get("function") else ""
        verb = "set by" if rc.kind == "tensor" else "drawn in"
        return f"{verb} {lib['name']}{fn}, {lib['name']} {lib['before']} → {lib['after']}"
    if rc.source:
        return f"your source {rc.source['path']} changed"
    return None


def rng_lines(report: DiffReport) -> list[str]:
    """Thrown-away draws that appeared or disappeared, and other RNG changes."""
    out = [
        f"thrown-away draw {d.change}: {d.call} ({d.numel} numbers) at {d.site or d.scope or '?'}"
        + (f" (in {d.library} {d.function})" if d.library and d.function else "")
        for d in report.draw_changes
    ]
    if "torch_after" in report.rng:
        out.append(
            "the RNG state the build leaves behind differs: anything random after the build "
            "(dropout, shuffling) will differ too"
        )
    for key in ("drew_from_python_random", "drew_from_numpy", "private_generators"):
        if key in report.rng:
            v = report.rng[key]
            out.append(f"{key}: {v['before']} → {v['after']}")
    return out


def diff_text(report: DiffReport, console: Console | None = None) -> None:
    """The rich report: verdict, root cause, a table grouped by status, environment changes."""
    con = console or render.console()
    con.print(_line(verdict_line(report), style="bold red" if report.drift else "bold green"))
    rc = root_cause_line(report)
    if rc:
        con.print(_line(rc, style="bold"))
    drifted = [t for t in report.tensors if t.status != "identical"]
    identical = [t for t in report.tensors if t.status == "identical"]
    if drifted or any(t.within_tolerance or t.own_change for t in identical):
        rows: list[list[Text]] = []
        for status in STATUSES:
            group = [t for t in report.tensors if t.status == status]
            if not group:
                continue
            badge = Text(status, style=STYLE[status])
            if status == "identical":
                notable = [t for t in group if t.within_tolerance or t.own_change]
                for t in notable:
                    why = "within tolerance · " + detail(t) if t.within_tolerance else t.reason
                    rows.append(
                        [badge, _cell(t.name), _cell(_shape(t)), _cell(init_change(t)), _line(why)]
                    )
                rest = [t.name for t in group if t not in notable]
                if rest:
                    rows.append(
                        [
                            badge,
                            Text(f"{len(rest)} tensor(s)"),
                            Text(""),
                            Text(""),
                            _line(_names(rest, _MAX_IDENTICAL_NAMES)),
                        ]
                    )
                continue
            for t in group:
                rows.append(
                    [
                        badge,
                        _cell(tensor_label(t)),
                        _cell(_shape(t)),
                        _cell(init_change(t)),
                        _line(detail(t) or t.reason),
                    ]
                )
        con.print(layout(_DIFF_COLUMNS, rows, con.width))
    for line in rng_lines(report):
        con.print(_line(line, style="yellow"))
    env = environment_lines(report)
    if env:
        con.print(Text("environment changes:", style="bold"))
        for line in env:
            con.print(_line(f"  {line}"))
    else:
        con.print(Text("environment: unchanged", style="dim"))
    for note in report.notes:
        con.print(_line(f"note: {note}", style="dim"))
    con.print(_line(f"before {_label(report.before)}", style="dim"))
    con.print(_line(f"after  {_label(report.after)}", style="dim"))


def _cell(text: str) -> Text:
    """A table cell of text from a snapshot: no markup, no control characters, bounded."""
    return Text(render.safe(text))


def _line(text: str, style: str = "") -> Text:
    """A line of text from a snapshot: no markup, no control characters, bounded."""
    return Text(render.safe(text, render.MAX_LINE), style=style)


def _label(snap: Any) -> str:
    """A snapshot's file, or what was built for one held only in memory."""
    if snap.path is not None:
        return str(snap.path)
    return f"this build of {snap.target.get('spec')} (in memory)"


def diff_plain(report: DiffReport, width: int = 140) -> str:
    """The text report as a plain string (no colour), e.g. for a pytest failure message."""
    buf = io.StringIO()
    con = Console(file=buf, width=width, no_color=True, highlight=False, force_terminal=False)
    diff_text(report, con)
    return buf.getvalue()


def diff_markdown(report: DiffReport) -> str:
    """A markdown report for a pull-request comment or a CI job summary."""
    tgt = report.after.target
    icon = "❌" if report.drift else "✅"
    lines = [f"### initaudit diff: `{tgt.get('name')}` · {_versions(report)}", ""]
    lines.append(f"**{icon} {verdict_line(report)}**")
    lines.append("")
    rc = root_cause_line(report)
    if rc:
        rc = render.safe(rc, render.MAX_LINE)
        lines += [f"**{rc.split(':', 1)[0]}**:{rc.split(':', 1)[1]}", ""]
    drifted = [t for t in report.tensors if t.status != "identical" or t.within_tolerance]
    if drifted:
        lines += ["| status | tensor | shape | init | detail |", "|---|---|---|---|---|"]
        for status in STATUSES:
            for t in drifted:
                if t.status == status:
                    cell = render.safe(detail(t) or t.reason, render.MAX_LINE).replace("|", "\\|")
                    init = render.safe(init_change(t)).replace("|", "\\|")
                    name, shape = render.safe(tensor_label(t)), render.safe(_shape(t))
                    lines.append(f"| **{t.status}** | `{name}` | {shape} | `{init}` | {cell} |")
        n_id = sum(t.status == "identical" and not t.within_tolerance for t in report.tensors)
        if n_id:
            lines.append(f"| identical | {n_id} tensor(s) | | | |")
        lines.append("")
    for line in rng_lines(report):
        lines.append(f"- {line}")
    env = environment_lines(report)
    if env:
        lines += ["", "<details><summary>environment changes</summary>", ""]
        lines += [f"- `{line}`" for line in env]
        lines += ["", "</details>"]
    else:
        lines.append("- environment unchanged")
    for note in report.notes:
        lines.append(f"- note: {note}")
    lines.append("")
    return "\n".join(lines)


def print_markdown(report: DiffReport) -> None:
    """Print the markdown report on stdout."""
    sys.stdout.write(render.safe_block(diff_markdown(report)))
    sys.stdout.flush()


def diff_json(report: DiffReport) -> None:
    """Print the JSON report on stdout."""
    render.print_json(report_to_json(report))
