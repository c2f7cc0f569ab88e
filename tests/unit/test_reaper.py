"""drills.reaper: what a killed run left is reaped, and nothing that merely looks like it.

Real processes (``sleep``) and real directories; records are written the way drillbook writes
them, with the owner or the server's identity altered to stage each case.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from drills.reaper import DirEntry, ProcessId, Record, Registry, ServerEntry, _namespace


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return Registry(tmp_path / "running")


@pytest.fixture
def sleeper(tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A live server stand-in working in a drillbook-like temp dir (as redis-server does)."""
    anchor = tmp_path / "drillbook-local-abc"
    anchor.mkdir()
    proc = subprocess.Popen(["sleep", "120"], cwd=anchor, start_new_session=True)
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def _dead_owner() -> ProcessId:
    """The identity of a process that has exited (its pid may be reused: the start time differs)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    identity = ProcessId.of(proc.pid)
    proc.wait()
    assert identity is not None
    return identity


def _server(proc: subprocess.Popen[bytes], *, start_shift: int = 0,
            anchor: str | None = None) -> ServerEntry:
    identity = ProcessId.of(proc.pid)
    assert identity is not None
    return ServerEntry("sleep server", ProcessId(identity.pid, identity.start + start_shift, identity.boot),
                       "sleep", anchor or str(Path(psutil.Process(proc.pid).cwd())))


def _write(registry: Registry, owner: ProcessId, *, servers: list[ServerEntry] | None = None,
           tempdir: Path | None = None, namespace: str | None = None) -> Record:
    entry = None
    if tempdir is not None:
        info = tempdir.stat()
        entry = DirEntry(str(tempdir), info.st_dev, info.st_ino)
    record = Record(registry.root / f"{owner.pid}-test.json", owner, entry,
                    namespace=_namespace() if namespace is None else namespace, servers=servers)
    record.write()
    return record


def _running(proc: subprocess.Popen[bytes]) -> bool:
    return proc.poll() is None


class TestStaleOwner:
    def test_a_dead_owners_server_is_stopped_and_its_record_removed(
        self, registry: Registry, sleeper: subprocess.Popen[bytes]
    ) -> None:
        """A record whose owner is gone: its server (same pid, start time, name, dir) is stopped."""
        record = _write(registry, _dead_owner(), servers=[_server(sleeper)])
        done = registry.reap()
        sleeper.wait(15)
        assert any(line.startswith("reaped sleep server") for line in done), done
        assert not record.file.exists()

    def test_a_live_owners_record_is_left_alone(
        self, registry: Registry, sleeper: subprocess.Popen[bytes], tmp_path: Path
    ) -> None:
        """A run still going keeps its servers and temp dir, however stale they might look."""
        tempdir = tmp_path / "drillbook-scratch-live"
        tempdir.mkdir()
        record = registry.track(tempdir)
        record.add_server("sleep server", sleeper.pid, anchor=tmp_path / "drillbook-local-abc")
        assert registry.reap() == []
        assert _running(sleeper)
        assert tempdir.exists()
        assert record.file.exists()

    def test_a_record_from_another_pid_namespace_is_skipped(
        self, registry: Registry, sleeper: subprocess.Popen[bytes]
    ) -> None:
        """Pids recorded in another namespace (a container sharing the cache) mean nothing here."""
        record = _write(registry, _dead_owner(), servers=[_server(sleeper)], namespace="pid:[1]")
        assert registry.reap() == []
        assert _running(sleeper)
        assert record.file.exists()


class TestPidReuse:
    def test_a_pid_now_held_by_a_process_with_another_start_time_is_not_killed(
        self, registry: Registry, sleeper: subprocess.Popen[bytes]
    ) -> None:
        """The recorded pid is alive but started at another time: a reused pid, someone else's."""
        record = _write(registry, _dead_owner(), servers=[_server(sleeper, start_shift=-100)])
        done = registry.reap()
        assert _running(sleeper)
        assert not any(line.startswith("reaped") for line in done), done
        assert not record.file.exists(), "nothing of the record's is left to reap"

    def test_a_process_no_longer_naming_the_recorded_dir_is_not_killed(
        self, registry: Registry, sleeper: subprocess.Popen[bytes], tmp_path: Path
    ) -> None:
        """Same pid and start time but another directory: not the server drillbook started."""
        other = str(tmp_path / "drillbook-local-other")
        _write(registry, _dead_owner(), servers=[_server(sleeper, anchor=other)])
        registry.reap()
        assert _running(sleeper)

    def test_the_owner_is_identified_by_start_time_too(
        self, registry: Registry, sleeper: subprocess.Popen[bytes]
    ) -> None:
        """An owner pid now held by another process (this one, started at another time) is gone."""
        me = ProcessId.of(os.getpid())
        assert me is not None
        _write(registry, ProcessId(me.pid, me.start - 100, me.boot), servers=[_server(sleeper)])
        registry.reap()
        sleeper.wait(15)
        assert not psutil.pid_exists(sleeper.pid) or sleeper.returncode is not None


