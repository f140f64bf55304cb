"""Snapshot pairs under faults: kill -9 mid-write, concurrent writers, a full disk, FIFOs and
devices where files should be, and values files truncated or corrupted behind their manifest.

Every trial ends with the pair on disk fully hash-checked (``verify_values``): it is the old
or the new snapshot, never a mix. Trial counts are bounded so the file runs in seconds.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from initaudit import snapshot as snap_mod
from initaudit.diff.check import check_snapshot
from initaudit.errors import OutputError, SnapshotError
from initaudit.freeze import freeze
from initaudit.target import resolve

from ..conftest import EXAMPLES, ROOT, run_cli

#: Fault trials per test: enough to land in every phase of a write, few enough for CI.
KILL_TRIALS = 24
CONCURRENT_WRITERS = 4
WRITES_EACH = 12


@pytest.fixture(scope="module")
def two_snapshots():
    """Two real snapshots of the highway example (seeds 0 and 1) that differ in every value."""
    target = resolve(str(EXAMPLES / "highway.py"))
    return freeze(target, seed=0)[0], freeze(target, seed=1)[0]


def _which(path: Path, snaps) -> int:
    """Which of ``snaps`` the pair at ``path`` is; the whole pair is read and hash-checked."""
    loaded = snap_mod.read(path)
    assert list(snap_mod.verify_values(loaded))  # the values file's sha256 and every value
    hashes = [t["hash"] for t in loaded.tensors]
    matches = [i for i, s in enumerate(snaps) if [t["hash"] for t in s.tensors] == hashes]
    assert len(matches) == 1, "the manifest is neither snapshot"
    return matches[0]


def _extra_files(folder: Path, path: Path) -> list[str]:
    """Files in ``folder`` besides the manifest at ``path`` and the values file it names."""
    keep = {path.name}
    values = snap_mod.values_path_for(path)
    if values is not None:
        keep.add(values.name)
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


def _writer_loop(snaps, path: Path, done_fd: int, offset: int = 0) -> None:
    """A forked child: write the snapshots to ``path`` in turn, forever; one byte per write."""
    try:
        i = offset
        while True:
            snap_mod.write(snaps[i % len(snaps)], path, force=True)
            os.write(done_fd, b".")
            i += 1
    finally:
        os._exit(0)


def test_kill_9_at_random_points_of_a_write(tmp_path, two_snapshots):
    """A writer killed at random points of writing a real snapshot leaves the old or the new
    pair, consistent; the next write removes what it left behind (temp files, values)."""
    rng = random.Random(20261201)
    path = tmp_path / "highway.json"
    snap_mod.write(two_snapshots[0], path)
    counts = {"tried": 0, "consistent": 0, "left_something": 0, "cleaned": 0, "writes": 0}
    for _ in range(KILL_TRIALS):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child is killed
            os.close(r)
            _writer_loop(two_snapshots, path, w, offset=rng.randrange(2))
        os.close(w)
        time.sleep(rng.uniform(0.02, 0.25))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.set_blocking(r, False)
        try:
            counts["writes"] += len(os.read(r, 1 << 16) or b"")
        except BlockingIOError:
            pass
        os.close(r)
        counts["tried"] += 1
        _which(path, two_snapshots)  # raises unless consistent
        counts["consistent"] += 1
        left = bool(_extra_files(tmp_path, path))
        counts["left_something"] += left
        snap_mod.write(two_snapshots[rng.randrange(2)], path, force=True)
        assert _extra_files(tmp_path, path) == []
        counts["cleaned"] += left
    print(f"kill -9 trials: {counts}")
    assert counts["consistent"] == counts["tried"] == KILL_TRIALS
    assert counts["writes"] > 0  # the kills landed while the writer was writing


def test_concurrent_writers_to_one_path(tmp_path, two_snapshots):
    """Forked writers hammering one path: every read in between and the final pair are one
    snapshot each, and nothing is left behind."""
    path = tmp_path / "highway.json"
    snap_mod.write(two_snapshots[0], path)
    pids = []
    r, w = os.pipe()
    for k in range(CONCURRENT_WRITERS):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child exits on its own
            os.close(r)
            try:
                for i in range(WRITES_EACH):
                    snap_mod.write(two_snapshots[(i + k) % 2], path, force=True)
                    os.write(w, b".")
            finally:
                os._exit(0)
        pids.append(pid)
    os.close(w)
    reads = vanished = 0
    alive = set(pids)
    while alive:
        # Mid-race, every pair read is whole. Only this can happen: a writer replaces the pair
        # after read() returned and removes the values file the old manifest named.
        try:
            _which(path, two_snapshots)
            reads += 1
        except SnapshotError as exc:
            assert "is missing" in str(exc) or "does not exist" in str(exc), exc
            vanished += 1
        alive = {p for p in alive if os.waitpid(p, os.WNOHANG) == (0, 0)}
    writes = len(os.read(r, 1 << 16))
    os.close(r)
    print(
        f"concurrent writers: {writes} writes by {CONCURRENT_WRITERS} processes, {reads} whole "
        f"reads, {vanished} reads whose values file a later write removed"
    )
    assert writes == CONCURRENT_WRITERS * WRITES_EACH
    _which(path, two_snapshots)
    assert _extra_files(tmp_path, path) == []


def test_concurrent_cli_check_update_and_freeze_force(tmp_path):
    """Four real CLI processes at once on one path (check --update float32 and float64,
    freeze --force seed 0 and 1): all succeed and the final pair is consistent."""
    path = tmp_path / "mlp.json"
    mlp = str(EXAMPLES / "mlp.py")
    snap_mod.write(freeze(resolve(mlp))[0], path)
    env = dict(os.environ, PYTHONPATH=str(ROOT), NO_COLOR="1")
    env.pop("INITAUDIT_DEBUG", None)
    commands = [
        ["check", mlp, "-q", "--update", "--against", str(path)],
        ["check", mlp, "-q", "--update", "--against", str(path), "--dtype", "float64"],
        ["freeze", mlp, "-q", "--force", "--out", str(path)],
        ["freeze", mlp, "-q", "--force", "--out", str(path), "--dtype", "float64"],
    ]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "initaudit", *c],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for c in commands
    ]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    loaded = snap_mod.read(path)
    assert list(snap_mod.verify_values(loaded))
    assert _extra_files(tmp_path, path) == []


# --------------------------------------------------------------------------- full disk


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 5 MiB tmpfs (root only; skipped where mounting is not allowed); unmounted after."""
    mnt = tmp_path / "fs"
    mnt.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("ENOSPC test: needs root to mount a 5 MiB tmpfs")
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=5m", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        pytest.skip(f"ENOSPC test: cannot mount a tmpfs here ({proc.stderr.strip()})")
    try:
        yield mnt
    finally:
        if subprocess.run(["umount", str(mnt)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


@pytest.mark.parametrize("example", ["mlp.py", "highway.py"])
def test_enospc_leaves_the_old_pair_and_no_temp_files(small_tmpfs, example):
    """A write that runs out of space at any point (values, manifest) fails with one line and
    leaves the old pair, consistent, with nothing beside it. (mlp: a manifest larger than its
    values, so the old writer, which freed the old values by renaming over them, failed at the
    manifest and left new values beside the old manifest.)"""
    target = resolve(str(EXAMPLES / example))
    snaps = (freeze(target, seed=0)[0], freeze(target, seed=1)[0])
    path = small_tmpfs / "m.json"
    snap_mod.write(snaps[0], path)
    need = path.stat().st_size + snap_mod.values_path_for(path).stat().st_size
    step = 4096 if need < (64 << 10) else 32 << 10
    filler = small_tmpfs / "filler"
    failed = succeeded = 0
    # Free space from none to more than a whole new pair: out of space in each phase.
    for free in range(0, need + 2 * step, step):
        snap_mod.write(snaps[0], path, force=True)
        st = os.statvfs(small_tmpfs)
        with open(filler, "wb") as f:
            try:
                f.write(b"\0" * max(st.f_bavail * st.f_frsize - free, 0))
            except OSError:
                pass
        try:
            snap_mod.write(snaps[1], path, force=True)
            succeeded += 1
        except OutputError as exc:
            assert "No space left" in str(exc) and "\n" not in str(exc)
            failed += 1
            assert _which(path, snaps) == 0  # the old pair, whole
        else:
            assert _which(path, snaps) == 1
        assert _extra_files(small_tmpfs, path) == ["filler"]
        filler.unlink()
    print(f"ENOSPC trials ({example}): {failed} failed cleanly, {succeeded} fit")
    assert failed >= 2 and succeeded >= 1


# --------------------------------------------------------------------------- special files


def _one_line(proc, *needles: str) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def _pair(folder: Path, name: str = "torch-2.13.0+cpu-seed0.json") -> Path:
    """A copy of the committed mlp snapshot (old layout) in ``folder``."""
    src = ROOT / "snapshots" / "mlp" / "torch-2.13.0+cpu-seed0.json"
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(src, folder / name)
    shutil.copy(src.with_suffix(".safetensors"), folder / src.with_suffix(".safetensors").name)
    return folder / name


def test_a_fifo_in_the_snapshot_folder_is_an_input_error(tmp_path):
    """Decided: a FIFO (or any non-regular file) named *.json in a scanned snapshot folder is
    an input error (exit 2, one line naming it), found without opening it for a blocking read."""
    folder = tmp_path / "snapshots" / "mlp"
    _pair(folder)
    _pair(tmp_path / "other").rename(folder / "torch-2.14.1-seed0.json")  # a second version
    os.mkfifo(folder / "evil.json")
    _one_line(run_cli("diff", str(folder)), "evil.json", "FIFO")
    proc = run_cli(
        "check", str(EXAMPLES / "mlp.py"), "-q", "--snapshot-dir", str(tmp_path / "snapshots")
    )
    _one_line(proc, "evil.json", "FIFO")


def test_fifos_devices_and_symlinks_are_never_read_blindly(tmp_path):
    """A FIFO or /dev/zero as manifest or values file is refused at once; a symbolic link out
    of a scanned folder is refused, one the user names is followed."""
    path = _pair(tmp_path / "a")
    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)
    for bad, what in ((fifo, "FIFO"), (Path("/dev/zero"), "character device")):
        with pytest.raises(SnapshotError, match=what):
            snap_mod.read(bad)
    values = snap_mod.values_path_for(path)
    values.unlink()
    os.mkfifo(values)
    with pytest.raises(SnapshotError, match="FIFO"):
        snap_mod.read(path)
    values.unlink()
    values.symlink_to("/dev/zero")
    with pytest.raises(SnapshotError, match="outside"):
        snap_mod.read(path)
    # the manifest: a named symlink is followed; found by a scan, one leading out is refused
    good = _pair(tmp_path / "b")
    link = tmp_path / "c" / good.name
    link.parent.mkdir()
    link.symlink_to(good)
    shutil.copy(snap_mod.values_path_for(good), link.parent)
    assert snap_mod.read(link).tensors
    with pytest.raises(SnapshotError, match="outside"):
        snap_mod.read(link, within=link.parent)
    big = tmp_path / "big.json"
    with open(big, "wb") as f:
        f.truncate(snap_mod.MAX_MANIFEST_BYTES + 1)  # sparse: costs no disk
    with pytest.raises(SnapshotError, match="initaudit reads manifests of up to"):
        snap_mod.read(big)


# --------------------------------------------------------------------------- damaged values


def _damage(kind: str, values: Path) -> None:
    raw = values.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    if kind == "truncated":
        values.write_bytes(raw[:-1])
    elif kind == "appended":
        values.write_bytes(raw + b"\0")
    elif kind == "cut in the header":
        values.write_bytes(raw[: 8 + n // 2])
    elif kind == "header garbage":
        values.write_bytes(raw[:8] + b"{" * n + raw[8 + n :])
    elif kind == "empty":
        values.write_bytes(b"")
    elif kind in ("reshaped", "retyped", "renamed", "moved"):
        name = next(k for k in header if k != "__metadata__" and "weight" in k)
        if kind == "reshaped":
            header[name]["shape"] = [*header[name]["shape"][::-1], 1]
        elif kind == "retyped":
            header[name]["dtype"] = "I32"
        elif kind == "renamed":
            header[name + "x"] = header.pop(name)
        else:
            a, b = header[name]["data_offsets"]
            header[name]["data_offsets"] = [a + 4, b + 4]
        text = json.dumps(header).encode()
        text += b" " * (n - len(text)) if len(text) <= n else b""
        values.write_bytes(len(text).to_bytes(8, "little") + text + raw[8 + n :])


DAMAGE = [
    "truncated",
    "appended",
    "cut in the header",
    "header garbage",
    "empty",
    "reshaped",
    "retyped",
    "renamed",
    "moved",
]


@pytest.mark.parametrize("kind", DAMAGE)
def test_a_damaged_values_file_fails_read_without_reading_values(tmp_path, kind):
    path = _pair(tmp_path)
    values = snap_mod.values_path_for(path)
    _damage(kind, values)
    with pytest.raises(SnapshotError) as info:
        snap_mod.read(path)
    assert str(values) in str(info.value) and "\n" not in str(info.value)


def test_truncated_values_fail_diff_check_and_inspect(tmp_path):
    """A truncated values file beside an unchanged manifest used to pass diff, check and
    inspect with exit 0 (their digests agree, so no value was read)."""
    path = _pair(tmp_path / "s")
    twin = _pair(tmp_path / "t")
    values = snap_mod.values_path_for(path)
    _damage("truncated", values)
    name = str(values)
    _one_line(run_cli("diff", str(twin), str(path)), name, "truncated")
    _one_line(run_cli("inspect", str(path)), name, "truncated")
    proc = run_cli("check", str(EXAMPLES / "mlp.py"), "-q", "--against", str(path))
    _one_line(proc, name, "truncated")
    # --update repairs it, and says why in one line
    proc = run_cli("check", str(EXAMPLES / "mlp.py"), "-q", "--against", str(path), "--update")
    assert proc.returncode == 0, proc.stderr
    repairing = [ln for ln in proc.stderr.splitlines() if "repairing" in ln]
    assert len(repairing) == 1 and name in repairing[0] and "truncated" in repairing[0]
    assert list(snap_mod.verify_values(snap_mod.read(path)))
    assert _extra_files(path.parent, path) == []


def test_check_update_repairs_a_broken_pair(tmp_path, two_snapshots):
    """New values beside an old manifest (the old writer's interrupted state, same shapes, so
    only the hash tells) and a truncated values file: ``check --update`` rewrites the pair."""
    old, new = two_snapshots
    for broken in ("mixed", "truncated"):
        folder = tmp_path / broken
        path = folder / "h.json"
        snap_mod.write(old, path)
        values = snap_mod.values_path_for(path)
        if broken == "mixed":  # the old layout: NAME.safetensors, as earlier versions wrote
            manifest = json.loads(path.read_text())
            staging = snap_mod.write(new, tmp_path / "staging" / "n.json")
            legacy = folder / "h.safetensors"
            shutil.copy(snap_mod.values_path_for(staging), legacy)
            manifest["values"]["file"] = legacy.name
            path.write_text(json.dumps(manifest))
            values.unlink()
        else:
            _damage("truncated", values)
        result = check_snapshot(old, against=path, update=True)
        assert result.repaired and result.written == path and result.exit_code == 0
        assert _which(path, two_snapshots) == 0
        assert _extra_files(folder, path) == []
