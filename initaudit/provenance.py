"""Capture the environment a snapshot was taken in: everything that can change initial values."""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from initaudit import __version__
from initaudit.libraries import Library, classify

if TYPE_CHECKING:
    import torch


def cpu_model() -> str:
    """The CPU's model name, as the operating system reports it."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_capability() -> str | None:
    """The SIMD capability ATen dispatches its CPU kernels to (``AVX2``, ``AVX512``, ``DEFAULT``…)."""
    import torch

    fn = getattr(getattr(torch.backends, "cpu", None), "get_cpu_capability", None)
    return fn() if fn is not None else None


def capture(device: str = "cpu", dtype: torch.dtype | None = None) -> dict[str, Any]:
    """Everything about this process that can change a seeded build's values."""
    import torch

    try:
        import numpy

        numpy_version: str | None = numpy.__version__
    except ImportError:
        numpy_version = None
    env: dict[str, Any] = {
        # str(): torch.__version__ is a TorchVersion, which deepdiff reports as a type change.
        "torch": str(torch.__version__),
        "torch_git": getattr(torch.version, "git_version", None),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": cpu_model(),
        "cpu_capability": cpu_capability(),
        "ATEN_CPU_CAPABILITY": os.environ.get("ATEN_CPU_CAPABILITY"),
        "device": device,
        "default_dtype": str(dtype or torch.get_default_dtype()).replace("torch.", ""),
        "numpy": numpy_version,
        "initaudit": __version__,
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "num_threads": torch.get_num_threads(),
    }
    requested = requested_versions()  # set by `matrix` (or a CI job) for what the env is for
    if requested is not None:
        env["env_requirements"] = requested
    if device.startswith("cuda") and torch.cuda.is_available():
        env["cuda"] = torch.version.cuda
        env["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return env


def portable_site(site: str | None) -> str | None:
    """A ``file:line`` made portable: relative to the working directory or to site-packages."""
    if site is None:
        return None
    path, _, line = site.rpartition(":")
    return f"{portable_path(path)}:{line}"


def portable_path(path: str) -> str:
    """A source path without machine-specific prefixes, so snapshots compare across machines."""
    p = os.path.abspath(path)
    cwd = os.getcwd() + os.sep
    if p.startswith(cwd):
        return p[len(cwd) :]
    for marker in ("site-packages" + os.sep, "dist-packages" + os.sep):
        if marker in p:
            return p.split(marker, 1)[1]
    for entry in sys.path:
        if entry and p.startswith(os.path.abspath(entry) + os.sep):
            return os.path.relpath(p, entry)
    return p


def code_provenance(files: set[str], target_file: str | None = None) -> dict[str, Any]:
    """``libraries`` {distribution: version} and ``sources`` {user file: sha256} of code that ran.

    ``files`` are the source files seen on the stack of traced ops; the target's own file
    counts too (its distribution when installed, its digest when it is the user's).
    """
    import hashlib

    libraries: dict[str, str | None] = {}
    sources: dict[str, str] = {}
    for fname in sorted(set(files) | ({target_file} if target_file else set())):
        cls = classify(fname)
        if isinstance(cls, Library):
            libraries[cls.name] = cls.version
        elif cls == "user":
            try:
                digest = hashlib.sha256(Path(fname).read_bytes()).hexdigest()
            except OSError:
                continue
            sources[portable_path(fname)] = "sha256:" + digest
    return {"libraries": dict(sorted(libraries.items())), "sources": sources}



#: Distributions (names separated by spaces or commas) whose installed versions a freeze
#: records as ``provenance["env_requirements"]``: what a matrix column or CI job was made for.
ENV_REQUIREMENTS_VAR = "INITAUDIT_ENV_REQUIREMENTS"


def requirement_name(text: str) -> str:
    """The canonical distribution name of a requirement (``Transformers==5`` → ``transformers``)."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    return canonicalize_name(Requirement(text).name)


def requested_versions() -> dict[str, str | None] | None:
    """``{name: installed version}`` of the distributions ``$INITAUDIT_ENV_REQUIREMENTS`` names
    (None for one not installed), or None when the variable is not set."""
    from importlib import metadata

    from packaging.utils import canonicalize_name

    names = os.environ.get(ENV_REQUIREMENTS_VAR, "").replace(",", " ").split()
    if not names:
        return None
    out: dict[str, str | None] = {}
    for raw in names:
        try:
            name = requirement_name(raw)
        except Exception:
            name = canonicalize_name(raw)
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return dict(sorted(out.items()))
