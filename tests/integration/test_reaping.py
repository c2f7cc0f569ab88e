"""`kill -9` of drillbook leaves its servers and temp dirs; the next run reaps exactly those.

Each killed run gets a TMPDIR of its own, so "left" and "reaped" are exact: processes mentioning
that directory, and its entries. Decoys that must survive the reaping: a PostgreSQL and a
redis-server this test starts itself (in a directory named like drillbook's, never recorded),
and a record whose owner (this test process) is alive.
"""

from __future__ import annotations

import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis

from drills.processes import PostgresServer, RedisServer
from drills.reaper import Registry
from tests.support.cli import Spawned, drillbook, private_tmpdir, processes_mentioning

pytestmark = pytest.mark.integration

START_TIMEOUT_S = 120
REAP_TIMEOUT_S = 90
# A psql or pg_restore the killed run had started ends once its scratch server is gone.
SETTLE_S = 15.0


@pytest.fixture
def killed_tmpdir() -> Iterator[Path]:
    path = private_tmpdir("drillbook-reap-tmp-")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


class Decoys:
    """Servers and a live record that look like drillbook's leftovers but are not a killed run's."""

    def __init__(self, root: Path, registry: Registry) -> None:
        home = root / "drillbook-local-decoy"
        home.mkdir()
        self.postgres = PostgresServer("decoy", home / "pgdata")
        self.postgres.init()
        self.postgres.start()
        self.redis = RedisServer(home / "redis")
        self.redis.start()
        # A run still going (this test process): its temp dir and server are never touched.
        self.live_dir = root / "drillbook-scratch-live"
        self.live_dir.mkdir()
        self.live_record = registry.track(self.live_dir)
        if self.redis.pid is not None:
            self.live_record.add_server(self.redis.label, self.redis.pid, anchor=home)

    def assert_untouched(self) -> None:
        with psycopg.connect(self.postgres.dsn(), connect_timeout=5) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        client = redis.Redis.from_url(self.redis.url, socket_timeout=5)
        try:
            assert client.ping()
        finally:
            client.close()
        assert self.live_dir.exists()
        assert self.live_record.file.exists()

    def close(self) -> None:
        self.live_record.release()
        self.redis.stop()
        self.postgres.stop()


@pytest.fixture
def decoys(sandbox_cache_env: dict[str, str]) -> Iterator[Decoys]:
    root = private_tmpdir("drillbook-decoys-")
    registry = Registry(Path(sandbox_cache_env["XDG_CACHE_HOME"]) / "drillbook" / "running")
    found = Decoys(root, registry)
    try:
        yield found
    finally:
        found.close()
        shutil.rmtree(root, ignore_errors=True)


def _kill_9(spawned: Spawned) -> None:
    """SIGKILL to drillbook alone, as `kill -9 PID` does: its servers (own sessions) survive."""
    spawned.send(signal.SIGKILL)
    spawned.wait(30)


def _assert_left_behind(tmpdir: Path) -> None:
    assert processes_mentioning(str(tmpdir)), "kill -9 should have left the servers running"
    assert any(entry.name.startswith("drillbook-local-") for entry in tmpdir.iterdir())


def _assert_reaped(tmpdir: Path) -> None:
    deadline = time.monotonic() + SETTLE_S
    while processes_mentioning(str(tmpdir)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert processes_mentioning(str(tmpdir)) == []
    assert list(tmpdir.iterdir()) == []


class TestKilledSandbox:
    def test_sandbox_down_stale_reaps_exactly_what_the_killed_sandbox_left(
        self, tmp_path: Path, killed_tmpdir: Path, sandbox_cache_env: dict[str, str], decoys: Decoys
    ) -> None:
        """`sandbox up` killed with -9; `sandbox down --stale` stops its servers and removes its dir."""
        env = {**sandbox_cache_env, "TMPDIR": str(killed_tmpdir)}
        sandbox = Spawned("sandbox", "up", "--state", str(tmp_path / "sb.json"), env=env)
        try:
            sandbox.wait_for_line(lambda line: "stop it with Ctrl-C" in line, timeout=START_TIMEOUT_S)
            _kill_9(sandbox)
        finally:
            if sandbox.proc.poll() is None:
                sandbox.kill()
        _assert_left_behind(killed_tmpdir)

        down = drillbook("sandbox", "down", "--stale", "--state", str(tmp_path / "sb.json"), env=env,
                         timeout=REAP_TIMEOUT_S)
        assert down.returncode == 0, down.stdout + down.stderr
        assert f"left by drillbook pid {sandbox.proc.pid}" in down.stdout
        assert "reaped PostgreSQL (subject)" in down.stdout
        assert "reaped PostgreSQL (scratch)" in down.stdout
        assert "reaped redis-server" in down.stdout
        assert f"removed temp dir {killed_tmpdir}/drillbook-local-" in down.stdout
        assert "removed the state file of a sandbox that is gone" in down.stdout
        _assert_reaped(killed_tmpdir)
        decoys.assert_untouched()

        again = drillbook("sandbox", "down", "--stale", "--state", str(tmp_path / "sb.json"), env=env)
        assert f"drillbook pid {sandbox.proc.pid}" not in again.stdout, "reaped once, then forgotten"


class TestKilledRun:
    def test_the_next_run_reaps_what_a_killed_run_left(
        self, tmp_path: Path, killed_tmpdir: Path, sandbox_cache_env: dict[str, str], decoys: Decoys
    ) -> None:
        """`drillbook run` killed with -9 mid-run; the next `drillbook run` reaps its leftovers first."""
        env = {**sandbox_cache_env, "TMPDIR": str(killed_tmpdir)}
        run = Spawned("run", "--out", str(tmp_path / "out"), env=env)
        try:
            run.wait_for_line(lambda line: line.strip().startswith(("PASSED", "FAILED", "ERROR")),
                              timeout=START_TIMEOUT_S)
            _kill_9(run)
        finally:
            if run.proc.poll() is None:
                run.kill()
        _assert_left_behind(killed_tmpdir)

        # A tag no scenario carries: the next run reaps, then has nothing to start.
        second = drillbook("run", "--out", str(tmp_path / "out2"), "--tags", "id:NONE-00", env=env,
                           timeout=REAP_TIMEOUT_S)
        assert f"left by drillbook pid {run.proc.pid}" in second.stderr, second.stdout + second.stderr
        assert "drillbook: reaped PostgreSQL (subject)" in second.stderr
        _assert_reaped(killed_tmpdir)
        decoys.assert_untouched()
