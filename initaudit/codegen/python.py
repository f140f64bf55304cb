"""Render a traced program as the Python source of a standalone ``initialize(model)``.

:func:`generate` replays, in the recorded order, every draw from torch's global RNG (thrown-away
draws included) and every operation that shaped a final parameter or buffer: ``torch.nn.init``
calls as the same calls with every argument written out, other operations as the tensor methods
that ran.
"""

from __future__ import annotations

import inspect
import keyword
import math
import textwrap
from typing import Any

import torch
from torch import nn

from initaudit import __version__
from initaudit.codegen.expressions import Renderer, meta_of, view_of
from initaudit.codegen.fold import fold
from initaudit.codegen.plan import Step, check_explainable, plan, steps_of
from initaudit.codegen.program import CodegenError, Program, Ref, short_site
from initaudit.codegen.wrap import LINE_LENGTH, wrap_line
from initaudit.errors import InitAuditError
from initaudit.trace.naming import module_type_of
from initaudit.trace.tracer import Event

_FACTORY_TO_INPLACE = {"zeros": "zero_()", "ones": "fill_(1)"}


def _init_signature_args(name: str, args: dict[str, Any]) -> list[tuple[str, Any]]:
    sig = inspect.signature(getattr(nn.init, name))
    out = []
    for pname, p in sig.parameters.items():
        if pname == "tensor" or pname == "generator":
            continue
        if pname in args:
            out.append((pname, args[pname]))
        elif p.default is not inspect.Parameter.empty:
            out.append((pname, p.default))
    return out


_DERIVED = ("fan", "fan_in", "fan_out", "gain", "std", "bound")


def _origin_text(ev: Event, line_only: bool = False) -> str:
    site = short_site(ev.site) if ev.site else "?"
    lib = f"{ev.library} {ev.function}" if ev.origin == "library" and ev.library else None
    if line_only:  # inside the user's own file: no line numbers (they move with the edit)
        if ev.origin == "default":
            return f"torch default {ev.scope}"
        return lib or "from the code above"
    if ev.origin == "default":
        return f"torch default {ev.scope or ''} (built at {site})".replace("  ", " ")
    if lib:
        return f"{lib} (built at {site})"
    return f"user code at {site}"


