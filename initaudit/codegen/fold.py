"""Fold explicit init code over repeated blocks into loops.

Generated code is one statement per op, in RNG order, so a model of many identical blocks (a
ResNet stage, GPT-2's ``h``) repeats the same statements for ``model.h[0]``, ``model.h[1]``, ….
:func:`fold` finds runs of consecutive statements about one block of a container (``ModuleList``,
``Sequential``: the first ``[k]`` in the statement's path), and where consecutive blocks say the
same thing up to their index — and up to the names of local variables they bind, renamed
consistently — it writes them once inside ``for i in range(a, b):``. The loop visits the blocks
in the order the original statements did, so the RNG is drawn in the same order; the caller
verifies the folded code bitwise like any generated code and keeps the unrolled form when it
does not verify.

Indexing an ``nn.Sequential`` walks it from its first block (``model[i]`` is O(i)), so a loop
over a Sequential indexes a list of its blocks made once before the loop: a 50,000-block
Sequential costs 50,000 steps, not 1.25 billion.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: At least this many identical consecutive blocks make a loop.
MIN_BLOCKS = 2
_INDEXED = re.compile(r"\b((?:model|self)(?:\.[A-Za-z_]\w*)*)\[(\d+)\]")
_ASSIGN = re.compile(r"^([A-Za-z_]\w*) = ")
_WORD = re.compile(r"\b[A-Za-z_]\w*\b")


@dataclass
class _Run:
    """Consecutive statements (with their comments) about one block, or about no block."""

    container: str | None
    index: int | None
    lines: list[str]


def _key(line: str) -> tuple[str | None, int | None]:
    m = _INDEXED.search(line)
    return (m.group(1), int(m.group(2))) if m else (None, None)


def _runs(body: list[str]) -> list[_Run]:
    """Split statements into runs; comments and blank lines go with the statement after them."""
    runs: list[_Run] = []
    pending: list[str] = []
    for line in body:
        container, index = _key(line)
        if not line or line.startswith("#") or (container is None and _ASSIGN.match(line)):
            # comments, and locals such as `bound = 1 / math.sqrt(144)`, belong to the
            # statement after them
            pending.append(line)
            continue
        if (
            runs
            and runs[-1].container == container
            and runs[-1].index == index
            and container is not None
        ):
            runs[-1].lines.extend([*pending, line])
        else:
            runs.append(_Run(container, index, [*pending, line]))
        pending = []
    if pending:
        runs.append(_Run(None, None, pending))
    return runs


def _dotted(container: str) -> str:
    """``model.stage_1`` → ``stage_1``: the container as tensor names spell it."""
    return container.split(".", 1)[1] if "." in container else ""


def _template(run: _Run) -> tuple[str, ...] | None:
    """The run's statements with its index and its local names made generic, or None."""
    assert run.container is not None and run.index is not None
    locals_: dict[str, str] = {}
    for line in run.lines:
        m = _ASSIGN.match(line)
        if m and m.group(1) not in locals_:
            locals_[m.group(1)] = f"_L{len(locals_)}"
    exact = f"{run.container}[{run.index}]"
    dotted = _dotted(run.container)
    if dotted:
        name_pat = re.compile(rf"\b{re.escape(dotted)}\.{run.index}(?=[.\s)]|$)")
    else:  # the root's own blocks: "# 3 (Linear)", "3.weight"
        index = run.index
        name_pat = re.compile(rf"(?<=^# ){index}(?=[.\s)]|$)|(?<![\w.=]){index}(?=\.[A-Za-z_])")
    out = []
    lines = run.lines
    while lines and not lines[0]:  # the blank line before a block is not part of it
        lines = lines[1:]
    for line in lines:
        text = line.replace(exact, f"{run.container}[{{i}}]")
        if line.startswith("#"):
            text = name_pat.sub(f"{dotted}.{{i}}" if dotted else "{i}", text)
        if locals_:
            text = _WORD.sub(lambda m: locals_.get(m.group(0), m.group(0)), text)
        out.append(text)
    return tuple(out)


