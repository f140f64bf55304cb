"""Safe file primitives for snapshots: names, the folder lock, temp files, fsync, regular-file reads."""

from __future__ import annotations

import errno
import hashlib
import os
import re
import secrets
import stat
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from initaudit.errors import OutputError, SnapshotError

#: Longest name stem kept verbatim in the names derived from a manifest's (values and temp
#: files); a longer one is cut and suffixed with its hash, so derived names stay under 255 bytes.
_STEM_BYTES = 200


HEX_IN_NAME = 16


CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def shorten(name: str) -> str:
    """``name``, or when longer than ``_STEM_BYTES`` bytes its start plus ``~`` and a hash."""
    raw = name.encode("utf-8", "surrogateescape")
    if len(raw) <= _STEM_BYTES:
        return name
    head = raw[: _STEM_BYTES - 17].decode("utf-8", "ignore")  # cut on a character boundary
    return f"{head}~{hashlib.sha256(raw).hexdigest()[:16]}"


def stem_of(manifest_path: Path) -> str:
    name = Path(manifest_path).name
    return shorten(name[: -len(".json")] if name.endswith(".json") else name)


def values_name(manifest_path: Path, sha256: str) -> str:
    """``NAME.<first 16 hex of sha256>.safetensors``: the values file a manifest names."""
    digest = sha256.removeprefix("sha256:")[:HEX_IN_NAME]
    return f"{stem_of(manifest_path)}.{digest}.safetensors"




def check_manifest_path(path: Path) -> None:
    """Refuse a manifest path whose name does not end in ``.json`` (e.g. ``x.safetensors``)."""
    name = Path(path).name
    if not name.endswith(".json") or name == ".json":
        raise OutputError(
            f"{path}: a snapshot manifest's name must end in .json (its values go beside it "
            f"as NAME.<hash>.safetensors)"
            + ("; this name is the values files' suffix" if name.endswith(".safetensors") else "")
        )


@contextmanager
def folder_lock(folder: Path, *, exclusive: bool) -> Iterator[None]:
    """Hold a lock on ``folder`` (flock on the folder itself: no lock file is left behind)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no lock
        yield
        return
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | CLOEXEC)
    except OSError as exc:
        if exclusive:
            raise OutputError(f"cannot lock {folder}: {exc.strerror or exc}") from None
        yield  # a reader that cannot open the folder reads without the lock
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        except OSError:
            if not exclusive:
                yield
                return
            # File systems that lock only files opened for writing (NFS): a lock file.
            os.close(fd)
            fd = -1
            try:
                fd = os.open(folder / ".initaudit.lock", os.O_RDWR | os.O_CREAT | CLOEXEC, 0o666)
                fcntl.flock(fd, fcntl.LOCK_EX)
            except OSError as exc:
                raise OutputError(f"cannot lock {folder}: {exc.strerror or exc}") from None
        yield
    finally:
        if fd >= 0:
            os.close(fd)


def temp_pattern(stem: str) -> re.Pattern[str]:
    # ``.<stem>.json.<8 chars>.tmp`` and ``.<stem>.safetensors.<8 chars>.tmp``: what this writer
    # and earlier initaudit versions (mkstemp) name their temp files.
    return re.compile(rf"\.{re.escape(stem)}\.(?:json|safetensors)\.[a-z0-9_]{{8}}\.tmp")


def new_temp(folder: Path, stem: str, kind: str) -> Path:
    for _ in range(100):
        tmp = folder / f".{stem}.{kind}.{secrets.token_hex(4)}.tmp"
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | CLOEXEC, 0o600))
            return tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temp name in {folder}")  # pragma: no cover


def fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_folder(folder: Path) -> None:
    try:
        fsync(folder)
    except OSError:  # pragma: no cover - some file systems cannot fsync a folder
        pass


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temporary file in ``path``'s folder, then rename it to ``path``."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(
            prefix=f".{shorten(path.name)}.", suffix=".tmp", dir=path.parent
        )
        os.close(fd)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~umask())
        os.replace(tmp, path)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        if tmp.exists():
            tmp.unlink()


def umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def file_kind(mode: int) -> str:
    for test, text in (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return text
    return "not a regular file"


def inside(path: Path, folder: Path) -> Path:
    """``path``, resolved when it is a symbolic link that stays inside ``folder``."""
    if not os.path.islink(path):
        return path
    real = path.resolve()
    base = folder.resolve()
    if real.parent != base and base not in real.parents:
        raise SnapshotError(
            f"{path} is a symbolic link to {real}, outside {folder}; initaudit follows a "
            "symbolic link out of a snapshot folder only when you name it"
        )
    return real


def open_regular(path: Path, what: str, *, follow: bool) -> tuple[int, int]:
    """Open a regular file without blocking (a FIFO or device is refused); ``(fd, size)``."""
    flags = os.O_RDONLY | CLOEXEC | getattr(os, "O_NONBLOCK", 0)
    if not follow:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise SnapshotError(f"{what} {path} does not exist") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP and not follow:
            raise SnapshotError(f"{path} is a symbolic link initaudit does not follow") from None
        raise SnapshotError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        if stat.S_ISDIR(st.st_mode) and what == "snapshot":
            raise SnapshotError(f"{path} is a folder, not a snapshot file")
        raise SnapshotError(
            f"{path} is {file_kind(st.st_mode)}, not a regular file; initaudit reads a {what} only "
            "from a regular file"
        )
    return fd, st.st_size


def pread(fd: int, n: int, offset: int) -> bytes:
    parts = []
    while n > 0:
        chunk = os.pread(fd, min(n, 1 << 24), offset)
        if not chunk:
            break
        parts.append(chunk)
        n -= len(chunk)
        offset += len(chunk)
    return b"".join(parts)
