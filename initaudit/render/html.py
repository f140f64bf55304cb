"""Render diff, inspect and matrix results as one self-contained HTML page.

The page works offline and makes no request: CSS, the filter script and every plot (SVG from
:mod:`initaudit.plots`) are inline. Drifted tensors get their before/after value histograms and
the distribution of the error; inspected tensors get their histogram against the density their
recipe predicts; a matrix is a versions × tensors grid coloured by status. Identical tensors are
collapsed and a filter box narrows long models down by name. Everything that comes from a
snapshot or a model is HTML-escaped.
"""

from __future__ import annotations

import html
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from initaudit import __version__
from initaudit.audit.report import AuditReport
from initaudit.audit.rows import TensorRow
from initaudit.diff.report import STATUSES, DiffReport, TensorDiff
from initaudit.envs.matrix import MatrixResult
from initaudit.render import plots
from initaudit.render.audit import short_init, short_source
from initaudit.render.console import origin_text
from initaudit.render.diff import detail, environment_lines, init_change, rng_lines, root_cause_line
from initaudit.render.diff import verdict_line as diff_verdict
from initaudit.render.matrix import pair_summary, tensor_rows
from initaudit.snapshot.layout import atomic_write

#: At most this many tensors get plots in one report (a note says when more were left out).
MAX_PLOTS = 300

_CSS = """
:root { --fg:#1d1d1f; --dim:#6e6e73; --line:#d2d2d7; --bg:#fff; --soft:#f5f5f7; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg);
       background: var(--bg); margin: 0 auto; padding: 24px; max-width: 1180px; }
h1 { font-size: 20px; margin: 0 0 8px; } h2 { font-size: 16px; margin: 24px 0 8px; }
h3 { font-size: 14px; margin: 0 0 6px; font-family: ui-monospace, Menlo, Consolas, monospace; }
code, .mono { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 12.5px; }
.verdict { font-size: 16px; font-weight: 600; padding: 10px 14px; border-radius: 6px; }
.verdict.drift, .verdict.fail { background: #fde8e8; color: #9b1c1c; }
.verdict.identical, .verdict.ok { background: #e6f4ea; color: #1e6b34; }
.rootcause { margin: 10px 0; padding: 10px 14px; border-left: 4px solid #9b1c1c;
             background: var(--soft); }
.meta { color: var(--dim); font-size: 12.5px; }
table { border-collapse: collapse; width: 100%; margin: 6px 0; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid var(--line);
         vertical-align: top; }
th { font-weight: 600; font-size: 12.5px; color: var(--dim); }
.status { display: inline-block; padding: 1px 7px; border-radius: 10px; font-size: 12px;
          font-weight: 600; white-space: nowrap; }
.st-identical { background: #e6f4ea; color: #1e6b34; }
.st-recipe-drift, .st-implementation-drift { background: #fde8e8; color: #9b1c1c; }
.st-kernel-drift { background: #fdecea; color: #b42318; }
.st-stream-shift { background: #fff4d6; color: #8a5a00; }
.st-shape-drift, .st-dtype-drift, .st-added, .st-removed, .st-renamed
  { background: #f3e8fd; color: #6b21a8; }
.st-none { background: var(--soft); color: var(--dim); }
.sev-error { background: #fde8e8; color: #9b1c1c; } .sev-info { background: #e8f0fd; color: #1e4e9b; }
.tensor { border: 1px solid var(--line); border-radius: 8px; padding: 12px 14px; margin: 12px 0; }
.tensor > details > summary, details.group > summary { cursor: pointer; }
.plots { display: flex; flex-wrap: wrap; gap: 8px; margin-top: 8px; }
figure.plot { margin: 0; } figure.plot svg { max-width: 100%; height: auto; }
#filter { width: 100%; padding: 8px 10px; font-size: 14px; border: 1px solid var(--line);
          border-radius: 6px; margin: 12px 0 4px; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(520px, 1fr)); gap: 12px; }
.card { margin: 0; } .card.flagged { border-color: #9b1c1c; }
.sigma { font-size: 12.5px; margin-top: 4px; } .check-off { color: #9b1c1c; font-weight: 600; }
.finding { margin: 8px 0; padding: 8px 12px; background: var(--soft); border-radius: 6px; }
.grid td.cell { text-align: center; }
footer { margin-top: 28px; color: var(--dim); font-size: 12px; }
"""

_FILTER_JS = """
document.getElementById('filter').addEventListener('input', function (e) {
  var q = e.target.value.toLowerCase();
  document.querySelectorAll('[data-name]').forEach(function (el) {
    el.style.display = el.getAttribute('data-name').toLowerCase().indexOf(q) >= 0 ? '' : 'none';
  });
});
"""


