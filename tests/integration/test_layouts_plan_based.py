"""sqitch projects and Liquibase changelogs replayed into real PostgreSQL, and their history tables.

The flipr projects and the Liquibase changelogs come from tests/support/plan_projects.py: made
and applied by the real sqitch 1.3.1 and Liquibase 4.28.0 / 4.4.0, with the rows those tools
wrote to ``sqitch.changes`` and ``databasechangelog``. The history tables are created here with
the columns and types the tools' own DDL gives them (sqitch's ``Engine/pg.sql``, the table
Liquibase created on PostgreSQL 15) and filled with those rows.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

from checks.migration_history import HistoryKind, read_history, validate_history
from checks.verdict import Outcome
from drillbook.cli import main
from drills.migrations import (
    LayoutError,
    MigrationFailed,
    MigrationReplay,
    load_folders,
    load_migrations,
    round_trip,
    round_trip_verdict,
)
from drills.migrations.layouts import sqitch
from drills.targets import PostgresTarget
from tests.support.plan_projects import (
    CHANGELOGS,
    FLIPR,
    FLIPR_EXT,
    LIQUIBASE_8,
    LIQUIBASE_9,
    SQITCH_CHANGES,
    write,
)

pytestmark = pytest.mark.integration

Fresh = Callable[[str], PostgresTarget]

# sqitch 1.3.1's registry tables for pg (lib/App/Sqitch/Engine/pg.sql), the columns read here.
SQITCH_REGISTRY = """
CREATE SCHEMA sqitch;
CREATE TABLE sqitch.projects (project TEXT PRIMARY KEY, uri TEXT NULL UNIQUE,
    created_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(), creator_name TEXT NOT NULL,
    creator_email TEXT NOT NULL);
CREATE TABLE sqitch.changes (change_id TEXT PRIMARY KEY, script_hash TEXT NULL, change TEXT NOT NULL,
    project TEXT NOT NULL REFERENCES sqitch.projects(project) ON UPDATE CASCADE,
    note TEXT NOT NULL DEFAULT '', committed_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    committer_name TEXT NOT NULL, committer_email TEXT NOT NULL, planned_at TIMESTAMPTZ NOT NULL,
    planner_name TEXT NOT NULL, planner_email TEXT NOT NULL, UNIQUE(project, script_hash));
"""

# The table Liquibase 4.28.0 created on PostgreSQL 15 (pg_dump -s of it).
DATABASECHANGELOG = """
CREATE TABLE public.databasechangelog (id varchar(255) NOT NULL, author varchar(255) NOT NULL,
    filename varchar(255) NOT NULL, dateexecuted timestamp without time zone NOT NULL,
    orderexecuted integer NOT NULL, exectype varchar(10) NOT NULL, md5sum varchar(35),
    description varchar(255), comments varchar(255), tag varchar(255), liquibase varchar(20),
    contexts varchar(255), labels varchar(255), deployment_id varchar(10));
"""

# A flipr extension written for replay (the real flipr_ext creates a role, refused in scratch).
AUDIT = {
    "sqitch.plan": "%syntax-version=1.0.0\n%project=flipr_audit\n\n"
                   "audit [flipr:users] 2024-05-01T10:00:00Z Ann <ann@example.com> # audit view\n",
    "deploy/audit.sql": "CREATE VIEW flipr.recent_users AS SELECT nickname FROM flipr.users;\n",
    "revert/audit.sql": "DROP VIEW flipr.recent_users;\n",
    "verify/audit.sql": "SELECT nickname FROM flipr.recent_users WHERE false;\n",
}

# A changelog whose every changeset rolls back: a plpgsql function split with endDelimiter, an
# index built CONCURRENTLY outside a transaction, a trigger as one unsplit statement.
ROUND_TRIP_CHANGELOG = """--liquibase formatted sql

--changeset ops:1
CREATE TABLE orders (id bigint PRIMARY KEY, total numeric NOT NULL, updated_at timestamptz);
--rollback DROP TABLE orders;

