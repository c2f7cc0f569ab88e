"""Prisma, Atlas and Diesel folders replayed into real PostgreSQL, and their history tables
created with each tool's own DDL and filled as each tool fills them."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import psycopg
import pytest

from checks.migration_history import read_history, validate_history
from checks.verdict import Outcome
from drills.migrations import MigrationReplay, load_migrations
from drills.migrations.layouts.atlas import SumMismatch, compute_sum, render_sum
from drills.targets import PostgresTarget

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
Fresh = Callable[[str], PostgresTarget]

# prisma-engines, schema-engine PostgreSQL flavour: create_migrations_table.
PRISMA_DDL = """CREATE TABLE _prisma_migrations (
    id                      VARCHAR(36) PRIMARY KEY NOT NULL,
    checksum                VARCHAR(64) NOT NULL,
    finished_at             TIMESTAMPTZ,
    migration_name          VARCHAR(255) NOT NULL,
    logs                    TEXT,
    rolled_back_at          TIMESTAMPTZ,
    started_at              TIMESTAMPTZ NOT NULL DEFAULT now(),
    applied_steps_count     INTEGER NOT NULL DEFAULT 0
)"""
# ariga/atlas cmd/atlas/internal/migrate/ent/migrate/schema.go, as ent creates it on PostgreSQL.
ATLAS_DDL = """CREATE SCHEMA atlas_schema_revisions;
CREATE TABLE atlas_schema_revisions.atlas_schema_revisions (
    version character varying NOT NULL PRIMARY KEY, description character varying NOT NULL,
    type bigint NOT NULL DEFAULT 2, applied bigint NOT NULL DEFAULT 0,
    total bigint NOT NULL DEFAULT 0, executed_at timestamptz NOT NULL,
    execution_time bigint NOT NULL, error text NULL, error_stmt text NULL,
    hash character varying NOT NULL, partial_hashes jsonb NULL,
    operator_version character varying NOT NULL)"""
# diesel_migrations/src/migration/setup_migration_table.sql.
DIESEL_DDL = """CREATE TABLE IF NOT EXISTS __diesel_schema_migrations (
       version VARCHAR(50) PRIMARY KEY NOT NULL,
       run_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
)"""
# What `diesel setup` writes as 00000000000000_diesel_initial_setup/up.sql (abridged comments).
DIESEL_SETUP_UP = """-- This file was automatically created by Diesel to setup helper functions
-- and other internal bookkeeping.
CREATE OR REPLACE FUNCTION diesel_manage_updated_at(_tbl regclass) RETURNS VOID AS $$
BEGIN
    EXECUTE format('CREATE TRIGGER set_updated_at BEFORE UPDATE ON %s
                    FOR EACH ROW EXECUTE PROCEDURE diesel_set_updated_at()', _tbl);
END;
$$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION diesel_set_updated_at() RETURNS trigger AS $$
BEGIN
    IF (
        NEW IS DISTINCT FROM OLD AND
        NEW.updated_at IS NOT DISTINCT FROM OLD.updated_at
    ) THEN
        NEW.updated_at := current_timestamp;
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
"""
DIESEL_SETUP_DOWN = """DROP FUNCTION IF EXISTS diesel_manage_updated_at(_tbl regclass);
DROP FUNCTION IF EXISTS diesel_set_updated_at();
"""










def _write(directory: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return directory


def _tables(target: PostgresTarget) -> set[str]:
    with psycopg.connect(target.dsn, autocommit=True) as conn:
        return {r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()}


class TestPrisma:
    FILES: ClassVar[dict[str, str]] = {
        "migration_lock.toml": 'provider = "postgresql"\n',
        "20230406064219_init/migration.sql":
            '-- CreateTable\nCREATE TABLE "User" (\n    "id" SERIAL NOT NULL,\n'
            '    "email" TEXT NOT NULL,\n'
            '    CONSTRAINT "User_pkey" PRIMARY KEY ("id")\n);\n\n-- CreateIndex\n'
            'CREATE UNIQUE INDEX "User_email_key" ON "User"("email");\n',
        "20230407101500_add_post/migration.sql":
            '-- CreateTable\nCREATE TABLE "Post" (\n    "id" SERIAL NOT NULL,\n'
            '    "authorId" INTEGER NOT NULL,\n'
            '    CONSTRAINT "Post_pkey" PRIMARY KEY ("id")\n);\n\n-- AddForeignKey\n'
            'ALTER TABLE "Post" ADD CONSTRAINT "Post_authorId_fkey" FOREIGN KEY ("authorId") '
            'REFERENCES "User"("id") ON DELETE RESTRICT ON UPDATE CASCADE;\n',
        "20230408000000_add_bio/migration.sql": 'ALTER TABLE "User" ADD COLUMN "bio" TEXT;\n',
    }

    def test_replays_detected(self, fresh: Fresh, tmp_path: Path) -> None:
        """A Prisma folder is detected and every migration.sql applies in order."""
        migrations = load_migrations(_write(tmp_path, self.FILES))
        assert migrations.layout == "prisma"
        target = fresh("prisma")
        with MigrationReplay(migrations, target) as replay:
            replay.up()
        assert {"User", "Post"} <= _tables(target)

    def test_history_edited_failed_and_rolled_back(self, fresh: Fresh, tmp_path: Path) -> None:
        """Rows as Prisma writes them: an edited applied script is edited; a NULL finished_at is
        failed; a rolled-back attempt does not count as applied."""
        directory = _write(tmp_path, self.FILES)
        scripts = {name.split("/")[0]: (directory / name).read_bytes()
                   for name in self.FILES if name.endswith(".sql")}
        subject = fresh("prisma-subject")
        with psycopg.connect(subject.dsn, autocommit=True) as conn:
            conn.execute(PRISMA_DDL)
            insert = ("INSERT INTO _prisma_migrations (id, checksum, finished_at, migration_name, "
                      "rolled_back_at, applied_steps_count) "
                      "VALUES (gen_random_uuid()::text, %s, %s, %s, %s, 1)")
            first, second, third = sorted(scripts)
            conn.execute(insert, (hashlib.sha256(scripts[first]).hexdigest(), "2023-04-06", first, None))
            conn.execute(insert, (hashlib.sha256(b"-- before the edit\n").hexdigest(), "2023-04-07",
                                  second, None))
            conn.execute(insert, (hashlib.sha256(scripts[third]).hexdigest(), None, third, "2023-04-08"))
            history = read_history(conn)
            verdict = validate_history(history, load_migrations(directory).for_history())
        assert history.table.endswith("_prisma_migrations")
        assert verdict.outcome is Outcome.FAILED
        assert verdict.evidence["edited"] == ["20230407101500"]
        assert verdict.evidence["pending"] == ["20230408000000"]


class TestAtlas:
    FILES: ClassVar[dict[str, str]] = {
        "20220318104614_initial.sql": "-- create \"users\" table\nCREATE TABLE users (id bigint PRIMARY KEY, "
                                      "name text NOT NULL);\n",
        "20220318104615_index.sql": "-- atlas:txmode none\n\nCREATE INDEX CONCURRENTLY users_name ON users "
                                    "(name);\n",
        "20220318104616_orders.sql": "CREATE TABLE orders (id bigint PRIMARY KEY, user_id bigint REFERENCES "
                                     "users);\n",
    }

    def _folder(self, tmp_path: Path) -> Path:
        directory = _write(tmp_path, self.FILES)
        entries = compute_sum([(n, (directory / n).read_bytes()) for n in sorted(self.FILES)])
        (directory / "atlas.sum").write_text(render_sum(entries), encoding="utf-8")
        return directory

    def test_replays_with_txmode_none(self, fresh: Fresh, tmp_path: Path) -> None:
        """CREATE INDEX CONCURRENTLY under `atlas:txmode none` applies (outside a transaction)."""
        migrations = load_migrations(self._folder(tmp_path))
        assert migrations.layout == "atlas"
        target = fresh("atlas")
        with MigrationReplay(migrations, target) as replay:
            replay.up()
        assert {"users", "orders"} <= _tables(target)

    def test_edited_file_stops_before_any_sql(self, tmp_path: Path) -> None:
        """An edited file is refused at load, naming it: nothing runs."""
        directory = self._folder(tmp_path)
        (directory / "20220318104616_orders.sql").write_text("DROP TABLE users;\n", encoding="utf-8")
        with pytest.raises(SumMismatch, match=r"20220318104616_orders\.sql was edited"):
            load_migrations(directory)

    def test_history_hash_and_partial_rows(self, fresh: Fresh, tmp_path: Path) -> None:
        """atlas_schema_revisions rows as Atlas writes them: the hash is the cumulative atlas.sum
        entry (matches); a partial row with an error is failed."""
        directory = self._folder(tmp_path)
        sums = compute_sum([(n, (directory / n).read_bytes()) for n in sorted(self.FILES)])
        subject = fresh("atlas-subject")
        with psycopg.connect(subject.dsn, autocommit=True) as conn:
            conn.execute(ATLAS_DDL)
            insert = ("INSERT INTO atlas_schema_revisions.atlas_schema_revisions (version, description, type,"
                      " applied, total, executed_at, execution_time, error, error_stmt, hash, partial_hashes,"
                      " operator_version) VALUES (%s, %s, 2, %s, %s, now(), 1000, %s, %s, %s, NULL,"
                      " 'Atlas CLI v0.14.0')")
            conn.execute(insert, ("20220318104614", "initial", 1, 1, None, None, sums[0].hash))
            conn.execute(insert, ("20220318104615", "index", 0, 1, "relation exists",
                                  "CREATE INDEX …", sums[1].hash))
            history = read_history(conn, table="atlas_schema_revisions.atlas_schema_revisions")
            verdict = validate_history(history, load_migrations(directory).for_history())
        assert verdict.outcome is Outcome.FAILED
        assert verdict.evidence["failed"] == ["20220318104615"]
        assert verdict.evidence["edited"] == []
        assert verdict.evidence["pending"] == ["20220318104616"]


class TestDiesel:
    def _folder(self, tmp_path: Path) -> Path:
        return _write(tmp_path, {
            "00000000000000_diesel_initial_setup/up.sql": DIESEL_SETUP_UP,
            "00000000000000_diesel_initial_setup/down.sql": DIESEL_SETUP_DOWN,
            "2022-04-26-153628_create_users/up.sql":
                "CREATE TABLE users (id SERIAL PRIMARY KEY, name VARCHAR NOT NULL, updated_at TIMESTAMP "
                "NOT NULL DEFAULT now());\nSELECT diesel_manage_updated_at('users');\n",
            "2022-04-26-153628_create_users/down.sql": "DROP TABLE users;\n",
            "2022-05-01-090000_users_name_index/up.sql":
                "CREATE INDEX CONCURRENTLY users_name ON users (name);\n",
            "2022-05-01-090000_users_name_index/down.sql": "DROP INDEX CONCURRENTLY users_name;\n",
            "2022-05-01-090000_users_name_index/metadata.toml": "run_in_transaction = false\n",
        })

    def test_replays_and_round_trips(self, fresh: Fresh, tmp_path: Path) -> None:
        """Diesel's initial setup, a table with its trigger, and a non-transactional index apply."""
        migrations = load_migrations(self._folder(tmp_path))
        assert migrations.layout == "diesel"
        assert [m.version for m in migrations.migrations] == [
            "00000000000000", "20220426153628", "20220501090000"]
        target = fresh("diesel")
        with MigrationReplay(migrations, target) as replay:
            replay.up()
        assert "users" in _tables(target)

    def test_history_by_whole_timestamp(self, fresh: Fresh, tmp_path: Path) -> None:
        """__diesel_schema_migrations rows as Diesel writes them match by the whole timestamp."""
        directory = self._folder(tmp_path)
        subject = fresh("diesel-subject")
        with psycopg.connect(subject.dsn, autocommit=True) as conn:
            conn.execute(DIESEL_DDL)
            conn.execute("INSERT INTO __diesel_schema_migrations (version) VALUES "
                         "('00000000000000'), ('20220426153628')")
            verdict = validate_history(read_history(conn), load_migrations(directory).for_history())
        assert verdict.outcome is Outcome.PASSED
        assert verdict.evidence["pending"] == ["20220501090000"]


def _cli(*args: str, env: dict[str, str]) -> tuple[int, str]:
    """``drillbook verify migrations`` as a user runs it: a subprocess (it inherits PYTHONPATH)."""
    proc = subprocess.run([sys.executable, "-m", "drillbook.cli", "verify", "migrations", *args],
                          capture_output=True, text=True, timeout=300, check=False, cwd=REPO,
                          env={**os.environ, **env})
    return proc.returncode, proc.stdout + proc.stderr


def _json_cli(*args: str, env: dict[str, str]) -> tuple[int, dict[str, dict[str, object]]]:
    code, output = _cli(*args, "--json", env=env)
    start = output.index("{")
    data = json.loads(output[start:output.rindex("}") + 1])
    assert data["exit_code"] == code, output
    return code, {v["id"]: v for v in data["verdicts"]}


def _apply(target: PostgresTarget, directory: Path, scripts: list[str]) -> None:
    """Run migration files into a subject as the tool would have (each script as one request)."""
    with psycopg.connect(target.dsn, autocommit=True) as conn:
        for name in scripts:
            conn.execute((directory / name).read_text(encoding="utf-8"))


class TestVerifyMigrationsCli:
    """``drillbook verify migrations DIR`` end to end on each tool's folder, and ``--against`` a
    subject whose history table is the tool's own."""

    def test_prisma_round_trip_and_edited_history(self, fresh: Fresh, subject: Fresh, tmp_path: Path,
                                                   sandbox_cache_env: dict[str, str]) -> None:
        """Prisma has no down migrations by design: the replay passes, the round trip does not apply.
        Against a subject whose _prisma_migrations recorded an older text of the second script:
        that migration is reported edited, the third pending, and the schemas match at 2."""
        directory = _write(tmp_path / "prisma", TestPrisma.FILES)
        code, output = _cli(str(directory), "--round-trip", env=sandbox_cache_env)
        assert code == 0, output
        assert "PASSED   migrations.replay: 3 migrations applied" in output
        assert "NOT_APPLICABLE migrations.round_trip: no round trip: prisma migrations have no way" in output

        live = subject("prisma-live")
        first, second = "20230406064219_init", "20230407101500_add_post"
        _apply(live, directory, [f"{first}/migration.sql", f"{second}/migration.sql"])
        with psycopg.connect(live.dsn, autocommit=True) as conn:
            conn.execute(PRISMA_DDL)
            for name, script in ((first, (directory / first / "migration.sql").read_bytes()),
                                 (second, b"-- the text before an edit\n")):
                conn.execute("INSERT INTO _prisma_migrations (id, checksum, finished_at, migration_name, "
                             "applied_steps_count) VALUES (gen_random_uuid()::text, %s, now(), %s, 1)",
                             (hashlib.sha256(script).hexdigest(), name))
        code, verdicts = _json_cli(str(directory), "--against", live.dsn, "--scratch",
                                   fresh("prisma-cli").dsn, env=sandbox_cache_env)
        assert code == 1
        history = verdicts["migrations.history"]
        assert history["outcome"] == "failed"
        evidence = history["evidence"]
        assert isinstance(evidence, dict)
        assert evidence["table"] == "_prisma_migrations"
        assert evidence["edited"] == ["20230407101500"] and evidence["pending"] == ["20230408000000"]
        assert f"{second}/migration.sql" in str(history["message"])
        assert verdicts["migrations.drift"]["outcome"] == "passed", verdicts["migrations.drift"]

    def test_prisma_crlf_checkout_is_not_edited(self, fresh: Fresh, subject: Fresh, tmp_path: Path,
                                                sandbox_cache_env: dict[str, str]) -> None:
        """A script checked out with CRLF line ends still matches the LF checksum Prisma recorded
        (Prisma's own comparison, through the history module's ``matches``)."""
        directory = _write(tmp_path / "prisma", {k: v for k, v in TestPrisma.FILES.items()
                                                 if not k.startswith("2023040")
                                                 or k.startswith("20230406")})
        script = directory / "20230406064219_init" / "migration.sql"
        recorded = hashlib.sha256(script.read_bytes()).hexdigest()
        script.write_bytes(script.read_bytes().replace(b"\n", b"\r\n"))
        live = subject("prisma-crlf")
        _apply(live, directory, ["20230406064219_init/migration.sql"])
        with psycopg.connect(live.dsn, autocommit=True) as conn:
            conn.execute(PRISMA_DDL)
            conn.execute("INSERT INTO _prisma_migrations (id, checksum, finished_at, migration_name) "
                         "VALUES (gen_random_uuid()::text, %s, now(), '20230406064219_init')", (recorded,))
        code, verdicts = _json_cli(str(directory), "--against", live.dsn, "--scratch",
                                   fresh("prisma-crlf-cli").dsn, env=sandbox_cache_env)
        assert verdicts["migrations.history"]["outcome"] == "passed", verdicts["migrations.history"]
        assert code == 0, verdicts

    def test_atlas_round_trip_edited_file_and_history(self, fresh: Fresh, subject: Fresh, tmp_path: Path,
                                                      sandbox_cache_env: dict[str, str]) -> None:
        """An intact Atlas folder replays; an edited file is a failed migrations.atlas_sum verdict
        naming it (exit 1, nothing replayed); against a subject with atlas_schema_revisions in its
        own schema (found without --history-table), every hash matches."""
        directory = TestAtlas()._folder(tmp_path / "atlas")
        code, output = _cli(str(directory), "--round-trip", env=sandbox_cache_env)
        assert code == 0, output
        assert "PASSED   migrations.replay: 3 migrations applied" in output
        assert "NOT_APPLICABLE migrations.round_trip: no round trip: atlas migrations have no way" in output

        live = subject("atlas-live")
        names = sorted(TestAtlas.FILES)
        _apply(live, directory, names)
        sums = compute_sum([(n, (directory / n).read_bytes()) for n in names])
        with psycopg.connect(live.dsn, autocommit=True) as conn:
            conn.execute(ATLAS_DDL)
            for name, entry in zip(names, sums, strict=True):
                version, description = name.removesuffix(".sql").split("_", 1)
                conn.execute("INSERT INTO atlas_schema_revisions.atlas_schema_revisions (version, "
                             "description, type, applied, total, executed_at, execution_time, hash, "
                             "operator_version) "
                             "VALUES (%s, %s, 2, 1, 1, now(), 1000, %s, 'Atlas CLI v0.14.0')",
                             (version, description, entry.hash))
        code, verdicts = _json_cli(str(directory), "--against", live.dsn, "--scratch",
                                   fresh("atlas-cli").dsn, env=sandbox_cache_env)
        history = verdicts["migrations.history"]
        assert history["outcome"] == "passed", history
        assert isinstance(history["evidence"], dict)
        assert history["evidence"]["table"] == "atlas_schema_revisions.atlas_schema_revisions"
        assert history["evidence"]["applied"] == ["20220318104614", "20220318104615", "20220318104616"]
        assert verdicts["migrations.drift"]["outcome"] == "passed", verdicts["migrations.drift"]
        assert code == 0

        (directory / "20220318104615_index.sql").write_text(
            "-- atlas:txmode none\n\nCREATE INDEX CONCURRENTLY users_nm ON users (name);\n", encoding="utf-8")
        code, output = _cli(str(directory), "--round-trip", env=sandbox_cache_env)
        assert code == 1, output
        assert "FAILED   migrations.atlas_sum:" in output
        assert "20220318104615_index.sql was edited" in output
        assert "migrations.replay" not in output   # refused before anything ran

    def test_diesel_round_trip_and_history(self, fresh: Fresh, subject: Fresh, tmp_path: Path,
                                           sandbox_cache_env: dict[str, str]) -> None:
        """Diesel's ups and downs round-trip (exit 0); against a subject with two of three versions in
        __diesel_schema_migrations, the third is pending and the schemas match at the second."""
        directory = TestDiesel()._folder(tmp_path / "diesel")
        code, output = _cli(str(directory), "--round-trip", env=sandbox_cache_env)
        assert code == 0, output
        assert "PASSED   migrations.round_trip: up → down → up over 3 versions" in output

        live = subject("diesel-live")
        _apply(live, directory, ["00000000000000_diesel_initial_setup/up.sql",
                                 "2022-04-26-153628_create_users/up.sql"])
        with psycopg.connect(live.dsn, autocommit=True) as conn:
            conn.execute(DIESEL_DDL)
            conn.execute("INSERT INTO __diesel_schema_migrations (version) VALUES "
                         "('00000000000000'), ('20220426153628')")
        code, verdicts = _json_cli(str(directory), "--against", live.dsn, "--scratch",
                                   fresh("diesel-cli").dsn, env=sandbox_cache_env)
        history = verdicts["migrations.history"]
        assert history["outcome"] == "passed", history
        assert isinstance(history["evidence"], dict)
        assert history["evidence"]["pending"] == ["20220501090000"]
        assert verdicts["migrations.drift"]["outcome"] == "passed", verdicts["migrations.drift"]
        assert code == 0