def _e(value: Any) -> str:
    """HTML-escaped text of any value."""
    return html.escape(str(value), quote=True)


def _status(status: str | None) -> str:
    cls = status if status in STATUSES or status == "renamed" else "none"
    return f'<span class="status st-{_e(cls)}">{_e(status or "—")}</span>'


def _page(title: str, body: list[str], *, filter_box: bool) -> str:
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>",
        *body,
        f'<footer>generated by initaudit {_e(__version__)} · self-contained: no network '
        "requests</footer>",
    ]
    if filter_box:
        parts.append(f"<script>{_FILTER_JS}</script>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _filter_box(what: str) -> str:
    return f'<input id="filter" type="search" placeholder="filter {_e(what)} by name…">'


def _rows(
    headers: Iterable[str],
    rows: Iterable[Iterable[str]],
    cls: str = "",
    names: list[str] | None = None,
) -> str:
    """A table; cells are HTML already (escape before). ``names`` tag rows for the filter box."""
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = []
    for i, row in enumerate(rows):
        tag = f'<tr data-name="{_e(names[i])}">' if names is not None else "<tr>"
        body.append(tag + "".join(f"<td>{c}</td>" for c in row) + "</tr>")
    return (
        f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'
    )


def _shape(entry: dict[str, Any] | None) -> str:
    if entry is None:
        return "—"
    return "×".join(map(str, entry.get("shape", []))) or "scalar"


# --------------------------------------------------------------------------- diff


def _library_text(rc: Any) -> str | None:
    lib = getattr(rc, "library", None)
    if not isinstance(lib, dict):
        return None
    text = f"{lib.get('name')} {lib.get('before')} → {lib.get('after')}"
    if lib.get("function"):
        text += f" · {lib['function']}"
    return text


def _values(report: DiffReport, names: list[str], side: str) -> dict[str, Any]:
    snap = report.before if side == "before" else report.after
    entries = {t["name"] for t in snap.tensors}
    wanted = [n for n in names if n in entries]
    if not wanted or not snap.has_values():
        return {}
    return dict(snap.iter_values(wanted))


def _diff_plots(td: TensorDiff, va: Any, vb: Any) -> list[str]:
    out = []
    if va is not None or vb is not None:
        import torch

        empty = torch.empty(0)
        out.append(
            '<figure class="plot plot-values">'
            + plots.overlay(va if va is not None else empty, vb if vb is not None else empty)
            + "</figure>"
        )
    if va is not None and vb is not None and tuple(va.shape) == tuple(vb.shape):
        out.append('<figure class="plot plot-error">' + plots.error(va, vb) + "</figure>")
    return out


def diff_html(report: DiffReport) -> str:
    """The HTML page of a diff: verdict, root cause, each drifted tensor with its plots."""
    tgt = report.after.target
    body = [f"<h1>initaudit diff · {_e(tgt.get('name'))}</h1>"]
    cls = "drift" if report.drift else "identical"
    body.append(f'<div id="verdict" class="verdict {cls}">{_e(diff_verdict(report))}</div>')
    rc = report.root_cause
    if rc is not None:
        lines = [
            f'<div id="root-cause" class="rootcause"><b>root cause</b> '
            f'<code class="rc-name">{_e(rc.name)}</code> {_status(rc.status)}',
            f"<div>{_e(rc.reason)}</div>",
        ]
        if rc.site:
            lines.append(f'<div class="meta">set at <code class="rc-site">{_e(rc.site)}</code></div>')
        lib = _library_text(rc)
        if lib:
            lines.append(f'<div class="meta">library <code class="rc-library">{_e(lib)}</code></div>')
        full = root_cause_line(report)
        if rc.shifted and full:
            lines.append(f'<div class="meta">{_e(full.split("; ", 1)[-1])}</div>')
        lines.append("</div>")
        body.append("\n".join(lines))
    env = environment_lines(report)
    body.append("<h2>Environment</h2>")
    body.append(
        "<ul>" + "".join(f"<li><code>{_e(x)}</code></li>" for x in env) + "</ul>"
        if env
        else '<p class="meta">environment unchanged</p>'
    )
    extra = rng_lines(report) + [f"note: {n}" for n in report.notes]
    if extra:
        body.append("<ul>" + "".join(f"<li>{_e(x)}</li>" for x in extra) + "</ul>")
    drifted = [t for t in report.tensors if t.status != "identical" or t.within_tolerance]
    identical = [t for t in report.tensors if t not in drifted]
    body.append(_filter_box("tensors"))
    body.append(f"<h2>Drifted tensors ({len(drifted)})</h2>")
    if not drifted:
        body.append('<p class="meta">none: every tensor is bitwise identical</p>')
    plotted = drifted[:MAX_PLOTS]
    names = [t.name for t in plotted]
    before = _values(report, names, "before")
    after = _values(report, names, "after")
    if plotted and not (report.before.has_values() and report.after.has_values()):
        body.append(
            '<p class="meta">a snapshot holds digests only: plots show the values that are '
            "stored; freeze without --digest-only for both sides to see both</p>"
        )
    for td in drifted:
        figs = _diff_plots(td, before.get(td.name), after.get(td.name)) if td in plotted else []
        info = _rows(
            ["shape", "init", "origin", "detail"],
            [
                [
                    _e(_shape(td.entry)),
                    f"<code>{_e(init_change(td))}</code>",
                    _e(origin_text(td.entry)),
                    _e(detail(td) or td.reason),
                ]
            ],
        )
        body.append(
            f'<article class="tensor drifted" data-name="{_e(td.name)}" '
            f'data-status="{_e(td.status)}"><h3>{_e(td.name)} {_status(td.status)}</h3>'
            f"<div>{_e(td.reason)}</div>{info}"
            f'<div class="plots">{"".join(figs)}</div></article>'
        )
    if len(drifted) > len(plotted):
        body.append(f'<p class="meta">plots for the first {MAX_PLOTS} drifted tensors only</p>')
    if identical:
        rows = [
            [f"<code>{_e(t.name)}</code>", _e(_shape(t.entry)), f"<code>{_e(init_change(t))}</code>"]
            for t in identical
        ]
        table = _rows(["tensor", "shape", "init"], rows, "identical", [t.name for t in identical])
        body.append(
            f'<details class="group" id="identical"><summary>{len(identical)} identical '
            f"tensor(s)</summary>{table}</details>"
        )
    body.append(
        f'<p class="meta">before <code>{_e(_label(report.before))}</code><br>after '
        f"<code>{_e(_label(report.after))}</code></p>"
    )
    return _page(f"initaudit diff: {tgt.get('name')}", body, filter_box=True)


def _label(snap: Any) -> str:
    if snap.path is not None:
        return str(snap.path)
    return f"this build of {snap.target.get('spec')} (in memory)"


# --------------------------------------------------------------------------- inspect


def _sigma_text(row: TensorRow) -> str:
    s, p = row.stats, row.expected
    if s.get("numel", 0) == 0:
        return "empty"
    std = s.get("std")
    text = f"observed σ {std:.4g}" if isinstance(std, (int, float)) else "observed σ —"
    if p is not None and not p.constant:
        text += f" · predicted σ {p.std:.4g} ({p.recipe})"
        if row.z_std is not None:
            text += f" · z {row.z_std:+.1f}"
        text += f" · {row.check}"
    elif p is not None:
        text += f" · predicted constant {p.recipe}"
    return text


def _recipe_plot(row: TensorRow, value: Any) -> str:
    p = row.expected
    dist = p.dist if p is not None else None
    params = dict(p.params) if p is not None else {}
    title = f"{row.name}: observed" + (f" vs {p.recipe}" if p is not None else "")
    if len(title) > 70:
        title = title[:69] + "…"
    return (
        f'<figure class="plot plot-recipe">'
        f"{plots.against_recipe(value, dist, params, title)}</figure>"
    )


def _is_constant(row: TensorRow) -> bool:
    """Whether every element of the tensor holds one value (by its recorded statistics)."""
    s = row.stats
    return s.get("numel", 0) == 0 or (s.get("min") is not None and s.get("min") == s.get("max"))


def audit_html(report: AuditReport) -> str:
    """The HTML page of an inspect: findings, then each tensor's histogram against its recipe."""
    tgt = report.target
    env = report.environment
    body = [f"<h1>initaudit inspect · {_e(tgt.get('name'))}</h1>"]
    meta = f"seed {report.seed}"
    if env.get("torch"):
        meta += f" · torch {env['torch']} · {env.get('device')} · {env.get('default_dtype')}"
    body.append(f'<p class="meta">{_e(meta)} · tensors in RNG order</p>')
    errors = len(report.errors)
    infos = len(report.findings) - errors
    verdict = f"FAIL: {errors} error finding(s)" if errors else "OK: no error findings"
    verdict += f" · {len(report.tensors)} tensors · {infos} info"
    body.append(f'<div id="verdict" class="verdict {"fail" if errors else "ok"}">{_e(verdict)}</div>')
    if report.findings:
        body.append("<h2>Findings</h2>")
    for f in report.findings:
        listed = ", ".join(f.tensors[:12]) + (" …" if len(f.tensors) > 12 else "")
        body.append(
            f'<div class="finding" data-kind="{_e(f.kind)}"><span class="status sev-{_e(f.severity)}">'
            f"{_e(f.severity)}</span> <b>{_e(f.kind)}</b>: {_e(f.message)}"
            + (f'<div class="meta">tensors: <code>{_e(listed)}</code></div>' if f.tensors else "")
            + f'<div class="meta">what to do: {_e(f.advice)}</div></div>'
        )
    flagged = {n for f in report.findings if f.severity == "error" for n in f.tensors}
    # Tensors set to one constant value (BatchNorm's ones and zeros, a filled bias) need no
    # histogram: they are listed, collapsed, in one table; every other tensor gets a card.
    constant = [r for r in report.tensors if _is_constant(r) and r.name not in flagged]
    cards = [r for r in report.tensors if r not in constant]
    snap = report.snapshot
    values: dict[str, Any] = {}
    plotted = [r.name for r in cards[:MAX_PLOTS]]
    if snap is not None and snap.has_values() and plotted:
        values = dict(snap.iter_values(plotted))
    body.append(_filter_box("tensors"))
    body.append(f"<h2>Tensors ({len(report.tensors)}, in RNG order)</h2>")
    if cards and not values:
        body.append(
            '<p class="meta">no values available (a digest-only snapshot): statistics only</p>'
        )
    body.append('<div class="cards">')
    for row in cards:
        fig = _recipe_plot(row, values[row.name]) if row.name in values else ""
        flag = " flagged" if row.name in flagged or row.check == "off" else ""
        body.append(
            f'<article class="tensor card{flag}" data-name="{_e(row.name)}" '
            f'data-check="{_e(row.check)}"><h3>{_e(row.name)}</h3>'
            f'<div class="meta">{_e(row.module)} · '
            f'{_e("×".join(map(str, row.shape)) or "scalar")} {_e(row.dtype)} · '
            f"{_e(short_source(row))} · {_e(f'{row.draws:,}')} draws</div>"
            f"<div><code>{_e(short_init(row))}</code></div>"
            f'<div class="sigma check-{_e(row.check)}">{_e(_sigma_text(row))}</div>'
            f'<div class="plots">{fig}</div></article>'
        )
    body.append("</div>")
    if len(cards) > MAX_PLOTS:
        body.append(f'<p class="meta">plots for the first {MAX_PLOTS} tensors only</p>')
    if constant:
        rows = [
            [
                f"<code>{_e(r.name)}</code>",
                _e(r.module),
                _e("×".join(map(str, r.shape)) or "scalar"),
                f"<code>{_e(short_init(r))}</code>",
                _e(short_source(r)),
            ]
            for r in constant
        ]
        table = _rows(
            ["tensor", "module", "shape", "final init", "origin"],
            rows,
            "constants",
            [r.name for r in constant],
        )
        body.append(
            f'<details class="group" id="constants"><summary>{len(constant)} tensor(s) set to '
            f"one constant value (no histogram needed)</summary>{table}</details>"
        )
    return _page(f"initaudit inspect: {tgt.get('name')}", body, filter_box=True)


# --------------------------------------------------------------------------- matrix


def matrix_html(result: MatrixResult) -> str:
    """The HTML page of a matrix: verdict, pair summaries, a versions × tensors status grid."""
    tgt = result.target
    body = [f"<h1>initaudit matrix · {_e(tgt.get('name'))}</h1>"]
    drifting = sum(p.drift for p in result.pairs)
    verdict = (
        f"DRIFT: {drifting} of {len(result.pairs)} upgrade step(s) change the initial weights"
        if result.drift
        else "IDENTICAL: every version builds the same initial weights"
    )
    cls = "drift" if result.drift else "identical"
    body.append(f'<div id="verdict" class="verdict {cls}">{_e(verdict)}</div>')
    body.append(
        "<ul>" + "".join(f"<li>{_e(pair_summary(p))}</li>" for p in result.pairs) + "</ul>"
    )
    body.append(_filter_box("tensors"))
    heads = ["tensor", f"{result.versions[0]} (hash)"]
    heads += [f"{p.before} → {p.after}" for p in result.pairs]
    rows = []
    names = []
    for _, name, cells in tensor_rows(result):
        names.append(name)
        rows.append(
            [f"<code>{_e(name)}</code>", f"<code>{_e(cells[0])}</code>"]
            + [_status(c if c != "—" else None) for c in cells[1:]]
        )
    body.append(_rows(heads, rows, "grid", names))
    return _page(f"initaudit matrix: {tgt.get('name')}", body, filter_box=True)


# --------------------------------------------------------------------------- output


def write(text: str, out: Path | None) -> None:
    """Write the page to ``out`` atomically, or to stdout without one."""
    if out is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return

    atomic_write(Path(out), lambda tmp: tmp.write_text(text, encoding="utf-8"))