class _Generator:
    def __init__(
        self, program: Program, kept: list[Step], root: str = "model", line_only: bool = False
    ) -> None:
        self.p = program
        self.kept = kept
        self.line_only = line_only
        self.r = Renderer(program, root)
        self.last_group: str | None = None
        self.last_origin: str | None = None
        self.uses_nn = False
        self.touches: dict[int, int] = {}
        self.last_read: dict[int, int] | None = None

    def group_of(self, step: Step) -> tuple[str, str]:
        """(module path, header) of the tensor a step writes."""
        refs = step.writes() + step.fresh()
        for ref in refs:
            finals = self.r.final.get(ref.rid)
            if finals:
                name = finals[0].name
                mod = name.rsplit(".", 1)[0] if "." in name else ""
                kind = module_type_of(self.p.trace.model, name)
                return mod, f"{mod or self.r.root} ({kind})"
        return "", "scratch tensors (not part of the final model)"

    def tensors_of(self, step: Step) -> str:
        """The final tensors a step writes or creates, as one comma-separated string."""
        names = [
            t.name for ref in step.writes() + step.fresh() for t in self.r.final.get(ref.rid, [])
        ]
        return ", ".join(dict.fromkeys(names))

    def prelude(self, residual: set[int]) -> list[str]:
        """Literal values for final tensors that came from outside any traced op."""
        lines = []
        for t in self.p.trace.tensors:
            rec = t.record
            if rec is None or rec.rid not in residual:
                continue
            value = self.p.external_values.get(rec.rid)
            if value is None:
                continue
            ref = self.p.base.get(rec.rid)
            mark = len(self.r.lines)
            target = self.r.path(t.name)
            if ref is not None and meta_of(ref) != view_of(t.tensor):
                target = self.r.tensor(ref)
            lines += self.r.lines[mark:]  # a local name for a deep module
            del self.r.lines[mark:]
            flat = value.flatten()
            if flat.numel() > 0 and bool((flat == flat[0]).all()):
                lines.append(f"{target}.fill_({self.r.value(flat[0].item())})")
            else:
                lines.append(f"{target}.copy_({self.r.literal(value)})")
        if lines:
            lines.insert(0, "# values written as literals in the model's code")
        return lines

    def thrown_away(self, step: Step, i: int) -> bool:
        """True for a draw whose result reaches no final tensor."""
        if not step.random_global:
            return False
        touched = {r.rid for r in step.writes() + step.fresh()}
        if any(rid in self.r.final for rid in touched):
            return False
        if self.last_read is None:  # rid → index of the last kept step that reads it, once
            self.last_read = {}
            for j, s in enumerate(self.kept):
                for d in s.dispatches:
                    for r in d.reads:
                        self.last_read[r.rid] = j
                if s.init and s.first.init_target:
                    self.last_read[s.first.init_target.rid] = j
        return not any(self.last_read.get(rid, -1) > i for rid in touched)

    def run(self) -> list[str]:
        for step in self.kept:
            touched = {r.rid for d in step.dispatches for r in d.reads + d.written + d.fresh}
            if step.init and step.first.init_target:
                touched = {step.first.init_target.rid}
            for rid in touched:
                self.touches[rid] = self.touches.get(rid, 0) + 1
        uses: dict[int, int] = {}
        for step in self.kept:
            for d in step.dispatches if step.init is None else []:
                for r in d.reads:
                    uses[r.rid] = uses.get(r.rid, 0) + 1
        for i, step in enumerate(self.kept):
            group, header = self.group_of(step)
            origin = _origin_text(step.events[0], self.line_only)
            if not group and not header.startswith("model"):
                header = self.last_group or header
            before = len(self.r.lines)
            nxt = self.kept[i + 1] if i + 1 < len(self.kept) else None
            try:
                self.step(step, uses, nxt)
            except Exception as exc:
                what = self.tensors_of(step) or header
                detail = str(exc) if isinstance(exc, CodegenError) else f"{type(exc).__name__}: {exc}"
                raise CodegenError(
                    f"cannot generate the code for {what} (op {step.init or step.first.name} at "
                    f"{short_site(step.events[0].site or '?')}): {detail}"
                ) from exc
            if len(self.r.lines) == before:
                continue
            intro = []
            if header != self.last_group:
                if before:
                    intro.append("")
                intro.append(f"# {header}")
                self.last_group = header
                self.last_origin = None
            if origin != self.last_origin:
                intro.append(f"# {origin}")
                self.last_origin = origin
            if self.thrown_away(step, i):
                intro.append(
                    "# thrown away by the original build: replayed to keep the RNG in step"
                )
            self.r.lines[before:before] = intro
        return self.r.lines

    def step(self, step: Step, uses: dict[int, int], nxt: Step | None) -> None:
        r = self.r
        if step.init is not None:
            self.init_call(step)
            return
        d = step.first
        name = d.name
        if not d.fresh:
            if name == "set_":
                dst, src = d.args[0], d.args[1]
                r.emit(f"{r.tensor(dst)}.copy_({r.tensor(src)})")
                return
            callee, text = r.aten_call(d)
            if callee.startswith("torch.") and not callee.startswith("torch.ops"):
                r.emit(f"{callee}({text})")
            else:
                r.emit(f"{callee}({text})")
            return
        out = d.fresh[0]
        finals = r.final.get(out.rid)
        if name == "lift_fresh" or (d.events and d.events[0].kind == "external" and finals):
            value = self.p.external_values.get(out.rid)
            if finals and value is not None:
                target = r.tensor(out)
                flat = value.flatten()
                if flat.numel() > 0 and bool((flat == flat[0]).all()):
                    r.emit(f"{target}.fill_({r.value(flat[0].item())})")
                else:
                    r.emit(f"{target}.copy_({r.literal(value)})")
            return
        if finals:
            target = r.tensor(out)
            if name in _FACTORY_TO_INPLACE:
                r.emit(f"{target}.{_FACTORY_TO_INPLACE[name]}")
                return
            if name == "full":
                r.emit(f"{target}.fill_({r.value(d.args[1])})")
                return
            if name == "randn" and not d.kwargs.get("generator"):
                r.emit(f"{target}.normal_()")
                return
            if name in ("clone", "_to_copy") and isinstance(d.args[0], Ref):
                r.emit(f"{target}.copy_({r.tensor(d.args[0])})")
                return
            callee, text = r.aten_call(d)
            r.emit(f"{target}.copy_({callee}({text}))")
            return
        if name in ("empty", "empty_like", "new_empty", "empty_strided", "new_empty_strided"):
            return  # declared lazily where first used
        callee, text = r.aten_call(d)
        expr = f"{callee}({text})"
        used = uses.get(out.rid, 0)
        if used == 0:
            r.emit(expr)
            return
        consumer_reads = (
            [x.rid for x in nxt.first.reads] if nxt is not None and nxt.init is None else []
        )
        if used == 1 and consumer_reads.count(out.rid) == 1 and len(d.fresh) == 1:
            r.inline[out.rid] = expr
            return
        var = f"scratch{len(r.vars) + 1}"
        r.vars[out.rid] = var
        r.emit(f"{var} = {expr}")

    def init_call(self, step: Step) -> None:
        r = self.r
        d = step.first
        target_ref = d.init_target
        assert target_ref is not None
        ev = d.events[-1]
        call = step.init or ""
        args = dict(ev.args)
        rid = target_ref.rid
        if (
            rid not in r.final
            and rid not in r.vars
            and self.touches.get(rid) == 1
            and self.p.external_values.get(rid) is None
        ):
            target = r.empty(self.p.base.get(rid) or target_ref)
        else:
            target = r.tensor(target_ref)
        self.uses_nn = True
        pairs = _init_signature_args(call, args)
        derived = {k: args[k] for k in _DERIVED if k in args and k not in dict(pairs)}
        if call == "uniform_" and _is_bias_bound(args):
            n = round(1 / (args["b"] ** 2))
            r.uses_math = True
            r.emit(f"bound = 1 / math.sqrt({n})")
            r.emit(f"# bound = 1 / sqrt(fan_in), fan_in={n}")
            r.emit(f"nn.init.uniform_({target}, a=-bound, b=bound)")
            return
        if derived:
            if "fan" in derived and isinstance(args.get("mode"), str):
                derived = {args["mode"] if k == "fan" else k: v for k, v in derived.items()}
            bits = ", ".join(f"{k}={_short_num(v)}" for k, v in derived.items())
            r.emit(f"# {bits}")
        text = ", ".join(f"{k}={r.value(v)}" for k, v in pairs)
        r.emit(f"nn.init.{call}({target}{', ' if text else ''}{text})")


