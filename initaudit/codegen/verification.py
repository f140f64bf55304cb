"""Verify generated init code bitwise, with torch's module defaults on and replaced by NaN.

:func:`verify` runs a generated ``initialize(model)`` on a freshly built model, once normally and
once with every torch module's ``reset_parameters`` replaced by a NaN fill, and compares every
tensor bitwise and the RNG state with the traced build.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from initaudit.codegen.program import Program
from initaudit.errors import UsageError
from initaudit.target import with_example_input as builder_for
from initaudit.trace import tracer as trace_mod

#: The generated code's file name while it is verified (tracebacks name it).
GENERATED_NAME = "explicit_init.py"


def poison(model: nn.Module, recurse: bool = True) -> None:
    """Fill every parameter and buffer with NaN (integers: 12345) so unset values show."""
    with torch.no_grad():
        for t in list(model.parameters(recurse=recurse)) + list(model.buffers(recurse=recurse)):
            if isinstance(t, nn.parameter.UninitializedTensorMixin):
                continue
            if t.is_floating_point() or t.is_complex():
                t.fill_(float("nan"))
            elif t.dtype == torch.bool:
                t.fill_(True)
            else:
                t.fill_(12345)


@contextmanager
def defaults_disabled() -> Iterator[int]:
    """Replace every torch module's ``reset_parameters``/``_reset_parameters`` by a NaN fill."""
    patched: list[tuple[type, str, Any]] = []

    def nan_fill(self: nn.Module, *args: Any, **kwargs: Any) -> None:
        poison(self, recurse=False)

    seen: set[type] = set()
    for mod_name, mod in list(sys.modules.items()):
        if not mod_name.startswith("torch.nn.modules") or mod is None:
            continue
        for obj in list(vars(mod).values()):
            if not (isinstance(obj, type) and issubclass(obj, nn.Module)) or obj in seen:
                continue
            seen.add(obj)
            for attr in ("reset_parameters", "_reset_parameters"):
                if attr in obj.__dict__:
                    patched.append((obj, attr, obj.__dict__[attr]))
                    setattr(obj, attr, nan_fill)
    try:
        yield len(patched)
    finally:
        for cls, attr, fn in reversed(patched):
            setattr(cls, attr, fn)


def load_initializer(path: Path) -> Callable[[nn.Module], None]:
    """Import a generated file and return its ``initialize`` function."""
    name = f"initaudit_explicit_{abs(hash(str(path)))}_{os.getpid()}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise UsageError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise UsageError(f"importing {path} raised {type(exc).__name__}: {exc}") from exc
    fn = getattr(module, "initialize", None)
    if not callable(fn):
        raise UsageError(f"{path} defines no initialize(model) function")
    return fn


def _bits(t: torch.Tensor) -> torch.Tensor:
    t = t.detach().cpu().contiguous().reshape(-1)
    return t.view(torch.uint8) if t.numel() else t


def compare_model(
    reference: nn.Module, model: nn.Module, rng_expected: str | None = None
) -> list[str]:
    """Names of tensors that differ bitwise (and ``<rng state>``), empty when identical."""
    ref = {n: t for n, _, t, _ in trace_mod.named_tensors(reference)}
    got = {n: t for n, _, t, _ in trace_mod.named_tensors(model)}
    bad = []
    for name, a in ref.items():
        b = got.get(name)
        if b is None:
            bad.append(f"{name} (missing)")
        elif a.shape != b.shape or a.dtype != b.dtype:
            bad.append(f"{name} (shape/dtype {tuple(b.shape)} {b.dtype})")
        elif not torch.equal(_bits(a), _bits(b)):
            bad.append(name)
    for name in got:
        if name not in ref:
            bad.append(f"{name} (unexpected)")
    if rng_expected is not None and trace_mod.rng_digest() != rng_expected:
        bad.append("<torch RNG state after initialize>")
    return bad


@dataclass
class Verification:
    """What :func:`verify` compared and found."""

    tensors: int
    mismatches: dict[str, list[str]]
    modes: list[str]

    @property
    def ok(self) -> bool:
        """True when every mode matched bitwise."""
        return not any(self.mismatches.values())


def verify(
    program: Program,
    initialize: Callable[[nn.Module], None],
    build: Callable[[], nn.Module],
    example_input: tuple[int, ...] | None = None,
) -> Verification:
    """Build fresh models (normally, and with torch defaults NaN-filled), initialize, compare."""
    reference = program.trace.model
    builder = builder_for(build, example_input)
    mismatches: dict[str, list[str]] = {}
    saved = torch.get_rng_state()
    try:
        torch.manual_seed(program.seed + 7919)
        model = builder()
        torch.manual_seed(program.seed)
        initialize(model)
        mismatches["torch defaults on"] = compare_model(reference, model, program.trace.rng_after)
        with defaults_disabled():
            torch.manual_seed(program.seed + 104729)
            model = builder()
        poison(model)
        torch.manual_seed(program.seed)
        initialize(model)
        mismatches["torch defaults replaced by NaN"] = compare_model(
            reference, model, program.trace.rng_after
        )
    finally:
        torch.set_rng_state(saved)
    return Verification(
        tensors=len(trace_mod.named_tensors(reference)),
        mismatches=mismatches,
        modes=list(mismatches),
    )


def verify_source(
    program: Program,
    source: str,
    build: Callable[[], nn.Module],
    example_input: tuple[int, ...] | None = None,
) -> Verification:
    """Write ``source`` to a temporary file, import it and :func:`verify` it."""
    with tempfile.TemporaryDirectory(prefix="initaudit-explicit-") as tmp:
        path = Path(tmp) / GENERATED_NAME
        path.write_text(source, encoding="utf-8")
        fn = load_initializer(path)
        return verify(program, fn, build, example_input)


def failure_message(v: Verification, what: str) -> str:
    """One line naming the tensors that differ in each mode."""
    parts = []
    for mode, bad in v.mismatches.items():
        if bad:
            shown = ", ".join(bad[:8]) + (f" and {len(bad) - 8} more" if len(bad) > 8 else "")
            parts.append(f"{mode}: {shown}")
    return f"{what} does not reproduce the build bit for bit ({'; '.join(parts)})"
