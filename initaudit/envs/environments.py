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
"""

from __future__ import annotations

import base64
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
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from initaudit import __version__
from initaudit.errors import EnvironmentSetupError, TargetError, UsageError
from initaudit.provenance import ENV_REQUIREMENTS_VAR

MIN_TORCH = "2.1"
MARKER = "initaudit-env.json"
MARKER_FORMAT = "initaudit.env"
ENV_DIR_VAR = "INITAUDIT_ENV_DIR"
#: Set to 1 to build every environment from scratch instead of hard-linking torch-only ones.
NO_LINK_VAR = "INITAUDIT_ENV_NO_LINK"
LOG_NAME = "initaudit-envs.log"
# initaudit's own dependencies besides torch, pinned to the running versions when known.
# numpy: the tracer digests RNG states with Tensor.numpy().
SMALL_DEPS = ("click", "rich", "deepdiff", "safetensors", "libcst", "packaging", "numpy")
#: torch wheels before this release were built against NumPy 1.x: with NumPy 2 their
#: ``Tensor.numpy()`` fails ("Numpy is not available"), so their environments get ``numpy<2``.
NUMPY2_FROM_TORCH = "2.3"

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


# --------------------------------------------------------------------------- versions, paths


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


# --------------------------------------------------------------------------- initaudit wheel


def _package_dir() -> Path:
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


# --------------------------------------------------------------------------- subprocesses


def child_environ() -> dict[str, str]:
    """The environment variables for processes inside an environment: no leaks from outside."""
    env = dict(os.environ)
    for key in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "PYTHONUSERBASE"):
        env.pop(key, None)
    env["PYTHONNOUSERSITE"] = "1"
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PIP_NO_INPUT"] = "1"
    env.setdefault("PYTHONIOENCODING", "utf-8")
    return env


_NETWORK_SIGNS = (
    "NewConnectionError",
    "Temporary failure in name resolution",
    "Network is unreachable",
    "Connection refused",
    "Max retries exceeded",
    "Failed to establish a new connection",
    "ConnectTimeoutError",
)


_GENERIC_PIP_LINES = ("ResolutionImpossible", "for help visit")


def _conflict_causes(lines: list[str]) -> list[str]:
    """The lines under pip's ``The conflict is caused by:`` (one requirement each)."""
    causes: list[str] = []
    inside = False
    for ln in lines:
        if ln.strip() == "The conflict is caused by:":
            inside = True
            continue
        if inside:
            if not ln.strip() or not ln[:1].isspace():
                inside = False
                continue
            causes.append(ln.strip())
    return causes


def pip_error_line(output: str) -> str:
    """pip's most useful error line: a constraint or conflict it names, else its last ``ERROR:``.

    A resolver conflict ends in a generic ``ERROR: ResolutionImpossible: for help visit …``;
    the line that says what conflicts (``The user requested (constraint) torch<=2.14.1``)
    is quoted instead.
    """
    lines = output.splitlines()
    causes = _conflict_causes(lines)
    if causes:
        constrained = [c for c in causes if "(constraint)" in c]
        line = "; ".join(constrained or causes)
    else:
        errors = [ln.strip() for ln in lines if ln.strip().startswith("ERROR:")]
        useful = [e for e in errors if not all(g in e for g in _GENERIC_PIP_LINES)]
        if useful or errors:
            line = (useful or errors)[-1]
        else:
            tail = [ln.strip() for ln in lines if ln.strip()]
            line = tail[-1] if tail else "pip failed without a message"
    return line if len(line) <= 400 else line[:397] + "..."


def _pip_hint(output: str, env_dir: Path) -> str | None:
    if "No space left on device" in output or "[Errno 28]" in output:
        return f"no space left on the disk of {env_dir}; free space or choose --env-dir"
    if any(sign in output for sign in _NETWORK_SIGNS):
        return (
            "pip could not reach a package index (no network?); point pip at a reachable "
            "index or wheel folder with PIP_INDEX_URL / PIP_FIND_LINKS or pip.conf"
        )
    if "(constraint)" in output:
        return (
            "a pip constraints file (pip.conf 'constraint' or PIP_CONSTRAINT) rules this version "
            "out; see 'pip config list'"
        )
    if "(from versions: none)" in output:
        return (
            "pip found no release at all on its indexes: no network, or indexes without it? "
            "Point pip at a reachable index or wheel folder with PIP_INDEX_URL / "
            "PIP_FIND_LINKS or pip.conf"
        )
    return None


def _append_log(env_dir: Path, line: str) -> None:
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    with contextlib.suppress(OSError), open(env_dir / LOG_NAME, "a", encoding="utf-8") as f:
        f.write(f"{stamp} {line}\n")


def _run_pip(python: Path, args: list[str], env_dir: Path, what: str, build_log: Path) -> None:
    """Run ``python -m pip ARGS``; a failure raises with pip's own error line."""
    cmd = [*pip_command(python), *args]
    _append_log(env_dir, "pip " + " ".join(args))
    with open(build_log, "a", encoding="utf-8") as log:
        log.write("$ " + " ".join(cmd) + "\n")
        log.flush()
        proc = subprocess.run(
            cmd,
            env=child_environ(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        )
        log.write(proc.stdout)
    if proc.returncode != 0:
        raise EnvironmentSetupError(
            f"pip could not install {what}: {pip_error_line(proc.stdout)}",
            hint=_pip_hint(proc.stdout, env_dir) or f"full pip output in {build_log}",
        )


def _outer_pip_drives_envs() -> bool:
    """Whether the running interpreter's pip can install into another one (``--python``)."""
    from importlib import metadata

    from packaging.version import Version

    try:
        return Version(metadata.version("pip")) >= Version("22.3")
    except (metadata.PackageNotFoundError, ValueError):
        return False


def pip_command(python: Path) -> list[str]:
    """How to run pip for an environment: the running pip with ``--python``, else its own."""
    if _outer_pip_drives_envs():
        return [sys.executable, "-m", "pip", "--python", str(python)]
    return [str(python), "-m", "pip"]


def _probe(python: Path) -> dict[str, Any]:
    """Import torch and initaudit inside an environment; return what it reports."""
    code = (
        "import json, sys, torch, initaudit; "
        "print(json.dumps({'torch': torch.__version__, 'initaudit': initaudit.__version__, "
        "'python': sys.version.split()[0]}))"
    )
    proc = subprocess.run(
        [str(python), "-c", code], env=child_environ(), capture_output=True, text=True
    )
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise EnvironmentSetupError(f"the new environment cannot import torch: {last}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


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


def _install_initaudit(python: Path, env_dir: Path, build_log: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="initaudit-wheel-") as tmp:
        wheel = build_wheel(Path(tmp))
        _run_pip(
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
        _append_log(env_dir, f"incomplete {path}: rebuilding")
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
            _append_log(env_dir, f"broken {path} ({broken}): rebuilding")
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
            _append_log(env_dir, f"reuse {path}")
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
    _run_pip(
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
            with_pip = not _outer_pip_drives_envs()
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
        _run_pip(
            python,
            ["install", "--no-warn-script-location", "--progress-bar", "off", *reqs],
            env_dir,
            f"torch=={version}" + (f" with {', '.join(extra)}" if extra else ""),
            build_log,
        )
        _install_initaudit(python, env_dir, build_log)
        info = _probe(python)
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
        _append_log(env_dir, f"built {env_dir / slug} (torch {info['torch']})")
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
