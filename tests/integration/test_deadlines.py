"""A restore or a migration replay that never ends is cancelled at its deadline, leaving nothing running.

Each dump is built by the test from a real ``pg_dump`` of a small database: a plain dump
with ``SELECT pg_sleep(600);`` in its transaction, and custom-format dumps whose restore
sleeps inside a CHECK constraint or an index expression. For each: the drill raises
:class:`RestoreTimedOut` within a loose bound of its deadline (a correctness bound, not a
performance assertion), the message names the phase and the limit, no session of the
scratch database is left, and cleanup drops the database.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from checks.errors import RestoreTimedOut
from drills import pgtools
from drills.deadlines import Limit
from drills.local import LocalEnvironment
from drills.migrations import MigrationFailed, MigrationReplay, load_migrations
from drills.restore import RestoreDrill
from drills.targets import PostgresTarget, StoreSpec
from tests.support.cli import drillbook, run_directory_backups
from tests.support.pg import admin_dsn

pytestmark = pytest.mark.integration

DEADLINE_S = 3.0
# Cancelling, terminating the sessions and answering: far less than this on any machine.
SLACK_S = 15.0


def _dump(db: PostgresTarget, *args: str) -> bytes:
    return subprocess.run([pgtools.tool("pg_dump"), *args, "-d", admin_dsn(db)],
                          check=True, capture_output=True).stdout


@pytest.fixture
def sleepy_source(local_env: LocalEnvironment, request: pytest.FixtureRequest) -> Iterator[PostgresTarget]:
    """A database whose rows pass through ``public.slow()``, which sleeps in any other database.

    ``request.param``: "plain" (no constraint), "check" or "index".
    """
    how = getattr(request, "param", "plain")
    scratch = local_env.scratch_postgres()
    db = scratch.fresh_database("sleepy-source")
    dbname = psycopg.conninfo.conninfo_to_dict(db.dsn)["dbname"]
    with psycopg.connect(admin_dsn(db), autocommit=True) as conn:
        # IMMUTABLE so an index may use it; it sleeps only where it is restored.
        conn.execute(f"""
            CREATE FUNCTION public.slow(x int) RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS $$
            BEGIN
              IF current_database() <> '{dbname}' THEN PERFORM pg_catalog.pg_sleep(600); END IF;
              RETURN true;
            END $$""")
        conn.execute("CREATE TABLE public.accounts (id int PRIMARY KEY)")
        conn.execute("INSERT INTO public.accounts SELECT generate_series(1, 5)")
        if how == "check":
            conn.execute("ALTER TABLE public.accounts ADD CONSTRAINT slow CHECK (public.slow(id))")
        elif how == "index":
            conn.execute("CREATE INDEX slow ON public.accounts ((public.slow(id)))")
    yield db
    scratch.drop(db)


def _sessions(local_env: LocalEnvironment, target: PostgresTarget) -> list[str]:
    dbname = psycopg.conninfo.conninfo_to_dict(target.dsn)["dbname"]
    with psycopg.connect(admin_dsn(target, dbname="postgres"), autocommit=True) as conn:
        rows = conn.execute("SELECT coalesce(query, '') FROM pg_stat_activity WHERE datname = %s",
                            (dbname,)).fetchall()
    return [str(r[0]) for r in rows]


def _database_exists(target: PostgresTarget) -> bool:
    dbname = psycopg.conninfo.conninfo_to_dict(target.dsn)["dbname"]
    with psycopg.connect(admin_dsn(target, dbname="postgres"), autocommit=True) as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone() is not None


def _cancelled(local_env: LocalEnvironment, tmp_path: Path, name: str, content: bytes) -> tuple[str, float]:
    """Restore under a DEADLINE_S limit; returns the error text and the elapsed time, after checks."""
    store = tmp_path / "store"
    store.mkdir()
    (store / name).write_bytes(content)
    drill = RestoreDrill(StoreSpec(name="sleepy", url=str(store)), local_env.scratch_postgres(),
                         limit=Limit(DEADLINE_S, "test limit"))
    t0 = time.monotonic()
    with drill, pytest.raises(RestoreTimedOut) as caught:
        drill.run()
    elapsed = time.monotonic() - t0
    assert drill.result is not None and drill.result.target is not None
    target = drill.result.target
    # The with-block closed the drill: the database is dropped; no session of it survived.
    assert not _database_exists(target)
    assert _sessions(local_env, target) == []
    assert elapsed < DEADLINE_S + SLACK_S, elapsed
    return str(caught.value), elapsed


class TestRestoreDeadline:
    def test_plain_dump_sleeping_in_psql_is_cancelled(
        self, local_env: LocalEnvironment, sleepy_source: PostgresTarget, tmp_path: Path
    ) -> None:
        """``SELECT pg_sleep(600);`` inside the dump: psql is killed, its session terminated."""
        plain = _dump(sleepy_source, "-Fp").decode()
        anchor = "ALTER TABLE public.accounts OWNER TO"
        at = plain.index(anchor)
        sleepy = plain[:at] + "SELECT pg_sleep(600);\n" + plain[at:]
        message, _ = _cancelled(local_env, tmp_path, "backup.sql", sleepy.encode())
        assert "phase `restore (psql)`" in message, message
        assert "deadline of 3.0s (test limit)" in message, message
        assert "session(s) in the scratch database were terminated" in message, message

    @pytest.mark.parametrize("sleepy_source", ["check", "index"], indirect=True)
    def test_custom_dump_sleeping_in_pg_restore_is_cancelled(
        self, local_env: LocalEnvironment, sleepy_source: PostgresTarget, tmp_path: Path
    ) -> None:
        """A CHECK constraint or index expression that sleeps while pg_restore loads the archive."""
        message, _ = _cancelled(local_env, tmp_path, "backup.dump", _dump(sleepy_source, "-Fc"))
        assert "phase `restore (pg_restore)`" in message, message
        assert "deadline of 3.0s (test limit)" in message, message

    def test_a_restore_within_its_deadline_passes(
        self, local_env: LocalEnvironment, sleepy_source: PostgresTarget, tmp_path: Path
    ) -> None:
        """The deadline changes nothing for a backup that restores in time."""
        store = tmp_path / "store"
        store.mkdir()
        (store / "backup.dump").write_bytes(_dump(sleepy_source, "-Fc"))
        with RestoreDrill(StoreSpec(name="ok", url=str(store)), local_env.scratch_postgres(),
                          limit=Limit(60, "test limit")) as drill:
            result = drill.run()
        assert result.timings["restore"] < 60
        restore = next(e for e in result.journal.entries if e["phase"] == "restore")
        assert restore["deadline"] == "1m 00s (test limit)"


class TestInARun:
    def test_a_sleeping_backup_fails_at_its_rto_margin_and_the_run_goes_on(
        self, sleepy_source: PostgresTarget, tmp_path: Path, sandbox_cache_env: dict[str, str]
    ) -> None:
        """`drillbook run --config`: under "Then the restore completes within 5 seconds" a dump
        sleeping 600 s fails within the deadline (5 s + 10 s margin) plus slack, naming the phase and
        the limit; the next scenario still restores and passes."""
        genuine = _dump(sleepy_source, "-Fp").decode()
        at = genuine.index("ALTER TABLE public.accounts OWNER TO")
        sleepy = genuine[:at] + "SELECT pg_sleep(600);\n" + genuine[at:]
        proc, scenarios = run_directory_backups(
            tmp_path, {"sleepy": sleepy, "genuine": genuine},
            "Feature: restore deadlines\n\n"
            "  @id:DL-01 @daily\n  Scenario: a backup that sleeps\n"
            '    Given the backups in "sleepy"\n'
            "    When the newest backup is restored into a scratch database\n"
            "    Then the restore completes within 5 seconds\n\n"
            "  @id:DL-02 @daily\n  Scenario: a genuine backup\n"
            '    Given the backups in "genuine"\n'
            "    When the newest backup is restored into a scratch database\n"
            "    Then the restore completes within 5 minutes\n",
            env=sandbox_cache_env)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert {k: s["outcome"] for k, s in scenarios.items()} == {"DL-01": "failed", "DL-02": "passed"}
        assert scenarios["DL-01"]["duration_s"] < 15 + SLACK_S, scenarios["DL-01"]["duration_s"]
        restore = next(v for v in scenarios["DL-01"]["verdicts"] if v["id"] == "restore.completed")
        assert restore["outcome"] == "failed", restore
        assert "phase `restore (psql)`" in restore["message"], restore
        assert "the scenario's RTO 5.0s + 10.0s margin" in restore["message"], restore


class TestMigrationDeadline:
    @pytest.mark.parametrize("layout", ["transactional", "autocommit"])
    def test_a_sleeping_migration_is_cancelled_naming_file_and_line(
        self, local_env: LocalEnvironment, tmp_path: Path, layout: str
    ) -> None:
        """`SELECT pg_sleep(600)` in a step: the server cancels it at the deadline; the failure names
        the file, the line, the phase and the limit; the step's work is rolled back."""
        folder = tmp_path / "migrations"
        folder.mkdir()
        (folder / "0001_first.up.sql").write_text("CREATE TABLE t (id int);\n")
        # CREATE INDEX CONCURRENTLY makes the file run statement by statement in autocommit.
        extra = "CREATE INDEX CONCURRENTLY t_id ON t (id);\n" if layout == "autocommit" else ""
        (folder / "0002_sleep.up.sql").write_text(
            f"INSERT INTO t VALUES (1);\n{extra}\nSELECT\n  pg_sleep(600);\nINSERT INTO t VALUES (2);\n")
        migrations = load_migrations(folder, layout="updown")
        scratch = local_env.scratch_postgres()
        target = scratch.fresh_database("sleepy-migrations")
        try:
            t0 = time.monotonic()
            with MigrationReplay(migrations, target, limit=Limit(DEADLINE_S, "test limit")) as replay, \
                    pytest.raises(MigrationFailed) as caught:
                replay.up()
            elapsed = time.monotonic() - t0
            message = str(caught.value)
            line = 4 if layout == "autocommit" else 3
            assert message.startswith(f"0002_sleep.up.sql:{line}: migration replay cancelled after "), message
            assert "in phase `up 0002`: past its deadline of 3.0s (test limit)" in message, message
            assert "pg_sleep(600)" in message, message
            assert elapsed < DEADLINE_S + SLACK_S, elapsed
            assert _sessions(local_env, target) == []
            with psycopg.connect(admin_dsn(target), autocommit=True) as conn:
                rows = conn.execute("SELECT count(*) FROM t").fetchone()
            # Transactional: the step rolled back whole; autocommit: the first INSERT had committed.
            assert rows == ((1,) if layout == "autocommit" else (0,))
        finally:
            scratch.drop(target)


