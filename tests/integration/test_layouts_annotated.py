"""goose, dbmate and sqlx folders replayed into real PostgreSQL, and their history tables.

The folders are written the way the tools' own documentation and ``new``/``create`` commands
write them: a trigger function between goose's ``StatementBegin``/``StatementEnd``, a
``NO TRANSACTION`` (``transaction:false``, ``-- no-transaction``) file building an index
``CONCURRENTLY``, and down sections that drop what their up section made — which must not run on
the way up, and must run on the way down. The history tables are created with each tool's own
DDL and filled with the rows each tool inserts.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

from checks.migration_history import HistoryKind, read_history, validate_history
from checks.verdict import Outcome
from drills.migrations import (
    Direction,
    MigrationFailed,
    MigrationReplay,
    load_migrations,
    round_trip,
    round_trip_verdict,
)
from drills.targets import PostgresTarget

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
Fresh = Callable[[str], PostgresTarget]

GOOSE = {
    "20240101090000_create_accounts.sql": """-- +goose Up
CREATE TABLE accounts (
    id bigserial PRIMARY KEY,
    email text NOT NULL,
    updated_at timestamptz
);

-- +goose StatementBegin
CREATE FUNCTION touch_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END;
$$;
-- +goose StatementEnd

CREATE TRIGGER accounts_touch BEFORE INSERT OR UPDATE ON accounts
    FOR EACH ROW EXECUTE FUNCTION touch_updated_at();

-- +goose Down
DROP TRIGGER accounts_touch ON accounts;
DROP FUNCTION touch_updated_at();
DROP TABLE accounts;
""",
    "20240102090000_accounts_email_index.sql": """-- +goose NO TRANSACTION
-- +goose Up
CREATE INDEX CONCURRENTLY accounts_email_idx ON accounts (email);

-- +goose Down
DROP INDEX CONCURRENTLY accounts_email_idx;
""",
    "20240103090000_create_orders.sql": """-- +goose Up
-- +goose StatementBegin
CREATE TABLE orders (
    id bigserial PRIMARY KEY,
    account_id bigint NOT NULL REFERENCES accounts (id),
    total numeric(12, 2) NOT NULL CHECK (total >= 0)
);
-- +goose StatementEnd
INSERT INTO accounts (email) VALUES ('first@example.org');

-- +goose Down
DELETE FROM accounts WHERE email = 'first@example.org';
DROP TABLE orders;
""",
}

DBMATE = {
    "20240101090000_create_accounts.sql": """-- migrate:up
create table accounts (
    id bigserial primary key,
    email text not null,
    updated_at timestamptz
);

create function touch_updated_at() returns trigger language plpgsql as $$
begin
    new.updated_at := now();
    return new;
end;
$$;

create trigger accounts_touch before insert or update on accounts
    for each row execute function touch_updated_at();

-- migrate:down
drop trigger accounts_touch on accounts;
drop function touch_updated_at();
drop table accounts;
""",
    "20240102090000_accounts_email_index.sql": """-- migrate:up transaction:false
create index concurrently accounts_email_idx on accounts (email);

-- migrate:down transaction:false
drop index concurrently accounts_email_idx;
""",
    # dbmate reads a doubled extension like any other migration.
    "20240103090000_create_orders.sql.sql": """-- migrate:up
create table orders (
    id bigserial primary key,
    account_id bigint not null references accounts (id)
);
insert into accounts (email) values ('first@example.org');

