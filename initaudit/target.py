"""Resolve a model target (``file.py``, ``file.py:NAME`` or ``package.module:NAME``) to a builder.

A target names an ``nn.Module`` subclass or a callable returning a module; keyword arguments
come from ``--arg KEY=VALUE`` pairs whose values are Python literals.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import importlib.util
import inspect
import json
import os
import re
import sys
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager, redirect_stdout, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from initaudit.errors import BuildInterrupted, TargetError, UsageError

BUILD_FUNCTION = "build_model"
#: A spec ending in one of these names a snapshot (manifest or values), never a model.
SNAPSHOT_SUFFIXES = (".json", ".safetensors")


@dataclass(frozen=True)
class Target:
    """A resolved, buildable model target."""

    spec: str
    name: str
    builder: Callable[..., Any] = field(repr=False, compare=False)
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    source_file: str | None = None

    @property
    def slug(self) -> str:
        """A filesystem-safe name for this target, used for ``snapshots/<slug>/``."""
        base = self.spec.split(":", 1)[0]
        stem = Path(base).stem if base.endswith(".py") else base
        explicit = ":" in self.spec
        slug = f"{stem}.{self.name}" if explicit else stem
        if self.kwargs:
            slug += "-" + args_digest(self.kwargs)
        return slug

    def identity(self) -> dict[str, Any]:
        """What makes two snapshots snapshots of the same target (name and arguments)."""
        return {"name": self.name, "slug": self.slug, "kwargs": jsonable_kwargs(self.kwargs)}

    def build(self) -> nn.Module:
        """Call the builder with the target's keyword arguments; errors name their origin."""
        try:
            with model_output_to_stderr():
                model = self.builder(**self.kwargs)
        except (KeyboardInterrupt, BuildInterrupted):
            raise
        except BaseException as exc:  # SystemExit too: a build that exits has built nothing
            raise TargetError(f"building {self.name} {_raised(exc)}{_user_origin(exc)}") from exc
        if not isinstance(model, nn.Module):
            raise TargetError(
                f"{self.name}() returned {type(model).__name__}, not a torch.nn.Module"
            )
        return model


def parse_shape(text: str) -> tuple[int, ...]:
    """Parse ``--example-input`` text such as ``2,3`` or ``1x3x32x32`` into a shape."""
    body = text.strip().strip("()[]").replace(" ", "")
    if not re.fullmatch(r"\d+([,x×]\d+)*,?", body):
        raise UsageError(f"--example-input {text!r} is not a shape like 2,3 or 1x3x32x32")
    return tuple(int(p) for p in re.split(r"[,x×]", body) if p)


def is_lazy(t: Any) -> bool:
    """Whether ``t`` is a lazy module's parameter or buffer that does not exist yet."""
    return isinstance(t, nn.parameter.UninitializedTensorMixin)


def lazy_tensor_names(model: nn.Module) -> list[str]:
    """Names of the parameters and buffers that wait for a first forward (lazy modules)."""
    out = []
    for prefix, m in model.named_modules():
        for n, t in list(m._parameters.items()) + list(m._buffers.items()):
            if is_lazy(t):
                out.append(f"{prefix}.{n}" if prefix else n)
    return out


def materialize_lazy(model: nn.Module, shape: Iterable[int]) -> nn.Module:
    """Run ``model(torch.zeros(shape))`` once, in eval mode without grad, so lazy modules exist."""
    shape = tuple(shape)
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        with torch.no_grad(), model_output_to_stderr():
            model(torch.zeros(shape))
    except KeyboardInterrupt:
        raise
    except BaseException as exc:
        raise TargetError(
            f"--example-input {','.join(map(str, shape))}: the forward "
            f"model(torch.zeros({shape})) {_raised(exc)}"
        ) from exc
    finally:
        for m, mode in modes.items():
            m.training = mode
    return model


def with_example_input(
    build: Callable[[], nn.Module], shape: Iterable[int] | None
) -> Callable[[], nn.Module]:
    """``build`` followed by one forward on zeros of ``shape`` (or ``build`` itself without one)."""
    if shape is None:
        return build
    dims = tuple(shape)
    return lambda: materialize_lazy(build(), dims)


