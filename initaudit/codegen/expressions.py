"""Write a program's tensors, values and ATen calls as Python expressions.

A :class:`Renderer` names each tensor by its path in the model (``model.fc.weight``, a local
name for a deep module), a scratch variable or a view of either, writes every argument as a
literal that evaluates to exactly the recorded value, and collects the lines it emits.
"""

from __future__ import annotations

import keyword
import math
from typing import Any

import torch
from torch import nn

from initaudit.codegen.program import CodegenError, Dispatch, Program, Ref
from initaudit.trace.tracer import TensorTrace

_ALIAS_OVER = 56  # tensor paths longer than this go through a local name for their module
_DROP_KWARGS = {"layout", "pin_memory", "requires_grad"}


def fmt_float(v: float) -> str:
    """A Python expression that evaluates to exactly ``v``; ``math.sqrt(5)`` where it is one."""
    if math.isnan(v):
        return 'float("nan")'
    if math.isinf(v):
        return 'float("inf")' if v > 0 else '-float("inf")'
    if v == int(v) and abs(v) < 1e15:
        return repr(float(v))
    if len(repr(v)) <= 10:
        return repr(v)
    sign = "-" if v < 0 else ""
    a = abs(v)
    n = round(a * a)
    if 1 < n < 10**7 and math.sqrt(n) == a:
        return f"{sign}math.sqrt({n})"
    if a < 1:
        n = round(1 / (a * a))
        if 1 < n < 10**7 and 1 / math.sqrt(n) == a:
            return f"{sign}1 / math.sqrt({n})"
    return repr(v)


def _fmt_str(s: str) -> str:
    if '"' not in s and "\\" not in s and s.isprintable():
        return f'"{s}"'
    return repr(s)