--changeset ops:2 endDelimiter:/
CREATE FUNCTION touch_order() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END;
$$
/
COMMENT ON FUNCTION touch_order() IS 'sets updated_at'
/
--rollback DROP FUNCTION touch_order();

--changeset ops:3 splitStatements:false
CREATE TRIGGER orders_touch BEFORE UPDATE ON orders FOR EACH ROW EXECUTE FUNCTION touch_order();
--rollback DROP TRIGGER orders_touch ON orders;

--changeset ops:4 runInTransaction:false
CREATE INDEX CONCURRENTLY orders_total ON orders (total);
--rollback DROP INDEX CONCURRENTLY orders_total;
"""






@contextmanager
def _conn(target: PostgresTarget) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    with psycopg.connect(target.dsn, autocommit=True, connect_timeout=10) as conn:
        yield conn


def _sqitch_registry(target: PostgresTarget, rows: list[tuple[str, ...]]) -> None:
    with _conn(target) as conn:
        conn.execute(SQITCH_REGISTRY)
        for project in dict.fromkeys(row[3] for row in rows):
            conn.execute("INSERT INTO sqitch.projects (project, creator_name, creator_email) "
                         "VALUES (%s, 'Marge', 'marge@example.com')", (project,))
        for change_id, script_hash, change, project, planned_at, name, email in rows:
            conn.execute("INSERT INTO sqitch.changes (change_id, script_hash, change, project, "
                         "committer_name, committer_email, planned_at, planner_name, planner_email) "
                         "VALUES (%s, %s, %s, %s, 'Marge', 'marge@example.com', %s, %s, %s)",
                         (change_id, script_hash, change, project, planned_at, name, email))


def _changelog_table(target: PostgresTarget, rows: list[tuple[str, ...]], *,
                     exectype: str | None = None) -> None:
    with _conn(target) as conn:
        conn.execute(DATABASECHANGELOG)
        for change_id, author, filename, md5sum, order, kind in rows:
            conn.execute("INSERT INTO databasechangelog (id, author, filename, dateexecuted, orderexecuted, "
                         "exectype, md5sum, description, liquibase, deployment_id) "
                         "VALUES (%s, %s, %s, now(), %s, %s, %s, 'sql', '4.28.0', '1234567890')",
                         (change_id, author, filename, int(order), exectype or kind, md5sum))


class TestSqitchReplay:
    def test_replays_the_plan_with_every_verify_script(self, fresh: Fresh, tmp_path: Path) -> None:
        """Detected from sqitch.plan; the rework's older script runs first; each verify passes."""
        migrations = load_migrations(write(FLIPR, tmp_path / "flipr"))
        assert migrations.layout == "sqitch"
        with MigrationReplay(migrations, fresh("sqitch")) as replay:
            runs = replay.up()
        assert [(r.file, r.verified) for r in runs] == [
            ("deploy/appschema.sql", "verify/appschema.sql"), ("deploy/users.sql", "verify/users.sql"),
            ("deploy/insert_user@v1.0.0-dev1.sql", "verify/insert_user@v1.0.0-dev1.sql"),
            ("deploy/insert_user.sql", "verify/insert_user.sql"),
            ("deploy/functions/count_users.sql", "verify/functions/count_users.sql")]

    def test_round_trip_finds_what_a_revert_leaves_behind(self, fresh: Fresh, tmp_path: Path) -> None:
        """revert/insert_user.sql leaves pgcrypto: the round trip says so."""
        migrations = load_migrations(write(FLIPR, tmp_path / "flipr"))
        with MigrationReplay(migrations, fresh("sqitch-rt")) as replay:
            verdict = round_trip_verdict(round_trip(replay), migrations)
        assert verdict.outcome is Outcome.FAILED
        assert "down 4 (revert/insert_user.sql)" in verdict.message
        assert "extension pgcrypto" in verdict.message

    def test_round_trip_passes_when_each_revert_undoes_its_deploy(self, fresh: Fresh, tmp_path: Path) -> None:
        """With the extension dropped by the revert, down to zero and up again match."""
        fixed = dict(FLIPR)
        fixed["revert/insert_user.sql"] = fixed["revert/insert_user.sql"].replace(
            "COMMIT;", "DROP EXTENSION pgcrypto;\n\nCOMMIT;")
        migrations = load_migrations(write(fixed, tmp_path / "flipr"))
        with MigrationReplay(migrations, fresh("sqitch-rt2")) as replay:
            verdict = round_trip_verdict(round_trip(replay), migrations)
        assert verdict.outcome is Outcome.PASSED, verdict.message

    def test_a_failing_verify_script_fails_its_step(self, fresh: Fresh, tmp_path: Path) -> None:
        """A verify script naming a missing column fails step 2, naming verify/users.sql and line."""
        broken = {**FLIPR, "verify/users.sql": "SELECT nickname,\n       no_such_column\n"
                                               "  FROM flipr.users\n"}
        migrations = load_migrations(write(broken, tmp_path / "flipr"))
        with MigrationReplay(migrations, fresh("sqitch-verify")) as replay, \
                pytest.raises(MigrationFailed) as exc:
            replay.up()
        assert "verify of 2 (users) failed" in exc.value.message
        assert "verify/users.sql:2" in exc.value.message and "no_such_column" in exc.value.message

    def test_a_project_requiring_another_is_replayed_after_it(self, fresh: Fresh, tmp_path: Path) -> None:
        """flipr_audit requires flipr:users: met when flipr's folder comes first, replayed in that order."""
        flipr, audit = write(FLIPR, tmp_path / "flipr"), write(AUDIT, tmp_path / "audit")
        assert sqitch.unmet_requirements(load_migrations(audit), []) == [
            "sqitch.plan:4: audit requires flipr:users: project flipr was not given before flipr_audit"]
        assert sqitch.unmet_requirements(load_migrations(audit), [load_migrations(flipr)]) == []
        chained = load_folders([flipr, audit])
        with MigrationReplay(chained, fresh("sqitch-chain")) as replay:
            runs = replay.up()
        assert [r.version for r in runs] == ["1", "2", "3", "4", "5", "6"]
        assert runs[-1].verified == "audit/verify/audit.sql"

    def test_a_plan_naming_a_missing_script_is_a_usage_error(self, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
        """drillbook verify migrations exits 2 naming the plan file and line."""
        broken = {k: v for k, v in FLIPR.items() if k != "deploy/users.sql"}
        folder = write(broken, tmp_path / "flipr")
        with pytest.raises(LayoutError, match=r"sqitch\.plan:6: change \"users\" has no deploy script"):
            load_migrations(folder)
        assert main(["verify", "migrations", str(folder)]) == 2
        assert "sqitch.plan:6" in capsys.readouterr().out


class TestSqitchHistory:
    def test_the_registry_sqitch_wrote_matches_both_projects(self, fresh: Fresh, tmp_path: Path) -> None:
        """sqitch.changes as sqitch wrote it (reworked change deployed twice) matches flipr + flipr_ext."""
        subject = fresh("sqitch-history")
        _sqitch_registry(subject, SQITCH_CHANGES)
        local = load_folders([write(FLIPR, tmp_path / "flipr"), write(FLIPR_EXT, tmp_path / "ext")])
        with _conn(subject) as conn:
            history = read_history(conn)
        assert history.kind is HistoryKind.SQITCH and history.table == "sqitch.changes"
        verdict = validate_history(history, local.for_history())
        assert verdict.outcome is Outcome.PASSED, verdict.message
        assert verdict.evidence["applied"] == ["1", "2", "3", "4", "5", "6", "7"]

    def test_an_edited_deploy_script_and_a_reverted_change(self, fresh: Fresh, tmp_path: Path) -> None:
        """Editing deploy/users.sql is reported edited; a change whose row is gone is pending."""
        subject = fresh("sqitch-edited")
        flipr_rows = [row for row in SQITCH_CHANGES if row[3] == "flipr"]
        _sqitch_registry(subject, flipr_rows[:-1])          # functions/count_users reverted
        edited = {**FLIPR, "deploy/users.sql": FLIPR["deploy/users.sql"].replace("NOT NULL,", "NULL,")}
        local = load_migrations(write(edited, tmp_path / "flipr"))
        with _conn(subject) as conn:
            verdict = validate_history(read_history(conn), local.for_history(), allow_pending=True)
        assert verdict.outcome is Outcome.FAILED
        assert verdict.evidence["edited"] == ["2"] and verdict.evidence["pending"] == ["5"]
        assert "deploy/users.sql" in verdict.message


class TestLiquibase:
    def test_round_trip_with_end_delimiter_and_concurrent_index(self, fresh: Fresh, tmp_path: Path) -> None:
        """Up, down by the --rollback lines, up again: the same schema at every step."""
        migrations = load_migrations(write({"changelog.sql": ROUND_TRIP_CHANGELOG}, tmp_path / "lb"))
        assert migrations.layout == "liquibase"
        with MigrationReplay(migrations, fresh("lb-rt")) as replay:
            result = round_trip(replay)
            verdict = round_trip_verdict(result, migrations)
        assert verdict.outcome is Outcome.PASSED, verdict.message
        with MigrationReplay(migrations, fresh("lb-up")) as replay:
            runs = replay.up()
        assert [(r.statements, r.transactional) for r in runs] == [
            (1, True), (2, True), (1, True), (1, False)]

    def test_the_changelogs_liquibase_ran_replay(self, fresh: Fresh, tmp_path: Path) -> None:
        """The real changelogs (two files) replay in file-name order."""
        migrations = load_migrations(write(CHANGELOGS, tmp_path / "lb"))
        with MigrationReplay(migrations, fresh("lb-real")) as replay:
            runs = replay.up()
        assert [r.file for r in runs] == ["001-schema.sql"] * 3 + ["002-index.sql"] * 3

    @pytest.mark.parametrize("rows", [LIQUIBASE_9, LIQUIBASE_8[:5]], ids=["liquibase-4.28", "liquibase-4.4"])
    def test_databasechangelog_as_liquibase_wrote_it(self, fresh: Fresh, tmp_path: Path,
                                                     rows: list[tuple[str, ...]]) -> None:
        """The md5sums Liquibase wrote (9: and 8: forms) match the changelogs on disk."""
        subject = fresh("lb-history")
        _changelog_table(subject, rows)
        local = load_migrations(write(CHANGELOGS, tmp_path / "lb"))
        with _conn(subject) as conn:
            history = read_history(conn)
            verdict = validate_history(history, local.for_history())
        assert history.kind is HistoryKind.LIQUIBASE
        assert verdict.outcome is Outcome.PASSED, verdict.message
        assert len(verdict.evidence["applied"]) == len(rows)

    def test_an_edited_changeset_is_reported(self, fresh: Fresh, tmp_path: Path) -> None:
        """Changing changeset 3's SQL is an edit; MARK_RAN rows count as applied."""
        subject = fresh("lb-edited")
        _changelog_table(subject, LIQUIBASE_9, exectype="MARK_RAN")
        edited = {**CHANGELOGS, "001-schema.sql": CHANGELOGS["001-schema.sql"].replace("i + 1", "i + 2")}
        local = load_migrations(write(edited, tmp_path / "lb"))
        with _conn(subject) as conn:
            verdict = validate_history(read_history(conn), local.for_history())
        assert verdict.outcome is Outcome.FAILED
        assert verdict.evidence["edited"] == ["3"] and len(verdict.evidence["applied"]) == 6
        assert json.dumps(verdict.evidence)
