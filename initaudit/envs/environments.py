"""Isolated, cached Python environments, one per set of requirements, for cross-version freezes.

Each environment is a ``venv`` made with the running interpreter, filled by the running
interpreter's ``pip --python ENV`` (the venv's own pip when that pip is older than 22.3), so
the machine's pip configuration, indexes and wheel folders apply, and holding
``torch==VERSION``, any extra requirements (``transformers==5.0.0``), initaudit's small
dependencies and initaudit itself, installed from the running installation. One with extra
requirements starts as hard links to the torch-only environment of its version. Environments
are built in a temporary folder beside the cache entry and renamed into place only once
complete (a marker file is written last); anything without the marker is incomplete and
rebuilt, and so is a marked one whose requirements are missing or lost files. Environments are
reused on later runs; the initaudit layer alone is reinstalled when the running initaudit's
source changed.

Beside this module: :mod:`initaudit.envs.versions` (what an environment holds),
:mod:`initaudit.envs.pip` (the processes that fill it) and :mod:`initaudit.envs.wheel` (the
running initaudit as a wheel, and its source fingerprint).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from initaudit import __version__
from initaudit.envs.pip import LOG_NAME as LOG_NAME  # re-exported: the cache's log file
from initaudit.envs.pip import (
    append_log,
    child_environ,
    outer_pip_drives_envs,
    probe,
    run_pip,
)
from initaudit.envs.pip import pip_error_line as pip_error_line  # re-exported
from initaudit.envs.versions import check_requirement, check_supported, requirements
from initaudit.envs.versions import parse_version as parse_version  # re-exported
from initaudit.envs.wheel import build_wheel, source_fingerprint
from initaudit.errors import EnvironmentSetupError, TargetError
from initaudit.provenance import ENV_REQUIREMENTS_VAR

MARKER = "initaudit-env.json"
MARKER_FORMAT = "initaudit.env"
ENV_DIR_VAR = "INITAUDIT_ENV_DIR"
#: Set to 1 to build every environment from scratch instead of hard-linking torch-only ones.
NO_LINK_VAR = "INITAUDIT_ENV_NO_LINK"

Log = Callable[[str], None]


def _no_log(message: str) -> None:
    """Discard a progress message."""


@dataclass
class TorchEnv:
    """A complete environment holding one torch version."""

    requested: str
    path: Path
    torch_version: str
    reused: bool

    @property
    def python(self) -> Path:
        """The environment's interpreter."""
        return env_python(self.path)


# --------------------------------------------------------------------------- paths


def default_env_dir() -> Path:
    """``$INITAUDIT_ENV_DIR``, else ``$XDG_CACHE_HOME/initaudit/envs`` (``~/.cache/...``)."""
    if os.environ.get(ENV_DIR_VAR):
        return Path(os.environ[ENV_DIR_VAR]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache).expanduser() / "initaudit" / "envs"


def env_slug(version: str, extra: tuple[str, ...] = ()) -> str:
    """``torch-2.13.0-py311`` (plus a digest and the pins of extra requirements): the cache
    entry's name, e.g. ``torch-2.13.0-py311-x1a2b3c4d-transformers-5.0.0``."""
    safe = re.sub(r"[^A-Za-z0-9.+_-]", "_", version)
    slug = f"torch-{safe}-py{sys.version_info[0]}{sys.version_info[1]}"
    if extra:
        slug += "-x" + hashlib.sha256("\n".join(sorted(extra)).encode()).hexdigest()[:8]
        pins = [m.group(1) + "-" + m.group(2) for m in map(_PIN.fullmatch, sorted(extra)) if m]
        readable = re.sub(r"[^A-Za-z0-9.+_-]", "_", "-".join(pins))[:60]
        if readable:
            slug += "-" + readable
    return slug


_PIN = re.compile(r"([A-Za-z0-9._-]+)==([A-Za-z0-9.+!_-]+)")


def env_python(path: Path) -> Path:
    """The interpreter inside a venv folder."""
    if sys.platform == "win32":  # pragma: no cover
        return path / "Scripts" / "python.exe"
    return path / "bin" / "python"


