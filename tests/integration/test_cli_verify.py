"""`drillbook verify backup` as a user runs it: a subprocess against the sandbox's real stores.

Most cases restore into a fresh database of the session sandbox's scratch cluster
(``--scratch``) so each costs about a second; one case runs the default (a throwaway
PostgreSQL of its own) in a private TMPDIR and checks nothing of it is left.
"""

from __future__ import annotations

import json
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from drills.local import LocalEnvironment
from drills.targets import PostgresTarget
from tests.support.cli import drillbook, private_tmpdir, processes_mentioning

pytestmark = pytest.mark.integration

# moto accepts any credentials; these are what the sandbox's own stores use.
AWS_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


@pytest.fixture
def scratch_db(local_env: LocalEnvironment) -> Iterator[PostgresTarget]:
    """An empty database on the sandbox's scratch cluster, dropped afterwards."""
    scratch = local_env.scratch_postgres()
    target = scratch.fresh_database("cli-verify")
    try:
        yield target
    finally:
        scratch.drop(target)


def _plain_dumps(local_env: LocalEnvironment) -> list[Path]:
    return sorted(local_env.directory_store.glob("sentrascan_*.sql.gz"))


def _user_tables(dsn: str) -> list[str]:
    with psycopg.connect(dsn, connect_timeout=10) as conn:
        rows = conn.execute(
            "SELECT n.nspname || '.' || c.relname FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
            " ORDER BY 1"
        ).fetchall()
    return [str(r[0]) for r in rows]


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class TestRestorableBackups:
    def test_local_file_with_default_scratch(self, local_env: LocalEnvironment,
                                             sandbox_cache_env: dict[str, str]) -> None:
        """A dump file restores into a throwaway PostgreSQL: exit 0, and nothing of it is left."""
        newest = _plain_dumps(local_env)[-1]
        tmpdir = private_tmpdir("drillbook-verify-tmp-")
        try:
            proc = drillbook("verify", "backup", str(newest),
                             env={**sandbox_cache_env, "TMPDIR": str(tmpdir)})
            assert proc.returncode == 0, proc.stdout + proc.stderr
            assert f"PASSED   restore.completed: {newest.name} (gzip_plain)" in proc.stdout
            assert not processes_mentioning(str(tmpdir))
            assert list(tmpdir.iterdir()) == []
        finally:
            shutil.rmtree(tmpdir, ignore_errors=True)

    def test_directory_with_key_pattern_and_max_age(self, local_env: LocalEnvironment,
                                                    scratch_db: PostgresTarget) -> None:
        """The newest dump by key date is restored and last night's backup is within 26h."""
        spec = local_env.store("nightly-plain")
        assert spec.key_pattern is not None
        proc = drillbook("verify", "backup", spec.url, "--key-pattern", spec.key_pattern,
                         "--max-age", "26h", "--scratch", scratch_db.dsn)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert f"restore.completed: {_plain_dumps(local_env)[-1].name}" in proc.stdout
        assert "PASSED   backup.freshness" in proc.stdout
        # The configured scratch is emptied again afterwards.
        assert _user_tables(scratch_db.dsn) == []

    def test_too_old_for_max_age_exits_1(self, local_env: LocalEnvironment,
                                         scratch_db: PostgresTarget) -> None:
        """A restorable backup older than --max-age is exit 1 with the freshness verdict failed."""
        spec = local_env.store("nightly-plain")
        assert spec.key_pattern is not None
        proc = drillbook("verify", "backup", spec.url, "--key-pattern", spec.key_pattern,
                         "--max-age", "1m", "--scratch", scratch_db.dsn)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert "PASSED   restore.completed" in proc.stdout
        assert "FAILED   backup.freshness" in proc.stdout
        assert "limit 1m" in proc.stdout

    def test_s3_url_compared_with_subject_as_json(self, local_env: LocalEnvironment,
                                                  scratch_db: PostgresTarget) -> None:
        """s3:// + --endpoint-url + --compare-with + --json: restored, checksum and content pass."""
        spec = local_env.store("nightly-custom")
        assert spec.endpoint_url is not None
        subject = local_env.postgres("production")
        proc = drillbook("verify", "backup", spec.url, "--endpoint-url", spec.endpoint_url,
                         "--compare-with", subject.dsn, "--scratch", scratch_db.dsn, "--json",
                         env=AWS_ENV)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        report = json.loads(proc.stdout)
        assert report["exit_code"] == 0
        outcomes = {v["id"]: v["outcome"] for v in report["verdicts"]}
        assert outcomes == {"restore.completed": "passed", "backup.checksum": "passed",
                            "restore.content": "passed"}
        restored = next(v for v in report["verdicts"] if v["id"] == "restore.completed")
        assert restored["evidence"]["format"] == "custom"
        assert restored["evidence"]["key"].endswith(".dump")
        content = next(v for v in report["verdicts"] if v["id"] == "restore.content")
        assert content["evidence"]["tables"]["public.orders"]["rows"] > 0


