"""The running initaudit as a pure-Python wheel, installed into every environment, and the
fingerprint of its source that tells a cached environment its initaudit layer is stale."""

from __future__ import annotations

import base64
import hashlib
import zipfile
from pathlib import Path

from initaudit import __version__


def _package_dir() -> Path:
    """The package root, ``initaudit/`` (this file is ``initaudit/envs/wheel.py``)."""
    return Path(__file__).resolve().parent.parent


def _package_files() -> list[Path]:
    root = _package_dir()
    return sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".pyo")
    )


def source_fingerprint() -> str:
    """A digest of the running initaudit's package files: changes when its code changes."""
    root = _package_dir()
    h = hashlib.sha256()
    for p in _package_files():
        h.update(p.relative_to(root).as_posix().encode() + b"\0")
        h.update(p.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"sha256={digest}"


def build_wheel(out_dir: Path) -> Path:
    """Write a pure-Python wheel of the running initaudit package into ``out_dir``."""
    from importlib import metadata

    try:
        requires = metadata.requires("initaudit") or []
    except metadata.PackageNotFoundError:
        requires = []
    dist = f"initaudit-{__version__}.dist-info"
    meta = "Metadata-Version: 2.1\nName: initaudit\nVersion: " + __version__ + "\n"
    meta += "".join(f"Requires-Dist: {r}\n" for r in requires)
    files: list[tuple[str, bytes]] = []
    root = _package_dir()
    for p in _package_files():
        files.append((f"initaudit/{p.relative_to(root).as_posix()}", p.read_bytes()))
    files.append((f"{dist}/METADATA", meta.encode()))
    files.append(
        (
            f"{dist}/WHEEL",
            b"Wheel-Version: 1.0\nGenerator: initaudit\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
    )
    files.append((f"{dist}/entry_points.txt", b"[pytest11]\ninitaudit = initaudit.pytest_plugin\n"))
    record = "".join(f"{name},{_record_hash(data)},{len(data)}\n" for name, data in files)
    record += f"{dist}/RECORD,,\n"
    wheel = out_dir / f"initaudit-{__version__}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in files:
            zf.writestr(name, data)
        zf.writestr(f"{dist}/RECORD", record)
    return wheel