class TestVerifyBackup:
    def test_timeout_cancels_a_sleeping_restore(
        self, sleepy_source: PostgresTarget, tmp_path: Path, sandbox_cache_env: dict[str, str]
    ) -> None:
        """`verify backup FILE --timeout 3s`: exit 1, the verdict names the phase and `--timeout`."""
        plain = _dump(sleepy_source, "-Fp").decode()
        at = plain.index("ALTER TABLE public.accounts OWNER TO")
        backup = tmp_path / "backup.sql"
        backup.write_text(plain[:at] + "SELECT pg_sleep(600);\n" + plain[at:])
        t0 = time.monotonic()
        proc = drillbook("verify", "backup", str(backup), "--timeout", "3s", "--json",
                         env=sandbox_cache_env, timeout=120)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert time.monotonic() - t0 < DEADLINE_S + SLACK_S + 30  # + starting a scratch PostgreSQL
        assert "phase `restore (psql)`" in proc.stdout and "(--timeout)" in proc.stdout, proc.stdout

    def test_a_bad_timeout_is_a_usage_error(self, tmp_path: Path) -> None:
        """Validated before any server starts: exit 2 naming the option."""
        proc = drillbook("verify", "backup", str(tmp_path), "--timeout", "soon")
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert "--timeout: not a duration" in proc.stderr
