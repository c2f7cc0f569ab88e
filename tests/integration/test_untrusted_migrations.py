"""A migration folder is untrusted: replayed, it acts on its scratch database and nothing else.

Each hostile folder is built by the test: a harmless first step, then a step whose
statement reaches outside the scratch database (a server program or file, server
settings, other databases, tablespaces, roles, a CHECK constraint calling a function
that runs a program). The replay runs as the scratch database's own role, which is no
superuser: the step fails as a permission error naming the file and the line, the
marker file the payload would create does not exist, and the clusters are unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from drills.local import LocalEnvironment
from drills.migrations import MigrationFailed, MigrationReplay, load_migrations
from drills.targets import PostgresTarget
from tests.support.cli import drillbook

pytestmark = pytest.mark.integration

FIRST = "CREATE TABLE accounts (id int PRIMARY KEY, name text);\n"
PAYLOADS = {
    "server program": ("COPY (SELECT 1) TO PROGRAM 'touch {marker}';", "pg_execute_server_program"),
    "program as input": ("COPY accounts (name) FROM PROGRAM 'touch {marker}';", "pg_execute_server_program"),
    "server file": ("COPY (SELECT 1) TO '{marker}';", "pg_write_server_files"),
    "server setting": ("ALTER SYSTEM SET work_mem = '1MB';", "permission denied to set parameter"),
    "drop another database": ("DROP DATABASE postgres;", "must be owner of database"),
    "create a database": ("CREATE DATABASE pwned;", "permission denied to create database"),
    "tablespace": ("CREATE TABLESPACE pwned LOCATION '{marker_dir}';",
                   "permission denied to create tablespace"),
    "role": ("CREATE ROLE pwned LOGIN;", "permission denied to create role"),
    "superuser role": ("CREATE ROLE pwned SUPERUSER;", "must be superuser"),
    "settings of the cluster": ("ALTER ROLE ALL SET work_mem = '1MB';", "must be superuser"),
    "function in a CHECK": (
        "CREATE FUNCTION fire() RETURNS boolean LANGUAGE plpgsql AS $$\n"
        "BEGIN EXECUTE 'COPY (SELECT 1) TO PROGRAM ''touch {marker}'''; RETURN true; END $$;\n"
        "ALTER TABLE accounts ADD CONSTRAINT armed CHECK (fire());\n"
        "INSERT INTO accounts VALUES (1, 'x');",
        "pg_execute_server_program",
    ),
}


@pytest.fixture
def scratch_db(local_env: LocalEnvironment, unchanged: Path) -> Iterator[PostgresTarget]:
    """A fresh scratch database from the sandbox's scratch cluster, dropped after the test."""
    scratch = local_env.scratch_postgres()
    target = scratch.fresh_database("hostile-migrations")
    yield target
    scratch.drop(target)


def _folder(tmp_path: Path, payload: str) -> tuple[Path, int]:
    """V1 harmless, V2 with two comment lines and then the payload: (folder, payload's line)."""
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "V1__accounts.sql").write_text(FIRST)
    (folder / "V2__payload.sql").write_text(
        "-- looks like an ordinary step\n-- (it is not)\n" + payload + "\n")
    return folder, 3


class TestReplay:
    @pytest.mark.parametrize("payload", PAYLOADS.values(), ids=PAYLOADS.keys())
    def test_statement_outside_scratch_fails_as_a_permission_error(
        self, scratch_db: PostgresTarget, unchanged: Path, tmp_path: Path, payload: tuple[str, str]
    ) -> None:
        """The step fails naming V2's file and line and the refusal; V1 applied; nothing else changed."""
        statement, refused = payload
        text = statement.format(marker=unchanged, marker_dir=unchanged.parent)
        folder, first_line = _folder(tmp_path, text)
        line = first_line + text.count("\n")  # the payload's last statement is the one refused
        with MigrationReplay(load_migrations(folder), scratch_db) as replay, \
                pytest.raises(MigrationFailed, match=refused) as caught:
            replay.up()
        message = str(caught.value)
        assert f"V2__payload.sql:{line}:" in message, message
        assert "not a superuser" in message, message


class TestVerifyMigrationsCli:
    def test_default_throwaway_scratch_refuses_and_names_the_file(
        self, local_env: LocalEnvironment, unchanged: Path, tmp_path: Path, sandbox_cache_env: dict[str, str]
    ) -> None:
        """`drillbook verify migrations DIR` (throwaway scratch): exit 1, the verdict names file and line."""
        statement, _ = PAYLOADS["server program"]
        folder, line = _folder(tmp_path, statement.format(marker=unchanged))
        proc = drillbook("verify", "migrations", str(folder), "--json", env=sandbox_cache_env, timeout=180)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        verdicts = json.loads(proc.stdout)["verdicts"]
        failed = [v for v in verdicts if v["outcome"] in ("failed", "error")]
        assert failed, verdicts
        assert any(f"V2__payload.sql:{line}" in v["message"] and "pg_execute_server_program" in v["message"]
                   for v in failed), failed