def jsonable_kwargs(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword arguments as JSON-compatible values (literals stay, others become their repr)."""
    return json.loads(json.dumps(dict(kwargs), sort_keys=True, default=repr))


def args_digest(kwargs: Mapping[str, Any]) -> str:
    """A short stable digest of keyword arguments, to tell targets with other arguments apart."""
    text = json.dumps(jsonable_kwargs(kwargs), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def parse_args(pairs: Iterable[str]) -> dict[str, Any]:
    """Parse ``KEY=VALUE`` strings; VALUE is read as a Python literal."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise UsageError(f"--arg {pair!r} is not KEY=VALUE with KEY a Python identifier")
        try:
            out[key] = ast.literal_eval(raw.strip())
        except (ValueError, SyntaxError):
            raise UsageError(
                f"--arg {key}: {raw!r} is not a Python literal",
                hint=f"quote strings, e.g. --arg {key}='\"{raw}\"'",
            ) from None
    return out


def resolve(spec: str, kwargs: Mapping[str, Any] | None = None) -> Target:
    """Resolve a target spec to a :class:`Target`; raise :class:`TargetError` on any problem."""
    kwargs = dict(kwargs or {})
    base, sep, name = spec.partition(":")
    if sep and not name:
        raise TargetError(f"target {spec!r} has an empty NAME after ':'")
    # Checked before anything is imported: a snapshot path is never a reason to run code.
    if spec.lower().endswith(SNAPSHOT_SUFFIXES):
        raise TargetError(
            f"{spec} names a snapshot file, not a model",
            hint="a model target is file.py, file.py:NAME or package.module:NAME",
        )
    if name and not all(part.isidentifier() for part in name.split(".")):
        raise TargetError(f"target {spec!r}: NAME {name!r} is not a Python name like Net or a.b")
    if base.endswith(".py") or os.sep in base or "/" in base:
        module, source = _load_file(Path(base))
    else:
        module, source = _import_module(base), None
        if not sep:
            raise TargetError(
                f"target {spec!r} needs a NAME: write it as {base}:NAME",
            )
    if name:
        obj = module
        for part in name.split("."):
            if not hasattr(obj, part):
                raise TargetError(
                    f"{base} has no attribute {name!r}",
                    hint=_candidates_hint(module, source),
                )
            obj = getattr(obj, part)
        if not _is_buildable(obj):
            raise TargetError(
                f"{name} in {base} is a {type(obj).__name__}, "
                "not an nn.Module subclass or a function returning one"
            )
        builder, resolved = obj, name
    else:
        builder, resolved = _auto_pick(module, base, bool(kwargs))
    _check_signature(builder, resolved, kwargs)
    if source is None:
        source = getattr(inspect.getmodule(builder), "__file__", None)
    return Target(spec=spec, name=resolved, builder=builder, kwargs=kwargs, source_file=source)


def _load_file(path: Path) -> tuple[Any, str]:
    if not path.exists():
        raise TargetError(f"model file {path} does not exist")
    if not path.is_file():
        raise TargetError(f"model target {path} is not a file")
    path = path.resolve()
    try:
        text = path.read_text(encoding="utf-8")
        compile(text, str(path), "exec")
    except SyntaxError as exc:
        raise TargetError(f"syntax error in {path}:{exc.lineno}: {exc.msg}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TargetError(f"cannot read model file {path}: {exc}") from None
    # Keyed by path and content: a file edited since (rewrite's candidates, a long pytest
    # session) is imported afresh, never served from the first import.
    mod_name = "initaudit_target_" + hashlib.sha256(f"{path}\0{text}".encode()).hexdigest()[:12]
    if mod_name in sys.modules:
        return sys.modules[mod_name], str(path)
    spec = importlib.util.spec_from_file_location(mod_name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    parent = str(path.parent)
    added = parent not in sys.path
    if added:
        sys.path.insert(0, parent)
    try:
        with model_output_to_stderr():
            spec.loader.exec_module(module)
    except KeyboardInterrupt:
        del sys.modules[mod_name]
        raise
    except BaseException as exc:
        del sys.modules[mod_name]
        raise TargetError(f"importing {path} {_raised(exc)}{_user_origin(exc)}") from exc
    return module, str(path)


def _import_module(name: str) -> Any:
    try:
        with model_output_to_stderr():
            return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        raise TargetError(
            f"cannot import module {name!r}: {exc}",
            hint="pass a path ending in .py for a file, or install the package",
        ) from None
    except SyntaxError as exc:
        raise TargetError(f"syntax error in {exc.filename}:{exc.lineno}: {exc.msg}") from None
    except KeyboardInterrupt:
        raise
    except BaseException as exc:
        raise TargetError(f"importing {name} {_raised(exc)}{_user_origin(exc)}") from exc


def _is_buildable(obj: Any) -> bool:
    if inspect.isclass(obj):
        return issubclass(obj, nn.Module)
    return callable(obj)


def _needs_no_args(obj: Any) -> bool:
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return False
    return all(
        p.default is not inspect.Parameter.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        for p in sig.parameters.values()
    )


def _module_classes(module: Any) -> list[str]:
    return sorted(
        n
        for n, v in vars(module).items()
        if inspect.isclass(v) and issubclass(v, nn.Module) and v.__module__ == module.__name__
    )


def _candidates_hint(module: Any, source: str | None) -> str:
    names = _module_classes(module)
    if callable(getattr(module, BUILD_FUNCTION, None)):
        names.insert(0, BUILD_FUNCTION)
    return "candidates: " + ", ".join(names) if names else "it defines no nn.Module subclass"


def _auto_pick(module: Any, base: str, have_args: bool) -> tuple[Any, str]:
    build = getattr(module, BUILD_FUNCTION, None)
    if callable(build):
        return build, BUILD_FUNCTION
    classes = _module_classes(module)
    usable = classes if have_args else [c for c in classes if _needs_no_args(getattr(module, c))]
    if len(usable) == 1:
        return getattr(module, usable[0]), usable[0]
    if not classes:
        raise TargetError(
            f"{base} defines no nn.Module subclass and no {BUILD_FUNCTION}() function"
        )
    if not usable:
        raise TargetError(
            f"every module class in {base} needs arguments: "
            f"name one as {base}:NAME and pass --arg KEY=VALUE",
            hint="candidates: " + ", ".join(classes),
        )
    raise TargetError(
        f"{base} has several candidate models; name one as {base}:NAME",
        hint="candidates: " + ", ".join(usable),
    )


def _check_signature(builder: Any, name: str, kwargs: Mapping[str, Any]) -> None:
    try:
        sig = inspect.signature(builder)
    except (TypeError, ValueError):
        return
    try:
        sig.bind(**kwargs)
    except TypeError as exc:
        raise TargetError(f"arguments do not fit {name}{sig}: {exc}") from None


def _raised(exc: BaseException) -> str:
    """What a model's code did instead of returning: ``called sys.exit(3)`` or ``raised E: msg``."""
    if isinstance(exc, SystemExit):
        return f"called sys.exit({exc.code!r})"
    return f"raised {type(exc).__name__}: {exc}"


@contextmanager
def model_output_to_stderr() -> Iterator[None]:
    """While model code runs, send what it prints (Python or C level) to stderr, not stdout.

    initaudit's stdout carries its report only (``--format json`` stays valid JSON); the file
    descriptor is redirected too when ``sys.stdout`` writes to the process's fd 1.
    """
    out, err = sys.stdout, sys.stderr
    if out is None or err is None:
        yield
        return
    saved = None
    try:
        out.flush()
        if out.fileno() == 1:
            err_fd = err.fileno()
            saved = os.dup(1)
            os.dup2(err_fd, 1)
    except (AttributeError, OSError, ValueError):  # no real descriptors (a test runner's buffer)
        if saved is not None:
            os.close(saved)
            saved = None
    try:
        with redirect_stdout(err):
            yield
    finally:
        with suppress(OSError, ValueError):
            err.flush()
        if saved is not None:
            os.dup2(saved, 1)
            os.close(saved)


def _user_origin(exc: BaseException) -> str:
    """`` (at file:line)`` of the innermost traceback frame outside torch and initaudit."""
    # the folders end in a separator: ``…/torchvision/`` and ``…/torch_geometric/`` are not torch
    skip = tuple(os.path.join(os.path.dirname(f), "") for f in (torch.__file__, __file__))
    site = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename.startswith(skip):
            continue
        site = f"{frame.filename}:{frame.lineno}"
    return f" (at {site})" if site else ""