def _local_names(run: _Run) -> dict[str, str]:
    """``_L0`` → the name the run itself binds first, and so on (to write the loop with)."""
    names: dict[str, str] = {}
    for line in run.lines:
        m = _ASSIGN.match(line)
        if m and m.group(1) not in names.values():
            names[f"_L{len(names)}"] = m.group(1)
    return names


def _used_outside(body_runs: list[_Run], start: int, stop: int) -> bool:
    """Whether a local name bound in runs[start:stop] is read by a statement after them."""
    bound = {
        m.group(1)
        for run in body_runs[start:stop]
        for line in run.lines
        if (m := _ASSIGN.match(line))
    }
    for run in body_runs[stop:]:
        for line in run.lines:
            if not bound:
                return False
            if line.startswith("#"):
                continue
            m = _ASSIGN.match(line)
            rhs = line[m.end() :] if m else line
            if bound & set(_WORD.findall(rhs)):
                return True
            if m:  # rebound before any read: the loop's value is dead from here
                bound.discard(m.group(1))
    return False


def _loop(
    runs: list[_Run], template: tuple[str, ...], sequential: frozenset[str], taken: set[str]
) -> list[str]:
    first, last = runs[0].index, runs[-1].index
    assert first is not None and last is not None
    container = runs[0].container
    dotted = _dotted(container or "")
    names = _local_names(runs[0])
    prefix = f"{dotted}." if dotted else ""
    head = [f"# {prefix}{first} … {prefix}{last}: {len(runs)} blocks with the same init"]
    indexed = container
    if container in sequential:
        indexed, k = "blocks", 1
        while indexed in taken:  # a name the code uses elsewhere (an alias `blocks = …`)
            k += 1
            indexed = f"blocks_{k}"
        head.append(f"{indexed} = list({container})")
    bounds = f"{last + 1}" if first == 0 else f"{first}, {last + 1}"
    head.append(f"for i in range({bounds}):")
    body = []
    for line in template:
        if line.startswith("#"):
            text = line.replace(f"{prefix}{{i}}", f"{prefix}i")
        else:
            text = line.replace(f"{container}[{{i}}]", f"{indexed}[i]")
        if names:
            text = _WORD.sub(lambda m: names.get(m.group(0), m.group(0)), text)
        body.append(("    " + text) if text else "")
    # a blank line inside the loop body is fine, but not as its first or last line
    while body and not body[0].strip():
        body.pop(0)
    while body and not body[-1].strip():
        body.pop()
    return head + body


def fold(body: list[str], sequential: frozenset[str] = frozenset()) -> tuple[list[str], int]:
    """``body`` with repeated consecutive blocks written as loops; and how many loops.

    ``sequential`` names the containers (as the code spells them, ``model.features``) that are
    ``nn.Sequential``: a loop over one indexes a list of its blocks.
    """
    runs = _runs(body)
    taken = {w for line in body for w in _WORD.findall(line)}
    templates = [_template(r) if r.container is not None else None for r in runs]
    out: list[str] = []
    loops = 0
    i = 0
    while i < len(runs):
        run, tpl = runs[i], templates[i]
        j = i + 1
        if tpl is not None:
            while (
                j < len(runs)
                and runs[j].container == run.container
                and runs[j].index == runs[j - 1].index + 1  # type: ignore[operator]
                and templates[j] == tpl
            ):
                j += 1
        if j - i >= MIN_BLOCKS and tpl is not None and not _used_outside(runs, i, j):
            lead = [ln for ln in run.lines if not ln]  # keep the blank line before a group
            out.extend(lead[:1])
            out.extend(_loop(runs[i:j], tpl, sequential, taken))
            loops += 1
            i = j
            continue
        out.extend(run.lines)
        i += 1
    return out, loops