def read_marker(path: Path) -> dict[str, Any] | None:
    """The completeness marker of an environment folder, or None when it is incomplete."""
    try:
        data = json.loads((path / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format") != MARKER_FORMAT:
        return None
    if not env_python(path).exists():  # the base interpreter moved or was removed
        return None
    return data


def site_packages(path: Path) -> Path | None:
    """The ``site-packages`` folder of a venv, or None when there is none."""
    if sys.platform == "win32":  # pragma: no cover
        found = path / "Lib" / "site-packages"
        return found if found.is_dir() else None
    for found in sorted(path.glob("lib/python*/site-packages")):
        return found
    return None


def installed_versions(path: Path) -> dict[str, str]:
    """``{canonical name: version}`` of every distribution installed in a venv (read from disk)."""
    from importlib import metadata

    from packaging.utils import canonicalize_name

    site = site_packages(path)
    if site is None:
        return {}
    out: dict[str, str] = {}
    for dist in metadata.distributions(path=[str(site)]):
        name = dist.metadata["Name"] if dist.metadata else None
        if name:
            out.setdefault(canonicalize_name(name), dist.version)
    return out


def check_env(path: Path, marker: dict[str, Any]) -> str | None:
    """Why a marked environment cannot be used (a requirement missing, changed or with files
    deleted), or None when every requirement it was built with is installed and whole."""
    from importlib import metadata

    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    site = site_packages(path)
    if site is None:
        return "it has no site-packages folder"
    dists = {}
    for dist in metadata.distributions(path=[str(site)]):
        name = dist.metadata["Name"] if dist.metadata else None
        if name:
            dists.setdefault(canonicalize_name(name), dist)
    wanted = [r for r in (marker.get("requirements") or []) if isinstance(r, str)]
    for text in [*wanted, "initaudit"]:
        try:
            req = Requirement(text)
        except InvalidRequirement:
            return f"its marker names an invalid requirement {text!r}"
        dist = dists.get(canonicalize_name(req.name))
        if dist is None:
            return f"{req.name} is not installed in it"
        if req.specifier and not req.specifier.contains(dist.version, prereleases=True):
            return f"it holds {req.name} {dist.version}, not {req}"
        for f in dist.files or []:
            if f.suffix in (".pyc", ".pyo") or "__pycache__" in f.parts or ".." in f.parts:
                continue
            if not Path(dist.locate_file(f)).exists():
                return f"{req.name}'s file {f.as_posix()} is missing"
    return None


# --------------------------------------------------------------------------- locking


@contextlib.contextmanager
def _locked(env_dir: Path, slug: str) -> Iterator[None]:
    """Hold an exclusive lock on one cache entry (other processes building it wait)."""
    lock_dir = env_dir / ".locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no cross-process lock
        yield
        return
    with open(lock_dir / f"{slug}.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _oserror(exc: OSError, env_dir: Path, what: str) -> EnvironmentSetupError:
    if exc.errno == errno.ENOSPC:
        return EnvironmentSetupError(
            f"no space left on device while {what} in {env_dir}",
            hint="free space or choose another folder with --env-dir / INITAUDIT_ENV_DIR",
        )
    return EnvironmentSetupError(f"cannot {what} in {env_dir}: {exc.strerror or exc}")


# --------------------------------------------------------------------------- building


def _install_initaudit(python: Path, env_dir: Path, build_log: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="initaudit-wheel-") as tmp:
        wheel = build_wheel(Path(tmp))
        run_pip(
            python,
            [
                "install",
                "--no-deps",
                "--no-index",
                "--force-reinstall",
                "--no-warn-script-location",
                str(wheel),
            ],
            env_dir,
            "initaudit itself",
            build_log,
        )


def _write_marker(path: Path, data: dict[str, Any]) -> None:
    tmp = path / f".{MARKER}.tmp"
    tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path / MARKER)


def _clean_stale(env_dir: Path, slug: str, log: Log) -> None:
    """Remove leftovers of interrupted builds of ``slug`` (we hold its lock)."""
    for p in env_dir.glob(f".tmp-{slug}-*"):
        log(f"removing an interrupted build: {p}")
        shutil.rmtree(p, ignore_errors=True)
    path = env_dir / slug
    if path.exists() and read_marker(path) is None:
        log(f"environment {path} is incomplete (interrupted install?); rebuilding it")
        append_log(env_dir, f"incomplete {path}: rebuilding")
        shutil.rmtree(path, ignore_errors=True)
        if path.exists():
            raise EnvironmentSetupError(f"cannot remove the incomplete environment {path}")


def ensure(
    version: str,
    env_dir: Path | None = None,
    *,
    extra: tuple[str, ...] = (),
    log: Log = _no_log,
) -> TorchEnv:
    """A complete environment with ``torch==version``: reused from the cache or built now."""
    version = check_supported(version)
    extra = tuple(check_requirement(x) for x in extra)
    env_dir = Path(env_dir) if env_dir is not None else default_env_dir()
    try:
        env_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _oserror(exc, env_dir, "create the environment folder") from None
    slug = env_slug(version, extra)
    path = env_dir / slug
    fingerprint = source_fingerprint()
    with _locked(env_dir, slug):
        marker = read_marker(path)
        broken = check_env(path, marker) if marker is not None else None
        if broken is not None:
            log(f"environment {path} is broken ({broken}); rebuilding it")
            append_log(env_dir, f"broken {path} ({broken}): rebuilding")
            shutil.rmtree(path, ignore_errors=True)
            if path.exists():
                raise EnvironmentSetupError(f"cannot remove the broken environment {path}")
            marker = None
        if marker is not None:
            reqs = requirements(version, extra)
            if marker.get("requirements") != reqs:
                log(f"torch {version}: updating the dependencies in {path}")
                marker = _refresh_requirements(path, marker, reqs, env_dir)
            if marker.get("initaudit_source") != fingerprint:
                log(f"torch {version}: refreshing initaudit in {path} (its source changed)")
                _refresh_initaudit(path, marker, fingerprint, env_dir)
            append_log(env_dir, f"reuse {path}")
            return TorchEnv(version, path, marker["torch"], reused=True)
        _clean_stale(env_dir, slug, log)
        base = None
        if extra and os.environ.get(NO_LINK_VAR, "") in ("", "0"):
            # torch once per version: extra-requirement environments start from the torch-only
            # one (built now if missing; its own lock, always taken after this one)
            base = ensure(version, env_dir, log=log).path
        what = f"torch {version}" + (f" with {' '.join(extra)}" if extra else "")
        log(f"{what}: building a new environment in {path} (reused on later runs)")
        _build(version, env_dir, slug, extra, fingerprint, base=base, log=log)
        marker = read_marker(path)
        if marker is None:  # pragma: no cover - _build renames a marked folder into place
            raise EnvironmentSetupError(f"environment {path} is incomplete after building it")
        return TorchEnv(version, path, marker["torch"], reused=False)


def _refresh_requirements(
    path: Path, marker: dict[str, Any], reqs: list[str], env_dir: Path
) -> dict[str, Any]:
    """Install changed requirements (initaudit's deps moved) into a complete environment."""
    build_log = env_dir / "logs" / f"{path.name}.log"
    build_log.parent.mkdir(parents=True, exist_ok=True)
    _write_marker(path, dict(marker, requirements=None))  # an interrupted update is retried
    run_pip(
        env_python(path),
        ["install", "--no-warn-script-location", "--progress-bar", "off", *reqs],
        env_dir,
        ", ".join(reqs),
        build_log,
    )
    marker = dict(marker, requirements=reqs)
    _write_marker(path, marker)
    return marker


def _refresh_initaudit(path: Path, marker: dict[str, Any], fingerprint: str, env_dir: Path) -> None:
    """Reinstall only the initaudit layer of a complete environment."""
    build_log = env_dir / "logs" / f"{path.name}.log"
    build_log.parent.mkdir(parents=True, exist_ok=True)
    stale = dict(marker, initaudit_source=None)
    _write_marker(path, stale)  # an interrupted refresh is retried next time
    _install_initaudit(env_python(path), env_dir, build_log)
    _write_marker(path, dict(marker, initaudit_source=fingerprint, initaudit=__version__))


def _clone(base: Path, dest: Path) -> None:
    """Fill ``dest`` with hard links to a complete environment's files (its marker left out)."""
    shutil.copytree(
        base,
        dest,
        symlinks=True,
        copy_function=os.link,
        dirs_exist_ok=True,
        ignore=shutil.ignore_patterns(MARKER, f".{MARKER}.tmp"),
    )


def _build(
    version: str,
    env_dir: Path,
    slug: str,
    extra: tuple[str, ...],
    fingerprint: str,
    base: Path | None = None,
    log: Log = _no_log,
) -> None:
    """Create the environment in a temporary folder, fill it, mark it complete, rename it.

    With ``base`` (the complete torch-only environment of the same version), the new one starts
    as hard links to its files, so torch is neither unpacked nor stored twice; pip then adds
    the extra requirements (replacing a file unlinks it, so ``base`` is never modified).
    """
    import venv

    logs = env_dir / "logs"
    tmp: Path | None = None
    cloned = False
    try:
        logs.mkdir(parents=True, exist_ok=True)
        build_log = logs / f"{slug}.log"
        build_log.write_text("", encoding="utf-8")
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{slug}-", dir=env_dir))
        if base is not None:
            try:
                _clone(base, tmp)
                cloned = True
                log(f"torch {version}: started from {base} (hard links; torch is not copied)")
            except (OSError, shutil.Error):  # no hard links here (another file system…)
                shutil.rmtree(tmp, ignore_errors=True)
                tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{slug}-", dir=env_dir))
        if not cloned:
            # pip itself is only copied in (ensurepip, ~8 s) when the running pip cannot drive it
            with_pip = not outer_pip_drives_envs()
            venv.EnvBuilder(
                with_pip=with_pip, symlinks=(sys.platform != "win32"), clear=True
            ).create(str(tmp))
    except OSError as exc:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        raise _oserror(exc, env_dir, "create a virtual environment") from None
    except subprocess.CalledProcessError as exc:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        with contextlib.suppress(OSError):
            if shutil.disk_usage(env_dir).free < 64 * 2**20:
                full = OSError(errno.ENOSPC, "no space")
                raise _oserror(full, env_dir, "setting up pip") from None
        raise EnvironmentSetupError(
            f"python -m venv could not set up pip in a new environment ({exc})"
        ) from None
    try:
        python = env_python(tmp)
        reqs = requirements(version, extra)
        run_pip(
            python,
            ["install", "--no-warn-script-location", "--progress-bar", "off", *reqs],
            env_dir,
            f"torch=={version}" + (f" with {', '.join(extra)}" if extra else ""),
            build_log,
        )
        _install_initaudit(python, env_dir, build_log)
        info = probe(python)
        marker = {
            "format": MARKER_FORMAT,
            "torch_requested": version,
            "torch": info["torch"],
            "python": info["python"],
            "initaudit": info["initaudit"],
            "initaudit_source": fingerprint,
            "requirements": reqs,
            "linked_from": str(base) if cloned else None,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
        _write_marker(tmp, marker)  # last: only a complete environment carries it
        os.replace(tmp, env_dir / slug)
        append_log(env_dir, f"built {env_dir / slug} (torch {info['torch']})")
        tmp = None
    except OSError as exc:
        raise _oserror(exc, env_dir, "build an environment") from None
    finally:  # failures and interrupts (Ctrl-C) leave nothing half made
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def list_envs(env_dir: Path | None = None) -> list[tuple[Path, dict[str, Any] | None]]:
    """Every cache entry with its marker (None: incomplete)."""
    env_dir = Path(env_dir) if env_dir is not None else default_env_dir()
    if not env_dir.is_dir():
        return []
    return [
        (p, read_marker(p))
        for p in sorted(env_dir.iterdir())
        if p.is_dir() and p.name.startswith("torch-")
    ]


# --------------------------------------------------------------------------- freezing inside


def freeze_in(
    env: TorchEnv,
    spec: str,
    out: Path,
    *,
    seed: int = 0,
    args: tuple[str, ...] = (),
    device: str = "cpu",
    dtype: str | None = None,
    cwd: Path | None = None,
    record: tuple[str, ...] = (),
    label: str | None = None,
) -> None:
    """Run ``initaudit freeze`` inside ``env`` as a separate process, writing ``out``.

    ``record`` names the distributions whose versions the snapshot's provenance records as
    ``env_requirements`` (the column's requirements); ``label`` names the column in errors.
    """

    where = label or f"torch {env.torch_version}"
    child = child_environ()
    child.pop(ENV_REQUIREMENTS_VAR, None)
    if record:
        child[ENV_REQUIREMENTS_VAR] = " ".join(record)

    cmd = [str(env.python), "-m", "initaudit", "freeze", spec, "--out", str(out)]
    cmd += ["--format", "json", "--force", "-q", "--seed", str(seed), "--device", device]
    for a in args:
        cmd += ["--arg", a]
    if dtype:
        cmd += ["--dtype", dtype]
    proc = subprocess.run(
        cmd,
        cwd=cwd,
        env=child,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
    )
    if proc.returncode == 0 and out.is_file():
        return
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    said = [ln.split("error:", 1)[1].strip() for ln in lines if ln.startswith("initaudit: error:")]
    if said:
        raise TargetError(f"freezing under {where}: {said[-1]}")
    if proc.returncode < 0:
        raise EnvironmentSetupError(f"freezing under {where} crashed (signal {-proc.returncode})")
    raise EnvironmentSetupError(
        f"freezing under {where} failed (exit {proc.returncode}): "
        + (lines[-1] if lines else "no snapshot and no message (does the model call os._exit()?)")
    )
