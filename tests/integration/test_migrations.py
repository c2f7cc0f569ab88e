"""Migration replay, round trip, fingerprint, drift, history and lint against real PostgreSQL.

The real input is the Authelia migration set in ../shared/fixtures (26 up/down
steps, empty files, a table without a primary key, a table named
``migrations``); variants of it (edited, missing, duplicated, out of order,
broken) are made in temp copies. The sandbox product's own migrations and the
pending set in features/migrations/sandbox-next are checked against the
sandbox's live ``production`` database.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from checks.errors import NotScratch
from checks.migration_history import HistoryKind, compare_history, read_history, validate_history
from checks.migration_lint import UnknownRule, check_rule_names, lint_files, lint_verdict
from checks.schema import schemas_match, snapshot
from checks.verdict import Outcome
from drillbook.cli import main
from drills.local import LocalEnvironment
from drills.migrations import (
    LayoutError,
    MigrationFailed,
    MigrationReplay,
    load_migrations,
    round_trip,
    round_trip_verdict,
)
from drills.targets import PostgresTarget, Role

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SANDBOX_MIGRATIONS = REPO / "drills" / "sandbox" / "migrations"
SANDBOX_NEXT = REPO / "features" / "migrations" / "sandbox-next"


def _fixtures() -> Path:
    return Path(os.environ.get("DRILLBOOK_FIXTURES") or REPO.parent / "shared" / "fixtures")


@pytest.fixture(scope="module")
def authelia() -> Path:
    path = _fixtures() / "postgres" / "migrations" / "authelia"
    if not (path / "V0001.Initial_Schema.up.sql").is_file():
        pytest.skip(reason=f"the Authelia migration fixtures are not at {path} "
                           "(set DRILLBOOK_FIXTURES to the shared fixtures folder)")
    return path


Fresh = Callable[[str], PostgresTarget]






def _copy(source: Path, tmp_path: Path) -> Path:
    target = tmp_path / "migrations"
    shutil.copytree(source, target)
    return target


@contextmanager
def _conn(target: PostgresTarget) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    with psycopg.connect(target.dsn, autocommit=True, connect_timeout=10) as conn:
        yield conn


def _subject_with_history(fresh: Callable[[str], PostgresTarget], directory: Path,
                          versions: list[int]) -> PostgresTarget:
    """A database migrated to ``versions`` with a drillbook history table, seen as a subject."""
    scratch = fresh("subject")
    migrations = load_migrations(directory)
    chosen = [m for m in migrations.versioned() if int(m.version) in versions]
    with MigrationReplay(migrations, scratch) as replay:
        replay.up(chosen)
    with _conn(scratch) as conn:
        conn.execute("CREATE TABLE drillbook_schema_version (id integer PRIMARY KEY, name text NOT NULL,"
                     " sha256 text NOT NULL, created_at timestamptz NOT NULL)")
        for m in chosen:
            conn.execute("INSERT INTO drillbook_schema_version VALUES (%s, %s, %s, %s)",
                         (int(m.version), m.up.path.name, hashlib.sha256(m.up.path.read_bytes()).hexdigest(),
                          datetime(2026, 1, 1, tzinfo=UTC)))
    return PostgresTarget(name="subject", dsn=scratch.dsn, role=Role.SUBJECT)


class TestAutheliaReplay:
    def test_replays_from_empty_with_empty_files_and_notices(self, authelia: Path, fresh: Fresh) -> None:
        """All 26 steps apply; the documented head state is reached; NOTICE output is no failure."""
        migrations = load_migrations(authelia)
        assert len(migrations.migrations) == 26
        target = fresh("authelia")
        with MigrationReplay(migrations, target) as replay:
            runs = replay.up()
            head = replay.snapshot()
        assert [r.version for r in runs] == [f"{v:04d}" for v in range(1, 27)]
        assert {r.version for r in runs if r.statements == 0} == {"0021", "0025", "0026"}
        assert sum(r.notices for r in runs) > 0
        counts = head.counts()
        assert (counts["table"], counts["sequence"], counts["index"]) == (25, 25, 66)
        primary_keys = [k for k, v in head.objects.items()
                        if k.startswith("constraint ") and v["type"] == "p"]
        assert len(primary_keys) == 24
        assert "table public.migrations" in head.objects
        assert "sequence public.totp_configurations_id_seq1" in head.objects

    def test_fingerprint_is_identical_across_replays(self, authelia: Path, fresh: Fresh) -> None:
        """Two independent replays give the same normalised catalog fingerprint."""
        digests = []
        for n in range(2):
            target = fresh(f"authelia-{n}")
            with MigrationReplay(load_migrations(authelia), target) as replay:
                replay.up()
                digests.append(replay.snapshot().digest())
        assert digests[0] == digests[1]

    def test_round_trip_is_identical_on_the_way_up_and_names_the_irreversible_downs(
            self, authelia: Path, fresh: Fresh) -> None:
        """Up→down→up: every version's schema on the second pass equals the first, zero equals
        empty; the down steps that do not restore the schema they found are named."""
        migrations = load_migrations(authelia)
        with MigrationReplay(migrations, fresh("authelia-rt")) as replay:
            result = round_trip(replay)
        assert result.failure is None
        assert result.second_up == {k: v for k, v in result.first_up.items() if k != "0"}
        assert result.down["0"] == result.first_up["0"]
        hard = {a.version for a in result.attributions if not a.empty_file}
        soft = {a.version for a in result.attributions if a.empty_file}
        assert all(a.phase == "down" for a in result.attributions)
        # V0012's down re-creates webauthn_devices with another sequence; V0007's down does not
        # bring back the _bkp_ table its up dropped; V0011's down is empty, so the widened
        # signature column stays wide. (V0009's down is empty too, but its up changes nothing
        # on PostgreSQL: V0007 already dropped that NOT NULL.)
        assert hard == {"0012", "0007"}
        assert soft == {"0011"}
        verdict = round_trip_verdict(result, migrations)
        assert verdict.outcome is Outcome.FAILED
        assert "V0012.WebAuthnMultiCookieDomain.down.sql" in verdict.message
        assert "webauthn_devices_id_seq1" in verdict.message


class TestAutheliaVariants:
    """Edited, missing, duplicated and out-of-order variants, each in a temp copy, each caught."""

    def test_edited_after_applied(self, authelia: Path, fresh: Fresh, tmp_path: Path) -> None:
        subject = _subject_with_history(fresh, authelia, list(range(1, 27)))
        copy = _copy(authelia, tmp_path)
        edited = copy / "V0010.FixConsentIDNotNull.up.sql"
        edited.write_text(edited.read_text() + "\n-- tweaked after release\n")
        with _conn(subject) as conn:
            history = read_history(conn)
        verdict = validate_history(history, load_migrations(copy).for_history())
        assert verdict.outcome is Outcome.FAILED
        assert verdict.evidence["edited"] == ["10"]
        assert "V0010.FixConsentIDNotNull.up.sql" in verdict.message
        # The unedited set passes: the check can tell them apart.
        assert validate_history(history, load_migrations(authelia).for_history()).outcome is Outcome.PASSED

    def test_missing_file(self, authelia: Path, fresh: Fresh, tmp_path: Path) -> None:
        subject = _subject_with_history(fresh, authelia, list(range(1, 27)))
        copy = _copy(authelia, tmp_path)
        for path in copy.glob("V0026.*"):
            path.unlink()
        with _conn(subject) as conn:
            verdict = validate_history(read_history(conn), load_migrations(copy).for_history())
        assert verdict.outcome is Outcome.FAILED and verdict.evidence["missing"] == ["26"]

    def test_out_of_order(self, authelia: Path, fresh: Fresh) -> None:
        """Version 13 was never applied but 14..26 were: out of order, not pending."""
        subject = _subject_with_history(fresh, authelia, [v for v in range(1, 27) if v != 13])
        with _conn(subject) as conn:
            report = compare_history(read_history(conn), load_migrations(authelia).for_history())
        assert report.out_of_order == ["13"] and report.pending == []

    def test_pending_is_reported_not_failed(self, authelia: Path, fresh: Fresh) -> None:
        subject = _subject_with_history(fresh, authelia, list(range(1, 21)))
        with _conn(subject) as conn:
            verdict = validate_history(read_history(conn), load_migrations(authelia).for_history())
        assert verdict.outcome is Outcome.PASSED
        assert verdict.evidence["pending"] == [str(v) for v in range(21, 27)]

    def test_duplicated_version(self, authelia: Path, tmp_path: Path) -> None:
        copy = _copy(authelia, tmp_path)
        shutil.copy(copy / "V0005.ConsentSubjectNULL.up.sql", copy / "V0005.ConsentSubjectNULLAgain.up.sql")
        with pytest.raises(LayoutError, match="duplicate version 5") as info:
            load_migrations(copy)
        assert "V0005.ConsentSubjectNULL.up.sql" in str(info.value)
        assert "V0005.ConsentSubjectNULLAgain.up.sql" in str(info.value)


class TestBadInput:
    def test_syntax_error_names_file_line_and_leaves_the_step_rolled_back(
            self, authelia: Path, fresh: Fresh, tmp_path: Path) -> None:
        """The failing step's work is rolled back: the schema is exactly the one before it."""
        copy = _copy(authelia, tmp_path)
        broken = copy / "V0005.ConsentSubjectNULL.up.sql"
        lines = broken.read_text().splitlines()
        lines.insert(2, "ALTER TABLE oauth2_consent_session ADD COLUMN x integer;")
        lines.insert(3, "SELEC 1;")
        broken.write_text("\n".join(lines) + "\n")
        migrations = load_migrations(copy)
        target = fresh("broken")
        with MigrationReplay(migrations, target) as replay:
            replay.up(migrations.versioned()[:4])
            before = replay.snapshot()
            with pytest.raises(MigrationFailed) as info:
                replay.apply(migrations.versioned()[4])
            after = replay.snapshot()
        assert info.value.context["file"] == "V0005.ConsentSubjectNULL.up.sql"
        assert info.value.context["line"] == 4
        assert "SELEC" in str(info.value)
        assert after.digest() == before.digest()

    def test_failure_half_way_names_the_statement(self, fresh: Fresh, tmp_path: Path) -> None:
        """A runtime error without a position names the statement's own line; nothing is left."""
        _files(tmp_path, {"0001_a.sql": "CREATE TABLE a (id int PRIMARY KEY);\n",
                          "0002_b.sql": "-- two statements\nCREATE TABLE b (id int);\n\n"
                                        "INSERT INTO a VALUES (1), (1);\n"})
        migrations = load_migrations(tmp_path)
        target = fresh("halfway")
        with MigrationReplay(migrations, target) as replay, pytest.raises(MigrationFailed) as info:
            replay.up()
        assert info.value.context["line"] == 4
        assert "duplicate key" in str(info.value) and "INSERT INTO a" in str(info.value)
        with _conn(target) as conn:
            assert "table public.b" not in snapshot(conn).objects

    def test_error_position_gives_the_line_inside_a_statement(self, fresh: Fresh, tmp_path: Path) -> None:
        """A parseable file sent whole: the server's error position points at the line in the file."""
        _files(tmp_path, {"0001_a.sql": "CREATE TABLE a (id int);\n\nCREATE VIEW v AS\n  SELECT id,\n"
                                        "         missing_column\n  FROM a;\n"})
        migrations = load_migrations(tmp_path)
        with MigrationReplay(migrations, fresh("position")) as replay, pytest.raises(MigrationFailed) as info:
            replay.up()
        assert info.value.context["line"] == 5
        assert "missing_column" in str(info.value) and "CREATE VIEW v AS" in str(info.value)

    def test_a_file_with_its_own_transaction_is_never_left_open(self, fresh: Fresh, tmp_path: Path) -> None:
        """BEGIN…COMMIT files run in autocommit; failing inside, or never committing, rolls back."""
        _files(tmp_path, {"0001_a.sql": "BEGIN;\nCREATE TABLE a (id int);\nCOMMIT;\n",
                          "0002_b.sql": "BEGIN;\nCREATE TABLE b (id int);\nSELECT 1/0;\nCOMMIT;\n",
                          "0003_c.sql": "BEGIN;\nCREATE TABLE c (id int);\n"})
        migrations = load_migrations(tmp_path)
        a, b, c = migrations.versioned()
        with MigrationReplay(migrations, fresh("own-tx")) as replay:
            assert replay.apply(a).transactional is False
            with pytest.raises(MigrationFailed, match=r"0002_b\.sql:3: division by zero"):
                replay.apply(b)
            with pytest.raises(MigrationFailed, match="never ends"):
                replay.apply(c)
            objects = replay.snapshot().objects
        assert "table public.a" in objects
        assert "table public.b" not in objects and "table public.c" not in objects

    def test_missing_down_file_fails_the_round_trip(self, fresh: Fresh, tmp_path: Path) -> None:
        _files(tmp_path, {"0001_a.up.sql": "CREATE TABLE a (id int);", "0001_a.down.sql": "DROP TABLE a;",
                          "0002_b.up.sql": "CREATE TABLE b (id int);"})
        migrations = load_migrations(tmp_path)
        with MigrationReplay(migrations, fresh("nodown")) as replay:
            result = round_trip(replay)
        verdict = round_trip_verdict(result, migrations)
        assert verdict.outcome is Outcome.FAILED
        assert "no down migration" in verdict.message and "0002_b.up.sql" in verdict.message

    def test_a_down_that_forgets_something_fails(self, fresh: Fresh, tmp_path: Path) -> None:
        _files(tmp_path, {"0001_a.up.sql": "CREATE TABLE a (id int);", "0001_a.down.sql": "DROP TABLE a;",
                          "0002_b.up.sql": "CREATE INDEX a_id ON a (id); ALTER TABLE a ADD COLUMN n text;",
                          "0002_b.down.sql": "ALTER TABLE a DROP COLUMN n;"})
        migrations = load_migrations(tmp_path)
        with MigrationReplay(migrations, fresh("forgets")) as replay:
            verdict = round_trip_verdict(round_trip(replay), migrations)
        assert verdict.outcome is Outcome.FAILED
        assert "down 0002 (0002_b.down.sql)" in verdict.message
        assert "only in after down 0002: index public.a_id" in verdict.message

    def test_unreadable_file_stops_before_the_first_write(self, fresh: Fresh, tmp_path: Path) -> None:
        _files(tmp_path, {"0001_a.sql": "CREATE TABLE a (id int);"})
        (tmp_path / "0002_b.sql").write_bytes(b"SELECT '\xff';")
        target = fresh("unreadable")
        with MigrationReplay(load_migrations(tmp_path), target) as replay, \
                pytest.raises(LayoutError, match=r"0002_b\.sql: not UTF-8"):
            replay.up()
        with _conn(target) as conn:
            assert "table public.a" not in snapshot(conn).objects

    def test_a_subject_is_never_written(self, local_env: LocalEnvironment) -> None:
        with pytest.raises(NotScratch, match="production"):
            MigrationReplay(load_migrations(SANDBOX_MIGRATIONS), local_env.postgres("production"))