-- migrate:down
delete from accounts where email = 'first@example.org';
drop table orders;
""",
}

# goose's table as goose creates it (pressly/goose v3, internal/dialect/dialectquery/postgres.go).
GOOSE_DDL = """CREATE TABLE goose_db_version (
    id serial NOT NULL,
    version_id bigint NOT NULL,
    is_applied boolean NOT NULL,
    tstamp timestamp NULL default now(),
    PRIMARY KEY(id)
)"""
# dbmate's (pkg/driver/postgres: CreateMigrationsTable).
DBMATE_DDL = "create table if not exists public.schema_migrations (version varchar(128) primary key)"
# sqlx's (sqlx-postgres/src/migrate.rs: ensure_migrations_table).
SQLX_DDL = """CREATE TABLE IF NOT EXISTS _sqlx_migrations (
    version BIGINT PRIMARY KEY,
    description TEXT NOT NULL,
    installed_on TIMESTAMPTZ NOT NULL DEFAULT now(),
    success BOOLEAN NOT NULL,
    checksum BYTEA NOT NULL,
    execution_time BIGINT NOT NULL
)"""


def _write(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text, encoding="utf-8")
    return directory






@contextmanager
def _conn(target: PostgresTarget) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    with psycopg.connect(target.dsn, autocommit=True, connect_timeout=10) as conn:
        yield conn


def _tables(target: PostgresTarget) -> set[str]:
    with _conn(target) as conn:
        return {str(r[0]) for r in conn.execute(
            "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace "
            "AND relkind IN ('r', 'i')").fetchall()}


@pytest.mark.parametrize("tool", ["goose", "dbmate"])
class TestReplay:
    def test_up_applies_only_the_up_sections(self, tool: str, fresh: Fresh, tmp_path: Path) -> None:
        """Every down section drops what its up made: had one run on the way up, the tables would be
        gone and step 3 would fail on a missing `accounts`. They are there, with the function working."""
        folder = _write(tmp_path / tool, GOOSE if tool == "goose" else DBMATE)
        migrations = load_migrations(folder)
        assert migrations.layout == tool
        target = fresh(f"{tool}-up")
        with MigrationReplay(migrations, target) as replay:
            runs = replay.up()
        assert [r.direction for r in runs] == [Direction.UP] * 3
        assert [r.transactional for r in runs] == [True, False, True]
        assert {"accounts", "accounts_email_idx", "orders"} <= _tables(target)
        with _conn(target) as conn:
            row = conn.execute("SELECT count(*), bool_and(updated_at IS NOT NULL) FROM accounts").fetchone()
            valid = conn.execute("SELECT indisvalid FROM pg_index WHERE indexrelid = "
                                 "'accounts_email_idx'::regclass").fetchone()
        assert row == (1, True)  # the trigger function, sent as one statement, ran
        assert valid == (True,)

    def test_round_trip_uses_the_down_sections(self, tool: str, fresh: Fresh, tmp_path: Path) -> None:
        """Up, down to zero (the down sections, in reverse), up again: the same schema at every version."""
        folder = _write(tmp_path / tool, GOOSE if tool == "goose" else DBMATE)
        migrations = load_migrations(folder)
        target = fresh(f"{tool}-round-trip")
        with MigrationReplay(migrations, target) as replay:
            result = round_trip(replay)
        verdict = round_trip_verdict(result, migrations)
        assert verdict.outcome is Outcome.PASSED, verdict.message
        downs = [s for s in result.steps if s.direction is Direction.DOWN]
        assert [s.version for s in downs] == ["20240103090000", "20240102090000", "20240101090000"]
        assert [s.statements for s in downs] == [2, 1, 3]
        assert result.down["0"] == result.first_up["0"]

    def test_a_failing_statement_names_the_files_line(self, tool: str, fresh: Fresh, tmp_path: Path) -> None:
        """The line is the file's, not the section's: the up section starts below its annotation."""
        files = dict(GOOSE if tool == "goose" else DBMATE)
        name = next(n for n in files if "create_orders" in n)
        files[name] = files[name].replace("account_id bigint", "account_id bigintt", 1)
        target = fresh(f"{tool}-failure")
        with MigrationReplay(load_migrations(_write(tmp_path / tool, files)), target) as replay, \
                pytest.raises(MigrationFailed) as caught:
            replay.up()
        assert caught.value.context["file"] == name
        assert caught.value.context["line"] == (5 if tool == "goose" else 4)
        assert 'type "bigintt" does not exist' in caught.value.message


class TestGooseHistory:
    def test_the_newest_row_decides_and_version_zero_is_gooses_own(self, fresh: Fresh,
                                                                    tmp_path: Path) -> None:
        """goose's rows: (0, true) first; ups as (v, true); a goose 2 rollback of v3 as (v3, false)."""
        migrations = load_migrations(_write(tmp_path / "goose", GOOSE))
        subject = fresh("goose-subject")
        with _conn(subject) as conn:
            conn.execute(GOOSE_DDL)
            for version, applied in [(0, True), (20240101090000, True), (20240102090000, True),
                                     (20240103090000, True), (20240103090000, False)]:
                conn.execute("INSERT INTO goose_db_version (version_id, is_applied) VALUES (%s, %s)",
                             (version, applied))
            history = read_history(conn)
        assert history.kind is HistoryKind.GOOSE and history.table == "goose_db_version"
        assert [a.version for a in history.applied] == ["20240101090000", "20240102090000"]
        verdict = validate_history(history, migrations.for_history(), allow_pending=True)
        assert verdict.outcome is Outcome.PASSED, verdict.message
        assert verdict.evidence["pending"] == ["20240103090000"]

    def test_a_version_goose_applied_that_is_not_on_disk_is_missing(self, fresh: Fresh,
                                                                     tmp_path: Path) -> None:
        migrations = load_migrations(_write(tmp_path / "goose", GOOSE))
        subject = fresh("goose-missing")
        with _conn(subject) as conn:
            conn.execute(GOOSE_DDL)
            conn.execute("INSERT INTO goose_db_version (version_id, is_applied) VALUES (0, true), "
                         "(20240101090000, true), (20231231000000, true)")
            verdict = validate_history(read_history(conn), migrations.for_history())
        assert verdict.outcome is Outcome.FAILED
        assert verdict.evidence["missing"] == ["20231231000000"]