class TestTempDirs:
    def test_the_recorded_temp_dir_is_removed(self, registry: Registry, tmp_path: Path) -> None:
        """A dead owner's temp dir (recorded name, device and inode) is removed, with a line saying so."""
        tempdir = tmp_path / "drillbook-restore-x1"
        (tempdir / "sub").mkdir(parents=True)
        (tempdir / "sub" / "dump.sql").write_text("data")
        owner = _dead_owner()
        _write(registry, owner, tempdir=tempdir)
        assert registry.reap() == [f"removed temp dir {tempdir} left by drillbook pid {owner.pid}"]
        assert not tempdir.exists()

    def test_a_new_directory_with_the_recorded_name_is_kept(self, registry: Registry, tmp_path: Path) -> None:
        """The recorded dir was removed and another made with its name (other inode): left alone."""
        tempdir = tmp_path / "drillbook-restore-x2"
        tempdir.mkdir()
        _write(registry, _dead_owner(), tempdir=tempdir)
        tempdir.rmdir()
        (tmp_path / "placeholder").mkdir()  # keeps the old inode from being handed out again
        tempdir.mkdir()
        done = registry.reap()
        assert tempdir.exists()
        assert any("not the directory drillbook created" in line for line in done), done

    def test_a_path_without_a_drillbook_prefix_is_never_removed(
        self, registry: Registry, tmp_path: Path
    ) -> None:
        """A record naming any other directory (edited, or corrupted) removes nothing."""
        tempdir = tmp_path / "precious"
        tempdir.mkdir()
        _write(registry, _dead_owner(), tempdir=tempdir)
        done = registry.reap()
        assert tempdir.exists()
        assert any("does not start with one of drillbook's prefixes" in line for line in done), done

    def test_make_tempdir_refuses_a_foreign_prefix(self, registry: Registry) -> None:
        """Only prefixes the reaper would remove can be recorded."""
        with pytest.raises(ValueError, match="not one of drillbook's"):
            registry.make_tempdir("mine-")

    def test_released_records_are_gone(self, registry: Registry) -> None:
        """A clean close removes the record: nothing is left for a later run to look at."""
        path, record = registry.make_tempdir("drillbook-pgpass-")
        try:
            assert record.file.exists()
            record.release()
            assert list(registry.root.glob("*.json")) == []
        finally:
            path.rmdir()



class TestClockSteps:
    def test_a_live_owner_stays_live_when_the_wall_clock_is_stepped(
        self, registry: Registry, sleeper: subprocess.Popen[bytes], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """An NTP step between recording and reaping must not make a running drill look dead.

        psutil's start time is boot time + ticks with the boot time derived from the clock; a
        step of a few seconds moved it and another run reaped this run's servers mid-test. The
        step is staged by shifting what psutil reports as the boot time.
        """
        tempdir = tmp_path / "drillbook-scratch-live"
        tempdir.mkdir()
        record = registry.track(tempdir)
        record.add_server("sleep server", sleeper.pid, anchor=tmp_path / "drillbook-local-abc")
        stepped = psutil.boot_time() + 3.0
        monkeypatch.setattr(psutil, "boot_time", lambda: stepped)
        monkeypatch.setattr(psutil._pslinux, "boot_time", lambda: stepped)
        assert registry.reap() == []
        assert _running(sleeper)
        assert tempdir.exists()

    def test_a_record_from_before_a_reboot_kills_nothing(
        self, registry: Registry, sleeper: subprocess.Popen[bytes], tmp_path: Path
    ) -> None:
        """Pids from another boot name nothing now: the temp dir goes, no process is signalled."""
        tempdir = tmp_path / "drillbook-scratch-oldboot"
        tempdir.mkdir()
        me = ProcessId.of(os.getpid())
        server = ProcessId.of(sleeper.pid)
        assert me is not None and server is not None
        old = "00000000-0000-0000-0000-000000000000"
        record = _write(registry, ProcessId(me.pid, me.start, old),
                        servers=[ServerEntry("sleep server", ProcessId(server.pid, server.start, old),
                                             "sleep", str(tmp_path / "drillbook-local-abc"))],
                        tempdir=tempdir)
        done = registry.reap()
        assert _running(sleeper)
        assert not tempdir.exists(), done
        assert not record.file.exists()
