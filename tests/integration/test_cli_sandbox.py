"""`drillbook sandbox up` / `down`: the embedded environment started for a user to explore.

Each test gives the sandbox a TMPDIR of its own, so "nothing left" can be checked
precisely: no process mentions that directory and it is empty afterwards.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import psutil
import psycopg
import pytest

from tests.support.cli import Spawned, drillbook, private_tmpdir, processes_mentioning

pytestmark = pytest.mark.integration

START_TIMEOUT_S = 120
STOP_TIMEOUT_S = 60


@pytest.fixture
def sandbox_tmpdir() -> Iterator[Path]:
    path = private_tmpdir("drillbook-sandbox-tmp-")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _details(stdout: str) -> dict[str, str]:
    """The ``  key   value`` lines `sandbox up` prints."""
    found = {}
    for line in stdout.splitlines():
        match = re.match(r"^  (\S+)\s+(\S.*)$", line)
        if match:
            found[match.group(1)] = match.group(2).strip()
    return found


def _orders(dsn: str) -> int:
    with psycopg.connect(dsn, connect_timeout=10) as conn:
        row = conn.execute("SELECT count(*) FROM orders").fetchone()
    assert row is not None
    return int(row[0])


def _assert_nothing_left(tmpdir: Path) -> None:
    assert processes_mentioning(str(tmpdir)) == []
    assert list(tmpdir.iterdir()) == []


class TestDetached:
    def test_up_prints_working_dsns_and_down_removes_everything(
        self, tmp_path: Path, sandbox_tmpdir: Path, sandbox_cache_env: dict[str, str]
    ) -> None:
        """`up --detach` prints DSNs that answer; `down` stops it and leaves no process or file."""
        state = tmp_path / "sb.json"
        env = {**sandbox_cache_env, "TMPDIR": str(sandbox_tmpdir)}
        pid: int | None = None
        try:
            up = drillbook("sandbox", "up", "--detach", "--state", str(state), env=env,
                           timeout=START_TIMEOUT_S)
            assert up.returncode == 0, up.stdout + up.stderr
            assert "sandbox is up" in up.stdout
            pid = int(json.loads(state.read_text())["pid"])
            details = _details(up.stdout)
            assert _orders(details["postgres.production"]) > 0
            with psycopg.connect(details["postgres.scratch"], connect_timeout=10) as conn:
                assert conn.execute("SELECT 1").fetchone() == (1,)
            assert details["s3.endpoint_url"].startswith("http://127.0.0.1:")
            assert details["redis.cache"].startswith("redis://127.0.0.1:")
            assert processes_mentioning(str(sandbox_tmpdir)), "the servers live in the sandbox TMPDIR"

            down = drillbook("sandbox", "down", "--state", str(state), env=env, timeout=STOP_TIMEOUT_S + 10)
            assert down.returncode == 0, down.stdout + down.stderr
            assert "sandbox stopped" in down.stdout
            assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
            assert not state.exists()
            _assert_nothing_left(sandbox_tmpdir)
        finally:
            if pid is not None and psutil.pid_exists(pid) and state.exists():
                drillbook("sandbox", "down", "--state", str(state), env=env, timeout=STOP_TIMEOUT_S + 10)

    def test_down_without_a_sandbox_says_so(self, tmp_path: Path) -> None:
        """`down` with no state file is a no-op that says nothing is running (exit 0)."""
        proc = drillbook("sandbox", "down", "--state", str(tmp_path / "none.json"))
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "no sandbox is running" in proc.stderr


class TestForeground:
    def test_ctrl_c_stops_and_cleans_up(
        self, tmp_path: Path, sandbox_tmpdir: Path, sandbox_cache_env: dict[str, str]
    ) -> None:
        """Foreground `up` interrupted with Ctrl-C (SIGINT to its process group) removes everything."""
        state = tmp_path / "sb.json"
        sandbox = Spawned("sandbox", "up", "--state", str(state),
                          env={**sandbox_cache_env, "TMPDIR": str(sandbox_tmpdir)})
        try:
            sandbox.wait_for_line(lambda line: "stop it with Ctrl-C" in line, timeout=START_TIMEOUT_S)
            details = _details(sandbox.stdout)
            assert _orders(details["postgres.production"]) > 0
            assert state.exists()

            sandbox.interrupt_group()
            code = sandbox.wait(STOP_TIMEOUT_S)
            assert code == 0, sandbox.stdout + sandbox.stderr
            assert "stopping the sandbox" in sandbox.stderr
            assert not state.exists()
            _assert_nothing_left(sandbox_tmpdir)
        finally:
            if sandbox.proc.poll() is None:
                sandbox.kill()
