"""What an environment holds: torch versions and pip requirements, checked before anything is
installed, and the full list an environment is filled with (torch, initaudit's small
dependencies pinned to the running versions, the extra requirements)."""

from __future__ import annotations

from typing import Any

from initaudit.errors import EnvironmentSetupError, UsageError

MIN_TORCH = "2.1"
# initaudit's own dependencies besides torch, pinned to the running versions when known.
# numpy: the tracer digests RNG states with Tensor.numpy().
SMALL_DEPS = ("click", "rich", "deepdiff", "safetensors", "libcst", "packaging", "numpy")
#: torch wheels before this release were built against NumPy 1.x: with NumPy 2 their
#: ``Tensor.numpy()`` fails ("Numpy is not available"), so their environments get ``numpy<2``.
NUMPY2_FROM_TORCH = "2.3"


def parse_version(text: str) -> Any:
    """``text`` as a :class:`packaging.version.Version`; a clear error if it is not one."""
    from packaging.version import InvalidVersion, Version

    try:
        return Version(text)
    except InvalidVersion:
        raise UsageError(
            f"--torch {text!r} is not a version number (expected e.g. 2.13.0 or 2.13.0+cpu)"
        ) from None


def check_supported(version: str) -> str:
    """Refuse, before installing anything, a torch version older than initaudit supports."""
    from packaging.version import Version

    if parse_version(version) < Version(MIN_TORCH):
        raise EnvironmentSetupError(
            f"torch {version} is older than initaudit supports (torch >= {MIN_TORCH}); "
            "nothing was installed"
        )
    return version


def check_requirement(text: str, option: str = "--with") -> str:
    """``text`` as one normalized pip requirement (``transformers==5.0.0``); options refused.

    Only what :class:`packaging.requirements.Requirement` accepts is a requirement: pip options
    (``-e``, ``--index-url …``), paths and anything else pip would read as a flag are refused, so
    a value can never change how pip runs.
    """
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    stripped = text.strip()
    if stripped.startswith("-"):
        raise UsageError(
            f"{option} {text!r} is a pip option, not a requirement; initaudit passes only "
            "requirements to pip (configure indexes in pip.conf or PIP_INDEX_URL)"
        )
    try:
        req = Requirement(stripped)
    except InvalidRequirement as exc:
        first = str(exc).splitlines()[0] if str(exc) else "invalid"
        raise UsageError(
            f"{option} {text!r} is not a pip requirement (expected e.g. transformers==4.57.6): "
            f"{first}"
        ) from None
    req.name = canonicalize_name(req.name)
    return str(req)


def requirements(version: str, extra: tuple[str, ...] = ()) -> list[str]:
    """What goes into an environment besides initaudit: torch, initaudit's deps, extras."""
    from importlib import metadata

    reqs = [f"torch=={version}"]
    old_torch = parse_version(version) < parse_version(NUMPY2_FROM_TORCH)
    for name in SMALL_DEPS:
        try:
            running = metadata.version(name)
        except metadata.PackageNotFoundError:
            reqs.append(name)
            continue
        if name == "numpy" and old_torch and parse_version(running).major >= 2:
            reqs.append("numpy<2")
        else:
            reqs.append(f"{name}=={running}")
    return reqs + list(extra)