class Renderer:
    """Writes a program's tensors, values and ATen calls as expressions; collects the lines."""

    def __init__(self, program: Program, root: str = "model") -> None:
        self.root = root
        self.program = program
        self.model = program.trace.model
        self.final: dict[int, list[TensorTrace]] = {}
        for t in program.trace.tensors:
            if t.record is not None:
                self.final.setdefault(t.record.rid, []).append(t)
        self.vars: dict[int, str] = {}
        self.inline: dict[int, str] = {}
        self.aliases: dict[str, str] = {}  # module name -> local name bound to it
        self.keys: dict[int, list[str]] = {}  # id(container) -> its module keys, for path
        self.taken = {root, "model", "self", "torch", "nn", "math", "bound", "SEED", "initialize"}
        self.uses_math = False
        self.lines: list[str] = []

    # -- expressions --------------------------------------------------------------------
    def path(self, name: str) -> str:
        """The expression for a tensor; a deep module gets a local name first (one line
        ``relative_position_bias = model.encoder.layers[0]…``) so statements stay short."""
        expr = self._path(name)
        mod_name, _, leaf = name.rpartition(".")
        if len(expr) <= _ALIAS_OVER or not mod_name or not expr.endswith("." + leaf):
            return expr
        alias = self.aliases.get(mod_name)
        if alias is None:
            parts = mod_name.split(".")
            stem = "_".join(parts[-2:]) if parts[-1].isdigit() else parts[-1]
            stem = "".join(c if c.isalnum() or c == "_" else "_" for c in stem).strip("_")
            if not stem.isidentifier() or keyword.iskeyword(stem):
                stem = "module"
            alias, n = stem, 1
            while alias in self.taken or alias.startswith("scratch"):
                n += 1
                alias = f"{stem}_{n}"
            self.taken.add(alias)
            self.aliases[mod_name] = alias
            self.emit(f"{alias} = {expr[: -len(leaf) - 1]}")
        return f"{alias}.{leaf}"

    def _path(self, name: str) -> str:
        parts = name.split(".")
        expr, mod = self.root, self.model
        for i, part in enumerate(parts):
            is_last = i == len(parts) - 1
            if part.isdigit() and isinstance(mod, (nn.Sequential, nn.ModuleList)):
                keys = self.keys.get(id(mod))
                if keys is None:  # once per container: a 50,000-long Sequential, 50,000 tensors
                    keys = self.keys[id(mod)] = list(mod._modules)
                if int(part) >= len(keys) or keys[int(part)] != part:
                    # a slice of a Sequential keeps its keys ('1', '2', …): position ≠ name
                    getter = "get_parameter" if self._is_param(name) else "get_buffer"
                    return f"{self.root}.{getter}({_fmt_str(name)})"
                expr += f"[{part}]"
            elif part.isidentifier() and not keyword.iskeyword(part):
                expr += f".{part}"
            else:
                getter = "get_parameter" if self._is_param(name) else "get_buffer"
                return f"{self.root}.{getter}({_fmt_str(name)})"
            if not is_last:
                mod = getattr(mod, "_modules", {}).get(part, None)
                if mod is None:
                    getter = "get_parameter" if self._is_param(name) else "get_buffer"
                    return f"{self.root}.{getter}({_fmt_str(name)})"
        return expr

    def _is_param(self, name: str) -> bool:
        return any(n == name for n, _ in self.model.named_parameters(remove_duplicate=False))

    def tensor(self, ref: Ref) -> str:
        if ref.rid in self.inline:
            # a tensor made inline (``torch.arange(3)``) and read through a view of it
            # (``.view(-1, 1)``, meshgrid's expand): the view must be written out too
            expr = self.inline.pop(ref.rid)
            base = self.program.base.get(ref.rid)
            if base is None or meta_of(base) == meta_of(ref):
                return expr
            return self._view(expr, meta_of(base), ref)
        finals = self.final.get(ref.rid)
        if finals:
            for t in finals:
                if view_of(t.tensor) == meta_of(ref):
                    return self.path(t.name)
            t = finals[0]
            return self._view(self.path(t.name), view_of(t.tensor), ref)
        base = self.program.base.get(ref.rid)
        var = self.vars.get(ref.rid)
        if var is None:
            var = self.declare(ref)
        if base is None or meta_of(base) == meta_of(ref):
            return var
        return self._view(var, meta_of(base), ref)

    def declare(self, ref: Ref) -> str:
        name = f"scratch{len(self.vars) + 1}"
        self.vars[ref.rid] = name
        value = self.program.external_values.get(ref.rid)
        if value is not None:
            self.emit(f"{name} = {self.literal(value)}")
            return name
        base = self.program.base.get(ref.rid) or ref
        self.emit(f"{name} = {self.empty(base)}")
        return name

    def empty(self, base: Ref) -> str:
        size = list(base.size)
        contiguous = torch.empty(base.size).stride() == base.stride if base.size else True
        dt = "" if base.dtype == torch.get_default_dtype() else f", dtype={base.dtype}"
        if contiguous:
            return f"torch.empty({size}{dt})"
        return f"torch.empty_strided({size}, {list(base.stride)}{dt})"

    def literal(self, value: torch.Tensor) -> str:
        data = value.tolist()
        text = self.value(data)
        return f"torch.tensor({text}, dtype={value.dtype})"

    def _view(self, base_expr: str, base: tuple, ref: Ref) -> str:
        size, stride, offset, dtype = base
        if ref.dtype != dtype:
            raise CodegenError(f"{base_expr}: written through a view with another dtype")
        if size and tuple(ref.size) == tuple(size[1:]) and tuple(ref.stride) == tuple(stride[1:]):
            k, rem = divmod(ref.offset - offset, stride[0]) if stride[0] else (0, 1)
            if rem == 0 and 0 <= k < size[0]:
                return f"{base_expr}[{k}]"
        try:
            probe = torch.empty_strided(size, stride, device="meta").expand(ref.size)
            if tuple(probe.stride()) == tuple(ref.stride) and ref.offset == offset:
                return f"{base_expr}.expand({list(ref.size)})"
        except RuntimeError:
            pass
        contiguous = torch.empty(size).stride() == tuple(stride)
        if (
            ref.numel == math.prod(size)
            and ref.offset == offset
            and contiguous
            and torch.empty(ref.size).stride() == tuple(ref.stride)
        ):
            return f"{base_expr}.view({list(ref.size)})"
        if (
            len(size) == 2
            and tuple(ref.size) == tuple(size[::-1])
            and tuple(ref.stride) == tuple(stride[::-1])
            and ref.offset == offset
        ):
            return f"{base_expr}.t()"
        return f"{base_expr}.as_strided({list(ref.size)}, {list(ref.stride)}, {ref.offset})"

    def value(self, v: Any) -> str:
        if isinstance(v, Ref):
            return self.tensor(v)
        if isinstance(v, bool) or v is None:
            return repr(v)
        if isinstance(v, int):
            return repr(v)
        if isinstance(v, float):
            text = fmt_float(v)
            self.uses_math |= "math." in text
            return text
        if isinstance(v, str):
            return _fmt_str(v)
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(self.value(x) for x in v) + "]"
        if isinstance(v, torch.dtype):
            return str(v)
        if isinstance(v, torch.device):
            return f"torch.device({_fmt_str(str(v))})"
        if isinstance(v, (torch.layout, torch.memory_format)):
            return str(v)
        if isinstance(v, torch.Generator):
            raise CodegenError("an op draws from a private torch.Generator")
        raise CodegenError(f"cannot write a {type(v).__name__} argument as code")

    # -- statements ---------------------------------------------------------------------
    def emit(self, line: str) -> None:
        self.lines.append(line)

    def aten_call(self, d: Dispatch, *, skip_first: bool = False) -> tuple[str, str]:
        """(callee, argument text) for a dispatch, as a method, torch function or aten op."""
        schema = d.func._schema
        name = d.name
        pos: list[str] = []
        kws: list[str] = []
        first = None
        pending: list[str] = []
        for i, arg in enumerate(schema.arguments):
            present = i < len(d.args) or arg.name in d.kwargs
            value = d.args[i] if i < len(d.args) else d.kwargs.get(arg.name)
            if i == 0 and arg.name == "self":
                first = value
                continue
            if arg.kwarg_only:
                if not present or value is None or arg.name in _DROP_KWARGS:
                    continue
                if arg.name == "device" and str(value) == "cpu":
                    continue
                if arg.name == "memory_format" and value == torch.preserve_format:
                    continue  # what None means; ``contiguous()``'s clone keeps its format
                if arg.has_default_value() and _same(arg.default_value, value):
                    continue
                kws.append(f"{arg.name}={self.value(value)}")
                continue
            if not present or (arg.has_default_value() and _same(arg.default_value, value)):
                pending.append(self.value(arg.default_value) if arg.has_default_value() else "")
                continue
            pos.extend(pending)
            pending = []
            pos.append(self.value(value))
        has_out = any(a.name == "out" for a in schema.arguments)
        if first is not None and not has_out:
            if isinstance(first, Ref) and hasattr(torch.Tensor, name):
                return f"{self.tensor(first)}.{name}", ", ".join(pos + kws)
        fn = _torch_function(name)
        if fn is not None:
            lead = [self.value(first)] if first is not None else []
            return fn, ", ".join(lead + pos + kws)
        overload = d.func._overloadname
        all_args = ", ".join(
            [self.value(a) for a in d.args] + [f"{k}={self.value(v)}" for k, v in d.kwargs.items()]
        )
        return f"torch.ops.aten.{name}.{overload}", all_args


def _torch_function(name: str) -> str | None:
    """``torch.NAME`` or ``torch.linalg.NAME`` when such a public function exists."""
    if name.startswith("linalg_") and hasattr(torch.linalg, name[7:]):
        return f"torch.linalg.{name[7:]}"
    if not name.startswith("_") and hasattr(torch, name):
        return f"torch.{name}"
    return None


def _same(default: Any, value: Any) -> bool:
    try:
        return bool(default == value) and type(default) is type(value)
    except Exception:
        return False


def meta_of(ref: Ref) -> tuple:
    """``(size, stride, offset, dtype)`` of a recorded view, comparable with :func:`view_of`."""
    return (tuple(ref.size), tuple(ref.stride), ref.offset, ref.dtype)


def view_of(t: torch.Tensor) -> tuple:
    """``(size, stride, offset, dtype)`` of a live tensor, comparable with :func:`meta_of`."""
    return (tuple(t.shape), tuple(t.stride()), t.storage_offset(), t.dtype)
