"""Render a version matrix: versions across, tensors (grouped by module) down, drift in cells."""

from __future__ import annotations

import sys
from typing import Any

from rich.table import Table
from rich.text import Text

from initaudit.envs.matrix import MatrixResult, PairResult
from initaudit.render import console as render
from initaudit.render.diff import STYLE as _STYLE
from initaudit.render.diff import environment_change_lines


def note(message: str) -> None:
    """A progress line on stderr (matrix builds take minutes; say what is happening)."""
    render.err_console().print(
        f"[dim]initaudit:[/] {render.markup(message, render.MAX_LINE)}",
        soft_wrap=True,
        highlight=False,
    )


def _title(tgt: dict[str, Any]) -> str:
    slug, name = tgt.get("slug"), tgt.get("name")
    return f"{slug} ({name})" if slug and name and slug != name else str(name or slug)


def _short_hash(snap: Any, name: str) -> str:
    for t in snap.tensors:
        if t["name"] == name:
            return t["hash"].split(":", 1)[-1][:8]
    return "—"


def tensor_rows(result: MatrixResult) -> list[tuple[str, str, list[str]]]:
    """``(module, tensor, cells)`` per tensor: the first cell a short hash, then each pair's status."""
    names: list[str] = []
    for snap in result.snapshots:
        for t in snap.tensors:
            if t["name"] not in names:
                names.append(t["name"])
    statuses = [{t["name"]: t["status"] for t in p.data.get("tensors", [])} for p in result.pairs]
    rows = []
    for name in names:
        module = name.rsplit(".", 1)[0] if "." in name else "(top level)"
        cells = [_short_hash(result.snapshots[0], name)]
        cells += [st.get(name, "—") for st in statuses]
        rows.append((module, name, cells))
    return rows


def env_changes(data: dict[str, Any]) -> list[str]:
    """``key: before → after`` for each environment key a pair's diff reports as changed."""

    return environment_change_lines(data.get("environment") or {})


def pair_summary(pair: PairResult) -> str:
    """One line: the pair, its verdict, its root cause and how many tensors got which status."""
    data = pair.data
    counts: dict[str, int] = {}
    for t in data.get("tensors", []):
        counts[t["status"]] = counts.get(t["status"], 0) + 1
    text = f"{pair.before} → {pair.after}: {data.get('verdict')}"
    if data.get("root_cause"):
        rc = data["root_cause"]
        status = next((t["status"] for t in data.get("tensors", []) if t["name"] == rc), None)
        text += f"; root cause {rc}" + (f" ({status})" if status else "")
    if counts:
        text += " · " + ", ".join(f"{n} {s}" for s, n in counts.items())
    return text


def matrix_text(result: MatrixResult) -> None:
    """The rich matrix: verdict, the table, and each pair's root cause and environment changes."""
    con = render.console()
    tgt = result.target
    drifting = sum(p.drift for p in result.pairs)
    verdict = (
        Text(
            f"DRIFT: {drifting} of {len(result.pairs)} upgrade step(s) change the initial weights",
            style="bold red",
        )
        if result.drift
        else Text("IDENTICAL: every column builds the same initial weights", style="bold green")
    )
    title = f"{_title(tgt)} · seed {result.snapshots[0].manifest['seed']} · "
    con.print(Text(render.safe(title, render.MAX_LINE), style="bold") + verdict)
    table = Table(title_justify="left", show_lines=False)
    table.add_column("tensor")
    for i, v in enumerate(result.versions):
        table.add_column(Text(render.safe(v) + (" (hash)" if i == 0 else "")))
    current = None
    for module, name, cells in tensor_rows(result):
        if module != current:
            if current is not None:
                table.add_section()
            table.add_row(Text(render.safe(module), style="bold"), *[""] * len(cells))
            current = module
        styled = [Text(render.safe(cells[0]), style="dim")] + [
            Text(render.safe(c), style=_STYLE.get(c, "")) for c in cells[1:]
        ]
        short = name[len(module) + 1 :] if name.startswith(module + ".") else name
        table.add_row(Text("  " + render.safe(short)), *styled)
    con.print(table)
    for pair in result.pairs:
        summary = render.safe(pair_summary(pair), render.MAX_LINE)
        con.print(Text(summary, style="red" if pair.drift else "green"), soft_wrap=True)
        for change in env_changes(pair.data):
            line = render.safe(f"    environment {change}", render.MAX_LINE)
            con.print(Text(line, style="dim"), soft_wrap=True)
    for snap in result.snapshots:
        line = render.safe(f"snapshot {snap.path}", render.MAX_LINE)
        con.print(Text(line, style="dim"), soft_wrap=True)


def matrix_json(result: MatrixResult) -> None:
    """The machine-readable result on stdout."""
    render.print_json(result.to_json())


def matrix_markdown(result: MatrixResult) -> str:
    """A markdown report (for a pull-request comment or a CI job summary)."""
    tgt = result.target
    across = ("torch " if result.torch_only else "") + ", ".join(result.versions)
    lines = [f"### initaudit: `{_title(tgt)}` across {across}", ""]
    if result.drift:
        n = sum(p.drift for p in result.pairs)
        lines.append(
            f"**❌ drift**: {n} of {len(result.pairs)} upgrade step(s) change the initial weights."
        )
    else:
        lines.append("**✅ identical**: every column builds the same initial weights.")
    lines.append("")
    for pair in result.pairs:
        lines.append(f"- {pair_summary(pair)}")
        for change in env_changes(pair.data):
            lines.append(f"  - environment {change}")
    heads = [f"torch {v}" if result.torch_only else v for v in result.versions]
    lines += ["", "| tensor | " + " | ".join(heads) + " |"]
    lines.append("|---" * (len(result.versions) + 1) + "|")
    current = None
    for module, name, cells in tensor_rows(result):
        if module != current:
            lines.append(f"| **{module}** |" + " |" * len(cells))
            current = module
        shown = [f"`{cells[0]}`"] + [
            c if c in ("identical", "—") else f"**{c}**" for c in cells[1:]
        ]
        lines.append(f"| `{name}` | " + " | ".join(shown) + " |")
    lines.append("")
    return "\n".join(lines)


def print_markdown(result: MatrixResult) -> None:
    """Print the markdown report on stdout."""
    sys.stdout.write(render.safe_block(matrix_markdown(result)))
    sys.stdout.flush()