class TestUnrestorableOrUnreadable:
    def test_truncated_gzip_exits_1_with_the_reason(self, local_env: LocalEnvironment,
                                                    scratch_db: PostgresTarget, tmp_path: Path) -> None:
        """A gzip cut short is exit 1 naming the file and 'truncated'; nothing of it is committed."""
        data = _plain_dumps(local_env)[-1].read_bytes()
        cut = tmp_path / "cut-backup.sql.gz"
        cut.write_bytes(data[: len(data) // 2])
        proc = drillbook("verify", "backup", str(cut), "--scratch", scratch_db.dsn)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert "FAILED   restore.completed: cut-backup.sql.gz" in proc.stdout
        assert "truncated" in proc.stdout
        assert _user_tables(scratch_db.dsn) == []

    def test_missing_path_exits_2(self, tmp_path: Path) -> None:
        """A source that does not exist is a usage error naming it; nothing starts."""
        missing = tmp_path / "no-such-backup.dump"
        proc = drillbook("verify", "backup", str(missing))
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert str(missing) in proc.stderr
        assert "does not exist" in proc.stderr
        assert "starting a throwaway" not in proc.stderr

    def test_unreachable_s3_endpoint_exits_2(self, scratch_db: PostgresTarget) -> None:
        """An S3 endpoint nobody answers on is exit 2 naming the bucket and the endpoint."""
        endpoint = f"http://127.0.0.1:{_closed_port()}"
        proc = drillbook("verify", "backup", "s3://sandbox-backups/sark/", "--endpoint-url", endpoint,
                         "--scratch", scratch_db.dsn, env=AWS_ENV)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert "ERROR    restore.completed" in proc.stdout
        assert "s3://sandbox-backups/sark/" in proc.stdout
        assert endpoint in proc.stdout
        assert "hint:" in proc.stdout


    def test_unreachable_subject_is_an_error_naming_it(self, local_env: LocalEnvironment) -> None:
        """--compare-with a DSN nobody answers: restored (into a throwaway scratch), but the content
        verdict errors (exit 1)."""
        port = _closed_port()
        newest = _plain_dumps(local_env)[-1]
        proc = drillbook("verify", "backup", str(newest),
                         "--compare-with", f"postgresql://postgres@127.0.0.1:{port}/product")
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert "PASSED   restore.completed" in proc.stdout
        error = next(line for line in proc.stdout.splitlines() if "restore.content" in line)
        assert error.startswith("ERROR")
        assert "subject" in error
        assert str(port) in error

    def test_unreachable_subject_refuses_a_configured_scratch(self, local_env: LocalEnvironment,
                                                              scratch_db: PostgresTarget) -> None:
        """--compare-with nobody answers and --scratch DSN: the scratch cannot be proven to be on
        another server than the subject, so it is refused before any write (exit 2)."""
        port = _closed_port()
        newest = _plain_dumps(local_env)[-1]
        proc = drillbook("verify", "backup", str(newest), "--scratch", scratch_db.dsn,
                         "--compare-with", f"postgresql://postgres@127.0.0.1:{port}/product")
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert "cannot prove" in proc.stdout
        assert _user_tables(scratch_db.dsn) == []


class TestScratchSafety:
    def test_non_empty_scratch_is_refused_and_untouched(self, local_env: LocalEnvironment,
                                                        scratch_db: PostgresTarget) -> None:
        """--scratch at a database holding a table: exit 2 before any write; the table survives."""
        with psycopg.connect(scratch_db.dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE keep_me (id int PRIMARY KEY, note text)")
            conn.execute("INSERT INTO keep_me VALUES (1, 'precious')")
        newest = _plain_dumps(local_env)[-1]
        proc = drillbook("verify", "backup", str(newest), "--scratch", scratch_db.dsn)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert "is not empty" in proc.stdout
        assert "--scratch" in proc.stdout
        assert "hint:" in proc.stdout
        assert _user_tables(scratch_db.dsn) == ["public.keep_me"]
        with psycopg.connect(scratch_db.dsn) as conn:
            assert conn.execute("SELECT id, note FROM keep_me").fetchall() == [(1, "precious")]