def _files(directory: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (directory / name).write_text(text, encoding="utf-8")


class TestSandbox:
    def test_replay_matches_production_and_catches_drift(self, local_env: LocalEnvironment, fresh: Fresh,
                                                          tmp_path: Path) -> None:
        """The product's own migrations rebuild production's schema; a changed copy is a readable diff."""
        settings = {"drillbook.anchor": local_env.details()["anchor"]}
        production = local_env.postgres("production")
        with _conn(production) as conn:
            live = snapshot(conn).without_tables(["drillbook_schema_version"])
        with MigrationReplay(load_migrations(SANDBOX_MIGRATIONS), fresh("sandbox"), settings=settings) as r:
            r.up()
            replayed = r.snapshot()
        assert schemas_match(replayed, live, check_id="d", expected_name="replay",
                             actual_name="production").outcome is Outcome.PASSED
        copy = _copy(SANDBOX_MIGRATIONS, tmp_path)
        scans = copy / "0004_scans.sql"
        scans.write_text(scans.read_text().replace("findings    integer", "findings    bigint")
                         + "CREATE INDEX scans_target_idx ON scans (target);\n")
        with MigrationReplay(load_migrations(copy), fresh("drifted"), settings=settings) as r:
            r.up()
            drifted = r.snapshot()
        verdict = schemas_match(drifted, live, check_id="d", expected_name="replay", actual_name="production")
        assert verdict.outcome is Outcome.FAILED
        lines = verdict.evidence["diff"]["lines"]
        assert "only in replay: index public.scans_target_idx" in lines
        assert "column public.scans.findings: type is 'bigint' in replay, 'integer' in production" in lines

    def test_history_of_production_against_the_next_release(self, local_env: LocalEnvironment) -> None:
        with _conn(local_env.postgres("production")) as conn:
            history = read_history(conn)
        verdict = validate_history(history, load_migrations(SANDBOX_NEXT).for_history())
        assert verdict.outcome is Outcome.PASSED
        assert verdict.evidence["pending"] == ["6", "7"]

    def test_lint_of_the_pending_set(self, tmp_path: Path) -> None:
        """squawk findings carry file and line; a destructive statement blocks, others are advisory."""
        pending = [SANDBOX_NEXT / "000006_account_region.up.sql",
                   SANDBOX_NEXT / "000007_scans_by_account.up.sql"]
        findings = lint_files(pending, base=SANDBOX_NEXT)
        assert [(f.file, f.line, f.rule) for f in findings] == [
            ("000007_scans_by_account.up.sql", 4, "require-concurrent-index-creation")]
        bad = tmp_path / "000008_drop_email.up.sql"
        bad.write_text("-- a destructive change\nALTER TABLE accounts DROP COLUMN email;\n")
        verdict = lint_verdict(lint_files([*pending, bad], base=tmp_path), failing_rules={"ban-drop-column"},
                               files=3)
        assert verdict.outcome is Outcome.FAILED
        assert "000008_drop_email.up.sql:2:22 ban-drop-column" in verdict.message
        with pytest.raises(UnknownRule, match="ban-drop-colum'"):
            check_rule_names({"ban-drop-colum"})


class TestOtherTools:
    def test_flyway_set_with_undo_and_its_history_table(self, fresh: Fresh, tmp_path: Path) -> None:
        """Flyway: 1 < 1.1 < 2, U files undo; flyway_schema_history read with CRC32 checksums."""
        _files(tmp_path, {"V1__init.sql": "CREATE TABLE a (id int);",
                          "V1.1__b.sql": "ALTER TABLE a ADD COLUMN b text;",
                          "U1.1__b.sql": "ALTER TABLE a DROP COLUMN b;", "U1__init.sql": "DROP TABLE a;",
                          "V2__c.sql": "CREATE INDEX a_b ON a (b);", "U2__c.sql": "DROP INDEX a_b;"})
        migrations = load_migrations(tmp_path)
        assert [m.version for m in migrations.migrations] == ["1", "1.1", "2"]
        with MigrationReplay(migrations, fresh("flyway")) as replay:
            assert round_trip_verdict(round_trip(replay), migrations).outcome is Outcome.PASSED
        subject = fresh("flyway-subject")
        local = {m.version: m for m in migrations.for_history()}
        with _conn(subject) as conn:
            conn.execute("CREATE TABLE flyway_schema_history (installed_rank int PRIMARY KEY, version text,"
                         " description text, type text, script text, checksum int, installed_on timestamp,"
                         " execution_time int, success boolean)")
            rows = [(1, "1", "init", "SQL", local["1"].checksum(HistoryKind.FLYWAY), True),
                    (2, "1.1", "b", "SQL", "12345", True)]
            for rank, version, desc, kind, checksum, ok in rows:
                conn.execute("INSERT INTO flyway_schema_history VALUES"
                             " (%s, %s, %s, %s, '', %s, now(), 1, %s)",
                             (rank, version, desc, kind, int(checksum or 0), ok))
            history = read_history(conn)
        verdict = validate_history(history, migrations.for_history())
        assert history.kind is HistoryKind.FLYWAY
        assert verdict.outcome is Outcome.FAILED
        assert verdict.evidence["edited"] == ["1.1"] and verdict.evidence["pending"] == ["2"]

    def test_golang_migrate_schema_migrations(self, fresh: Fresh, tmp_path: Path) -> None:
        _files(tmp_path, {"000001_a.up.sql": "SELECT 1;", "000002_b.up.sql": "SELECT 1;",
                          "000003_c.up.sql": "SELECT 1;"})
        subject = fresh("golang")
        with _conn(subject) as conn:
            conn.execute("CREATE TABLE schema_migrations (version bigint PRIMARY KEY,"
                         " dirty boolean NOT NULL)")
            conn.execute("INSERT INTO schema_migrations VALUES (2, true)")
            verdict = validate_history(read_history(conn), load_migrations(tmp_path).for_history())
        assert verdict.outcome is Outcome.FAILED
        assert verdict.evidence["failed"] == ["2"] and verdict.evidence["pending"] == ["3"]


class TestFeatures:
    def test_the_migration_features_pass_on_the_sandbox(self, tmp_path: Path,
                                                        sandbox_cache_env: dict[str, str]) -> None:
        """`drillbook run --features features/migrations`: replay+drift, round trip, history, lint,
        and the pending migrations on last night's restored backup, end to end."""
        proc = subprocess.run(
            [sys.executable, "-m", "drillbook.cli", "run", "--features", "features/migrations",
             "--out", str(tmp_path)], capture_output=True, text=True, timeout=300, check=False, cwd=REPO,
            env={**os.environ, **sandbox_cache_env})
        assert proc.returncode == 0, proc.stdout + proc.stderr
        results = json.loads((tmp_path / "latest" / "results.json").read_text())
        outcomes = {s["id"]: s["outcome"] for s in results["scenarios"]}
        assert outcomes == {f"MIG-0{n}": "passed" for n in range(1, 6)}
        verdicts = {v["id"]: v for s in results["scenarios"] for v in s["verdicts"]}
        assert verdicts["migrations.pending_applied"]["evidence"]["steps"][0]["file"] == \
            "000006_account_region.up.sql"


def _cli(*args: str, env: dict[str, str]) -> tuple[int, str]:
    proc = subprocess.run([sys.executable, "-m", "drillbook.cli", "verify", "migrations", *args],
                          capture_output=True, text=True, timeout=120, check=False, cwd=REPO,
                          env={**os.environ, **env})
    return proc.returncode, proc.stdout + proc.stderr


class TestVerifyMigrationsCli:
    def test_exit_codes(self, authelia: Path, fresh: Fresh, tmp_path: Path,
                        capsys: pytest.CaptureFixture[str]) -> None:
        """0 clean, 1 a finding, 2 unreadable input; --json prints the verdicts."""
        assert main(["verify", "migrations", str(authelia), "--scratch", fresh("cli-1").dsn]) == 0
        assert "PASSED   migrations.replay: 26 migrations" in capsys.readouterr().out
        code = main(["verify", "migrations", str(authelia), "--round-trip", "--json",
                     "--scratch", fresh("cli-2").dsn])
        data = json.loads(capsys.readouterr().out)
        assert code == 1 and data["exit_code"] == 1
        assert {v["id"]: v["outcome"] for v in data["verdicts"]} == {
            "migrations.replay": "passed", "migrations.round_trip": "failed"}
        assert main(["verify", "migrations", str(tmp_path / "nope")]) == 2
        assert "does not exist" in capsys.readouterr().out

    def test_against_a_live_database(self, local_env: LocalEnvironment, fresh: Fresh,
                                     capsys: pytest.CaptureFixture[str]) -> None:
        """Drift and history against production; the next release's 2 migrations are pending."""
        production = local_env.postgres("production").dsn
        anchor = f"drillbook.anchor={local_env.details()['anchor']}"
        code = main(["verify", "migrations", str(SANDBOX_NEXT), "--against", production, "--setting", anchor,
                     "--lint", "--scratch", fresh("cli-3").dsn])
        out = capsys.readouterr().out
        assert code == 0, out
        assert "PASSED   migrations.history" in out and "2 pending (6, 7)" in out
        assert "PASSED   migrations.drift: the schemas of replay at 5" in out
        assert "PASSED   migrations.lint: no blocking lint finding in 2 file(s)" in out

    def test_bad_options_are_usage_errors(self, authelia: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """An unknown squawk rule or a malformed --setting stops before any database is touched."""
        assert main(["verify", "migrations", str(authelia), "--lint", "--fail-on", "ban-drop-colum"]) == 2
        assert "no rule named 'ban-drop-colum'" in capsys.readouterr().out
        assert main(["verify", "migrations", str(authelia), "--setting", "novalue"]) == 2
        assert "NAME=VALUE" in capsys.readouterr().err

    def test_as_a_user_runs_it(self, authelia: Path, sandbox_cache_env: dict[str, str]) -> None:
        """A real subprocess with its own throwaway PostgreSQL."""
        code, output = _cli(str(authelia), "--layout", "numbered", env=sandbox_cache_env)
        assert code == 2 and "does not fit the numbered layout" in output
        code, output = _cli(str(authelia), env=sandbox_cache_env)
        assert code == 0, output