def _is_bias_bound(args: dict[str, Any]) -> bool:
    a, b = args.get("a"), args.get("b")
    if not isinstance(a, float) or not isinstance(b, float) or a != -b or not 0 < b < 1:
        return False
    n = round(1 / (b * b))
    return n > 1 and 1 / math.sqrt(n) == b


def _short_num(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def generate_body(
    program: Program, root: str = "model", line_only: bool = False
) -> tuple[list[str], bool]:
    """The statements that replay the build on ``root`` (unwrapped), and whether math is used."""
    steps = steps_of(program)
    final_rids = {t.record.rid for t in program.trace.tensors if t.record is not None}
    kept, residual = plan(steps, final_rids)
    check_explainable(program, kept, residual)
    gen = _Generator(program, kept, root, line_only)
    try:
        prelude = gen.prelude(residual)
        body = prelude + ([""] if prelude and kept else []) + gen.run()
    except InitAuditError:
        raise
    except Exception as exc:  # a gap in the generator: a failed audit, never an internal error
        raise CodegenError(f"cannot generate the code ({type(exc).__name__}: {exc})") from exc
    return body, gen.r.uses_math


def sequential_exprs(model: nn.Module, root: str = "model") -> frozenset[str]:
    """The ``nn.Sequential`` containers of ``model`` as generated code spells them."""
    out: set[str] = set()
    exprs: dict[str, tuple[str, nn.Module]] = {"": (root, model)}
    for name, mod in model.named_modules():
        if name:
            parent_name, _, leaf = name.rpartition(".")
            if parent_name not in exprs:
                continue
            parent_expr, parent = exprs[parent_name]
            if leaf.isdigit() and isinstance(parent, (nn.Sequential, nn.ModuleList)):
                expr = f"{parent_expr}[{leaf}]"
            elif leaf.isidentifier() and not keyword.iskeyword(leaf):
                expr = f"{parent_expr}.{leaf}"
            else:
                continue
            exprs[name] = (expr, mod)
        if isinstance(mod, nn.Sequential):
            out.add(exprs[name][0])
    return frozenset(out)


def generate(program: Program, *, unroll: bool = False) -> str:
    """The source of a standalone module whose ``initialize(model)`` reproduces the build.

    Consecutive blocks of a container that get the same init up to their index are written
    as one loop (:mod:`initaudit.codegen.fold`), unless ``unroll``.
    """
    body, uses_math = generate_body(program)
    if not unroll:
        body, _ = fold(body, sequential_exprs(program.trace.model))
    imports = []
    if uses_math:
        imports.append("import math\n")
    third = ["import torch", "from torch import nn"]
    paragraph = (
        f"After ``torch.manual_seed(SEED)``, ``initialize(model)`` sets every parameter and "
        f"buffer of a {program.label} to exactly the values that "
        f"``torch.manual_seed({program.seed})`` followed by building it gives with torch "
        f"{torch.__version__.split('+')[0]}, and leaves torch's global RNG in the same state. "
        "It replays every draw of the original build in order (thrown-away draws too) and "
        "does not rely on torch's module defaults. Re-verify after a torch upgrade:"
    )
    head = (
        f'"""Explicit initialization for {program.label}, generated by initaudit {__version__}.\n'
        "\n" + "\n".join(textwrap.wrap(paragraph, LINE_LENGTH, break_long_words=False)) + "\n\n"
        f"    initaudit explicit {program.spec or 'TARGET'} --check THIS_FILE.py\n"
        '"""\n'
    )
    out = [head, "\n"]
    if imports:
        out.extend(imports)
        out.append("\n")
    out.append("\n".join(third) + "\n")
    out.append("\n")
    out.append(f"SEED = {program.seed}\n")
    out.append("\n\n")
    out.append("def initialize(model: nn.Module) -> None:\n")
    out.append(
        '    """Set every parameter and buffer; call right after torch.manual_seed(SEED)."""\n'
    )
    out.append("    with torch.no_grad():\n")
    if not body:
        body = ["pass"]
    for line in body:
        if not line:
            out.append("\n")
            continue
        text = line.lstrip(" ")  # a loop's body carries its own extra indentation
        for wrapped in wrap_line(text, "        " + " " * (len(line) - len(text))):
            out.append(wrapped + "\n")
    return "".join(out)