class TestDbmateHistory:
    def test_varchar_versions_against_the_folder(self, fresh: Fresh, tmp_path: Path) -> None:
        """dbmate's schema_migrations: one varchar row per applied version, no checksum."""
        migrations = load_migrations(_write(tmp_path / "dbmate", DBMATE))
        subject = fresh("dbmate-subject")
        with _conn(subject) as conn:
            conn.execute(DBMATE_DDL)
            conn.execute("insert into public.schema_migrations (version) values ('20240101090000'), "
                         "('20240102090000')")
            history = read_history(conn)
            assert history.kind is HistoryKind.DBMATE
            verdict = validate_history(history, migrations.for_history())
            assert verdict.outcome is Outcome.PASSED and verdict.evidence["pending"] == ["20240103090000"]
            conn.execute("insert into public.schema_migrations (version) values ('20230101000000')")
            verdict = validate_history(read_history(conn), migrations.for_history())
        assert verdict.outcome is Outcome.FAILED and verdict.evidence["missing"] == ["20230101000000"]

    def test_verify_migrations_against_a_dbmate_database_end_to_end(
            self, fresh: Fresh, tmp_path: Path, sandbox_cache_env: dict[str, str]) -> None:
        """`drillbook verify migrations DIR --against DSN`: a database dbmate migrated to version 2
        (its up blocks, then its rows) passes history and drift; the replay runs in its own server."""
        folder = _write(tmp_path / "dbmate", DBMATE)
        migrations = load_migrations(folder)
        subject = fresh("dbmate-e2e")
        with MigrationReplay(migrations, subject) as replay:
            replay.up(migrations.versioned()[:2])
        with _conn(subject) as conn:
            conn.execute(DBMATE_DDL)
            conn.execute("insert into public.schema_migrations (version) values ('20240101090000'), "
                         "('20240102090000')")
        proc = subprocess.run(
            [sys.executable, "-m", "drillbook.cli", "verify", "migrations", str(folder),
             "--against", subject.dsn],
            capture_output=True, text=True, timeout=180, check=False, cwd=REPO,
            env={**os.environ, **sandbox_cache_env})
        output = proc.stdout + proc.stderr
        assert proc.returncode == 0, output
        assert "PASSED   migrations.history" in output and "1 pending (20240103090000)" in output
        assert "PASSED   migrations.drift" in output and "PASSED   migrations.replay: 3 migrations" in output


SQLX = {
    # CRLF line breaks: part of what sqlx's checksum covers.
    "20240101090000_create_accounts.up.sql": "CREATE TABLE accounts (id bigserial PRIMARY KEY,\r\n"
                                             "    email text);\r\n",
    "20240101090000_create_accounts.down.sql": "DROP TABLE accounts;\n",
    "20240102090000_email_index.up.sql": "-- no-transaction\n"
                                         "CREATE INDEX CONCURRENTLY accounts_email_idx\n"
                                         "    ON accounts (email);\n",
    "20240102090000_email_index.down.sql": "-- no-transaction\nDROP INDEX CONCURRENTLY accounts_email_idx;\n",
}


class TestSqlx:
    def test_replayed_with_no_transaction_and_round_tripped(self, fresh: Fresh, tmp_path: Path) -> None:
        migrations = load_migrations(_write(tmp_path / "sqlx", SQLX))
        assert migrations.layout == "sqlx"
        with MigrationReplay(migrations, fresh("sqlx")) as replay:
            result = round_trip(replay)
        assert round_trip_verdict(result, migrations).outcome is Outcome.PASSED
        assert [s.transactional for s in result.steps[:2]] == [True, False]

    def test_checksums_as_sqlx_records_them_catch_an_edited_file(self, fresh: Fresh, tmp_path: Path) -> None:
        """Rows written as sqlx writes them (SHA-384 of the up file as read, CRLF and all); then an edit."""
        folder = _write(tmp_path / "sqlx", SQLX)
        subject = fresh("sqlx-subject")
        with _conn(subject) as conn:
            conn.execute(SQLX_DDL)
            for name, version, description in [("20240101090000_create_accounts.up.sql", 20240101090000,
                                                 "create accounts"),
                                                ("20240102090000_email_index.up.sql", 20240102090000,
                                                 "email index")]:
                digest = hashlib.sha384((folder / name).read_bytes()).digest()
                conn.execute("INSERT INTO _sqlx_migrations ( version, description, success, checksum, "
                             "execution_time ) VALUES ( %s, %s, TRUE, %s, -1 )",
                             (version, description, digest))
            history = read_history(conn)
            assert history.kind is HistoryKind.SQLX
            assert validate_history(history, load_migrations(folder).for_history()).outcome is Outcome.PASSED
            # The same text with LF line breaks is another file to sqlx.
            first = folder / "20240101090000_create_accounts.up.sql"
            first.write_bytes(first.read_bytes().replace(b"\r\n", b"\n"))
            verdict = validate_history(history, load_migrations(folder).for_history())
            assert verdict.outcome is Outcome.FAILED and verdict.evidence["edited"] == ["20240101090000"]
            conn.execute("UPDATE _sqlx_migrations SET success = false WHERE version = 20240102090000")
            verdict = validate_history(read_history(conn), load_migrations(folder).for_history())
        assert verdict.evidence["failed"] == ["20240102090000"]
