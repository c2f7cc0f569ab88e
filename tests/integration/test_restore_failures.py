"""Failures from outside the backup: the scratch server dying mid-restore, the subject unreachable.

Both must end as an error that names the target, with cleanup that neither hangs nor
leaves anything behind.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psutil
import psycopg
import pytest

from checks.compare import compare_databases
from checks.errors import DrillbookError, RestoreFailed, TargetUnreachable
from checks.verdict import Outcome
from drills import pgtools
from drills.local import LocalEnvironment, LocalScratch
from drills.restore import RestoreDrill
from drills.targets import StoreSpec

pytestmark = pytest.mark.integration

# pgbench scale 5: 500,000 accounts rows, a ~5 MB custom dump that takes pg_restore a second or
# two here: long enough to kill the server while it runs.
PGBENCH_SCALE = 5
RESTORE_START_TIMEOUT_S = 60
DRILL_TIMEOUT_S = 60
CLOSE_TIMEOUT_S = 30
ORPHAN_EXIT_TIMEOUT_S = 10


@pytest.fixture(scope="module")
def pgbench_dump(local_env: LocalEnvironment, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding one ``pg_dump -Fc`` of a pgbench database (made on the sandbox's scratch)."""
    scratch = local_env.scratch_postgres()
    source = scratch.fresh_database("pgbench-source")
    store = tmp_path_factory.mktemp("pgbench-store")
    try:
        subprocess.run([pgtools.tool("pgbench"), "-i", "-q", "-s", str(PGBENCH_SCALE), "-d", source.dsn],
                       check=True, capture_output=True, timeout=120)
        subprocess.run([pgtools.tool("pg_dump"), "-Fc", "-f", str(store / "pgbench.dump"),
                        "-d", source.dsn], check=True, capture_output=True, timeout=120)
    finally:
        scratch.drop(source)
    return store


@pytest.fixture
def doomed_scratch(sandbox_xdg_cache: Path) -> Iterator[LocalScratch]:
    """A scratch cluster of this test's own, which the test kills."""
    scratch = LocalScratch.start(cache_dir=sandbox_xdg_cache / "drillbook")
    try:
        yield scratch
    finally:
        scratch.close()


def _pg_restore_running() -> bool:
    for child in psutil.Process().children(recursive=True):
        try:
            if child.name() == "pg_restore":
                return True
        except psutil.Error:
            continue  # a short-lived child (e.g. psql) already gone
    return False


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class TestScratchDiesMidRestore:
    def test_error_names_scratch_and_cleanup_leaves_nothing(
        self, pgbench_dump: Path, doomed_scratch: LocalScratch
    ) -> None:
        """SIGKILL to the scratch postmaster during pg_restore: a DrillbookError naming the scratch.

        ``close()`` returns promptly, and after ``scratch.close()`` no process of that
        cluster and none of its files remain.
        """
        postmaster_pid = doomed_scratch.server.pid
        assert postmaster_pid is not None
        port = doomed_scratch.server.port
        drill = RestoreDrill(StoreSpec(name="pgbench", url=str(pgbench_dump)), doomed_scratch)
        outcome: dict[str, BaseException | object] = {}

        def run() -> None:
            try:
                outcome["result"] = drill.run()
            except BaseException as exc:  # noqa: BLE001 - handed to the test thread to assert on
                outcome["error"] = exc

        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        deadline = time.monotonic() + RESTORE_START_TIMEOUT_S
        while not _pg_restore_running():
            assert worker.is_alive(), f"the drill ended before pg_restore started: {outcome}"
            assert time.monotonic() < deadline, "pg_restore never started"
            time.sleep(0.01)
        server_processes = [psutil.Process(postmaster_pid), *psutil.Process(postmaster_pid).children()]
        os.kill(postmaster_pid, signal.SIGKILL)

        worker.join(DRILL_TIMEOUT_S)
        assert not worker.is_alive(), "the drill hung after its scratch server died"
        assert "result" not in outcome, "a restore into a killed server cannot succeed"
        error = outcome["error"]
        assert isinstance(error, RestoreFailed | TargetUnreachable), repr(error)
        assert isinstance(error, DrillbookError)
        assert f"127.0.0.1:{port}" in str(error)
        assert "scratch_restore" in str(error)
        assert error.hint

        close_errors: list[BaseException] = []

        def close() -> None:
            try:
                drill.close()
            except BaseException as exc:  # noqa: BLE001 - close() promises never to raise
                close_errors.append(exc)

        closer = threading.Thread(target=close, daemon=True)
        closer.start()
        closer.join(CLOSE_TIMEOUT_S)
        assert not closer.is_alive(), "RestoreDrill.close() hung on a dead scratch server"
        assert close_errors == []
        phases = {entry["phase"]: entry["status"] for entry in drill.journal.entries}
        assert phases["restore"] == "failed"
        assert phases["cleanup: remove temp files"] == "ok"

        doomed_scratch.close()
        assert doomed_scratch.leftovers() == []
        assert not doomed_scratch.workdir.exists()
        # Orphaned backends notice their postmaster is gone and exit on their own.
        _, alive = psutil.wait_procs(server_processes, timeout=ORPHAN_EXIT_TIMEOUT_S)
        assert [p.pid for p in alive if p.status() != psutil.STATUS_ZOMBIE] == []


class TestSubjectUnreachableDuringComparison:
    def test_closed_port_is_an_error_naming_the_subject(self, local_env: LocalEnvironment) -> None:
        """compare_databases with the subject on a closed port: an ``error`` verdict, not a fail."""
        port = _closed_port()
        dead = f"postgresql://postgres@127.0.0.1:{port}/product"
        restored = local_env.postgres("production").dsn
        verdict = compare_databases(
            lambda: psycopg.connect(dead, connect_timeout=5),
            lambda: psycopg.connect(restored, connect_timeout=5),
            cutoff=datetime.now(UTC),
        )
        assert verdict.outcome is Outcome.ERROR
        assert "subject" in verdict.message
        assert str(port) in verdict.message
        assert verdict.counts_as_fail()

    def test_restored_side_unreachable_is_named_too(self, local_env: LocalEnvironment) -> None:
        """The other side unreachable names the restored database, not the subject."""
        port = _closed_port()
        subject = local_env.postgres("production").dsn
        verdict = compare_databases(
            lambda: psycopg.connect(subject, connect_timeout=5),
            lambda: psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/x", connect_timeout=5),
            cutoff=datetime.now(UTC),
        )
        assert verdict.outcome is Outcome.ERROR
        assert "restored database" in verdict.message
        assert str(port) in verdict.message
