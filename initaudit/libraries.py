"""Which code a source file belongs to: torch, initaudit itself, the stdlib, a library, or the user.

A file under an installed distribution (found through its metadata, editable installs included)
is that :class:`Library`; a file in the working directory's project is the user's. The answer is
cached per file name, since the tracer asks it for every frame of every recorded operation.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import sys
import sysconfig
from dataclasses import dataclass
from typing import Any

_TORCH_DIR = os.path.dirname(importlib.util.find_spec("torch").origin or "torch/") + os.sep
_HERE = os.path.dirname(os.path.abspath(__file__)) + os.sep
_STDLIB_DIRS = tuple(
    {
        os.path.realpath(sysconfig.get_paths()["stdlib"]) + os.sep,
        sysconfig.get_paths()["stdlib"] + os.sep,
    }
)

@dataclass(frozen=True)
class Library:
    """The installed distribution that owns a source file, and the file's path inside it."""

    name: str
    version: str | None
    path: str  # inside the distribution's package: ``models/gpt2/modeling_gpt2.py``


#: What :func:`classify_file` answers for files that are not a library's.
TORCH, SELF, STDLIB, USER = "torch", "self", "stdlib", "user"
_SITE_DIRS = frozenset({"site-packages", "dist-packages"})


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


@functools.cache
def _top_levels(entry: str) -> dict[str, Any]:
    """Top-level import names → the (non-editable) distribution installed in one sys.path entry."""
    import importlib.metadata as md

    out: dict[str, Any] = {}
    try:
        dists = list(md.distributions(path=[entry]))
    except OSError:  # pragma: no cover - unreadable folder
        return out
    for dist in dists:
        if _editable_source(dist) is not None:
            continue  # its files live elsewhere (see _editable_owner)
        names = (dist.read_text("top_level.txt") or "").split()
        if not names:
            names = [
                f.parts[0].removesuffix(".py")
                for f in (dist.files or ())
                if f.parts and not f.parts[0].endswith((".dist-info", ".egg-info", ".pth"))
                and f.parts[0] != ".."
            ]
        for name in names:
            out.setdefault(name, dist)
    return out


def _editable_source(dist: Any) -> str | None:
    """The source folder of an editable install (PEP 610 ``direct_url.json``), else None."""
    import json
    from urllib.parse import unquote, urlparse

    raw = dist.read_text("direct_url.json")
    if not raw:
        return None
    try:
        info = json.loads(raw)
    except ValueError:
        return None
    if not (info.get("dir_info") or {}).get("editable"):
        return None
    url = urlparse(info.get("url", ""))
    return os.path.realpath(unquote(url.path)) if url.scheme == "file" else None


@functools.cache
def _editables() -> tuple[tuple[str, Any], ...]:
    """``(source folder, distribution)`` of every editable install on sys.path, longest first."""
    import importlib.metadata as md

    out = []
    for dist in md.distributions():
        src = _editable_source(dist)
        if src is not None:
            out.append((src, dist))
    return tuple(sorted(out, key=lambda x: -len(x[0])))


def _dist_name(dist: Any) -> str:
    return str(dist.metadata["Name"] or "?")


def _library_of(path: str, cwd: str) -> Library | None:
    """The distribution owning ``path``, unless it is the user's (under ``cwd``, editable)."""
    best = ""
    for entry in sys.path:
        root = os.path.realpath(entry or os.curdir)
        if len(root) > len(best) and _under(path, root) and path != root:
            best = root
    in_project = _under(path, cwd) and not _SITE_DIRS.intersection(path.split(os.sep))
    if best and not in_project:  # the project's own tree on sys.path (an egg-link, src/) is the user's
        rel = os.path.relpath(path, best)
        parts = rel.split(os.sep)
        dist = _top_levels(best).get(parts[0].removesuffix(".py"))
        if dist is not None:
            inner = os.sep.join(parts[1:]) if len(parts) > 1 else rel
            return Library(_dist_name(dist), dist.version, inner.replace(os.sep, "/"))
    if in_project:
        return None  # the user's project: its own files, or a package installed editable from it
    for src, dist in _editables():
        if _under(path, src):
            rel = os.path.relpath(path, src).replace(os.sep, "/")
            return Library(_dist_name(dist), dist.version, rel)
    return None


def classify_file(filename: str) -> str | Library:
    """``torch``, ``self``, ``stdlib``, ``user``, or the :class:`Library` owning the file."""
    if filename.startswith(_TORCH_DIR):
        return TORCH
    if filename.startswith(_HERE):
        return SELF
    if filename.startswith("<") or (
        # site-packages sits inside the stdlib folder in a non-venv install (/usr/local/lib/…)
        filename.startswith(_STDLIB_DIRS) and not _SITE_DIRS.intersection(filename.split(os.sep))
    ):
        return STDLIB
    path = os.path.realpath(filename)
    try:
        cwd = os.path.realpath(os.getcwd())
    except OSError:  # the working directory was removed
        cwd = os.sep + "\0"  # under no path
    lib = _library_of(path, cwd)
    return lib if lib is not None else USER


#: File name → :func:`classify_file`'s answer; the tracer reads it directly on its hot path.
FILE_CLASS: dict[str, str | Library] = {}


#: ``id(code)`` → the tracer's per-code facts (the code object first, so its id stays unique);
#: filled by :mod:`initaudit.trace.callsite`, forgotten with :data:`FILE_CLASS`.
CODE_FACTS: dict[int, tuple[Any, ...]] = {}


def classify(filename: str) -> str | Library:
    """:func:`classify_file`, cached per file name."""
    cls = FILE_CLASS.get(filename)
    if cls is None:
        cls = FILE_CLASS[filename] = classify_file(filename)
    return cls


@functools.cache
def library_version(name: str) -> str | None:
    """The installed version of a distribution, or None when it is not installed."""
    import importlib.metadata as md

    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None


def reset_file_cache() -> None:
    """Forget which distribution owns which file (after installing packages in this process)."""
    FILE_CLASS.clear()
    CODE_FACTS.clear()
    _top_levels.cache_clear()
    _editables.cache_clear()
    library_version.cache_clear()
