"""The team's own migrate command against real PostgreSQL, with a real Alembic project.

The Alembic project is written by the tests (tests/support/alembic_project.py:
alembic.ini, env.py reading DATABASE_URL, three revisions) and run by the real
``alembic`` package of this virtualenv; other commands are ordinary programs
(``sh``, ``sleep``, ``env``) run the same way.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest

from checks.errors import NotScratch
from checks.verdict import Outcome
from drills.deadlines import Limit
from drills.local import LocalScratch
from drills.migrations.command import CommandUnusable, MigrateCommand
from drills.migrations.command_replay import (
    CommandReplay,
    command_replay_verdict,
    command_round_trip_verdict,
)
from drills.targets import PostgresTarget, Role
from tests.support.alembic_project import HEAD, REVISIONS, write_alembic_project
from tests.support.cli import drillbook

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def nothing_left(scratch_cluster: LocalScratch) -> Iterator[None]:
    """After each test (and its fresh databases' drops) no database is left on the scratch server."""
    yield
    assert scratch_cluster.databases() == []

VENV_BIN = Path(sys.executable).parent
# What drillbook's own environment holds in production: none of it may reach the command.
PRODUCTION_DSN = "postgresql://app:Pr0d-s3cret-pw@db.internal:5432/aureus"
ENVIRON = {"PATH": f"{VENV_BIN}:/usr/local/bin:/usr/bin:/bin", "HOME": "/root", "LANG": "C.UTF-8",
           "PROD_PG_DSN": PRODUCTION_DSN, "AWS_SECRET_ACCESS_KEY": "aws-secret-value-1234"}

Fresh = Callable[[str], PostgresTarget]






@pytest.fixture
def project(tmp_path: Path) -> Path:
    return write_alembic_project(tmp_path / "app")


def _command(workdir: Path, up: str = "alembic upgrade head", *, down: str | None = None,
             seconds: float | None = None, env_names: tuple[str, ...] = ()) -> MigrateCommand:
    limit = Limit(seconds, "--timeout") if seconds is not None else None
    return MigrateCommand.parse(up, workdir=workdir, down=down, limit=limit, env_names=env_names)


def _tables(target: PostgresTarget) -> set[str]:
    with psycopg.connect(target.dsn, autocommit=True) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
    return {str(r[0]) for r in rows}


class TestAlembicReplay:
    def test_upgrade_head_migrates_an_empty_scratch_database(self, project: Path, fresh: Fresh) -> None:
        """The real alembic, run by its command, leaves the head schema and its version row in scratch."""
        target = fresh("alembic")
        result = CommandReplay(_command(project), target, environ=ENVIRON).up()
        verdict = command_replay_verdict(result)
        assert verdict.outcome is Outcome.PASSED, verdict.message
        assert "`alembic upgrade head` migrated an empty database" in verdict.message
        assert _tables(target) == {"accounts", "orders", "alembic_version"}
        assert result.tool_table is not None and result.tool_table.name == "alembic_version"
        assert result.tool_rows == {(HEAD,)}
        assert result.head is not None and "index public.orders_account_idx" in result.head.objects
        assert verdict.evidence["runs"][0]["exit_code"] == 0

    def test_round_trip_of_a_reversible_project_passes(self, project: Path, fresh: Fresh) -> None:
        """upgrade head → downgrade base gives the empty start back; upgrade again gives the same head."""
        command = _command(project, down="alembic downgrade base")
        result = CommandReplay(command, fresh("alembic-rt"), environ=ENVIRON).round_trip()
        verdict = command_round_trip_verdict(result)
        assert verdict.outcome is Outcome.PASSED, verdict.message
        assert [r.phase for r in result.runs] == ["up", "down", "up again"]
        # alembic_version stays (empty) after downgrade base: the tool's own table is left out.
        assert "alembic_version" in verdict.evidence["ignored_tables"]

    def test_round_trip_names_the_table_a_downgrade_forgets(self, tmp_path: Path, fresh: Fresh) -> None:
        """Revision 1's downgrade forgets DROP TABLE accounts: failed, naming the table and the command."""
        project = write_alembic_project(tmp_path / "app", forgetful_down=True)
        command = _command(project, down="alembic downgrade base")
        result = CommandReplay(command, fresh("alembic-forget"), environ=ENVIRON).round_trip()
        verdict = command_round_trip_verdict(result)
        assert verdict.outcome is Outcome.FAILED
        assert "down: only in after `alembic downgrade base`: table public.accounts" in verdict.message
        # Up again then fails inside alembic (accounts exists), or differs: either way not a pass.


class TestBadCommands:
    def test_a_non_zero_exit_fails_naming_command_code_and_last_lines(self, tmp_path: Path,
                                                                     fresh: Fresh) -> None:
        """An upgrade hitting a missing table: failed, with the exit code and alembic's last error line."""
        project = write_alembic_project(tmp_path / "app", failing_head=True)
        result = CommandReplay(_command(project), fresh("alembic-fail"), environ=ENVIRON).up()
        verdict = command_replay_verdict(result)
        assert verdict.outcome is Outcome.FAILED
        assert "`alembic upgrade head` exited with code 1 in phase `up`" in verdict.message
        assert 'relation "no_such_table" does not exist' in verdict.message
        assert result.head is None

    def test_a_hang_past_the_deadline_is_killed_and_named(self, tmp_path: Path, fresh: Fresh) -> None:
        """`sleep 30` with a 1 s limit: failed within seconds, naming the limit; no process is left."""
        result = CommandReplay(_command(tmp_path, "sleep 30", seconds=1.0), fresh("sleepy"),
                               environ=ENVIRON).up()
        verdict = command_replay_verdict(result)
        assert verdict.outcome is Outcome.FAILED
        assert "`sleep 30` cancelled after" in verdict.message
        assert "past its deadline of 1.0s (--timeout)" in verdict.message
        assert result.runs[0].timed_out and result.runs[0].duration_s < 10

    def test_a_session_left_running_by_a_killed_command_is_terminated(self, tmp_path: Path,
                                                                        fresh: Fresh) -> None:
        """A command stuck in pg_sleep is killed at its deadline, and its backend ends with it."""
        target = fresh("stuck")
        script = ("import os, psycopg; "
                  "psycopg.connect(os.environ['DATABASE_URL']).execute('SELECT pg_sleep(60)')")
        command = MigrateCommand(("python", "-c", script), tmp_path.resolve(), limit=Limit(2.0, "--timeout"))
        verdict = command_replay_verdict(CommandReplay(command, target, environ=ENVIRON).up())
        assert verdict.outcome is Outcome.FAILED
        with psycopg.connect(target.dsn, autocommit=True) as conn:
            others = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                                  " AND pid <> pg_backend_pid()").fetchone()
        assert others == (0,)

    def test_a_command_not_found_is_an_error_naming_it(self, tmp_path: Path, fresh: Fresh) -> None:
        """Not a failed drill: nothing could run; the error names the program and the PATH searched."""
        result = CommandReplay(_command(tmp_path, "no-such-migrator up"), fresh("nf"), environ=ENVIRON).up()
        verdict = command_replay_verdict(result)
        assert verdict.outcome is Outcome.ERROR
        assert "command not found: no-such-migrator" in verdict.message
        assert isinstance(result.failure, CommandUnusable)

    def test_only_scratch_is_ever_migrated(self, project: Path, fresh: Fresh) -> None:
        target = fresh("subject")
        subject = PostgresTarget(name="production", dsn=target.dsn, role=Role.SUBJECT)
        with pytest.raises(NotScratch):
            CommandReplay(_command(project), subject, environ=ENVIRON)
        assert _tables(target) == set()


class TestEnvironment:
    def test_secrets_the_command_prints_are_masked(self, tmp_path: Path, fresh: Fresh) -> None:
        """DATABASE_URL and the passfile hold the scratch password: the kept output shows *** instead."""
        target = fresh("secrets")
        password = str(psycopg.conninfo.conninfo_to_dict(target.dsn)["password"])
        command = _command(tmp_path, "sh -c 'echo \"url=$DATABASE_URL\"; cat \"$PGPASSFILE\"'")
        result = CommandReplay(command, target, environ=ENVIRON).up()
        output = result.runs[0].output
        assert "url=postgresql://" in output and "***" in output
        assert password not in output
        assert password not in json.dumps(command_replay_verdict(result).to_dict())

    def test_the_command_sees_the_scratch_database_and_nothing_of_production(
            self, tmp_path: Path, fresh: Fresh) -> None:
        """`env` shows PG* and DATABASE_URL for scratch, PATH/HOME/LANG, the listed name; no PROD_PG_DSN."""
        target = fresh("env")
        environ = {**ENVIRON, "ALEMBIC_CONFIG": "alembic.ini"}
        result = CommandReplay(_command(tmp_path, "env", env_names=("ALEMBIC_CONFIG",)), target,
                               environ=environ).up()
        seen = dict(line.split("=", 1) for line in result.runs[0].output.splitlines() if "=" in line)
        assert "PROD_PG_DSN" not in seen and "AWS_SECRET_ACCESS_KEY" not in seen
        assert "Pr0d-s3cret-pw" not in result.runs[0].output
        assert seen["PGDATABASE"] == psycopg.conninfo.conninfo_to_dict(target.dsn)["dbname"]
        assert "PGPASSWORD" not in seen and seen["PGPASSFILE"]
        assert seen["DATABASE_URL"].startswith("postgresql://")
        assert seen["ALEMBIC_CONFIG"] == "alembic.ini"
        assert set(seen) <= {"PATH", "HOME", "LANG", "ALEMBIC_CONFIG", "PGHOST", "PGPORT", "PGDATABASE",
                             "PGUSER", "PGPASSFILE", "PGCONNECT_TIMEOUT", "PGOPTIONS", "DATABASE_URL", "PWD",
                             "SHLVL", "_"}

    def test_a_flood_of_output_is_kept_as_head_and_tail(self, tmp_path: Path, fresh: Fresh) -> None:
        """200 kB of output: the first 16 KiB and the last 48 KiB are kept, the cut is said."""
        script = "import sys; sys.stdout.write('first\\n' + 'x' * 200_000 + '\\nlast\\n')"
        command = MigrateCommand(("python", "-c", script), tmp_path.resolve())
        run = CommandReplay(command, fresh("flood"), environ=ENVIRON).up().runs[0]
        assert run.output_bytes == 200_012
        assert run.output.startswith("first\n") and run.output.endswith("last\n")
        assert "bytes of output left out" in run.output
        assert len(run.output) < 70_000

    def test_a_listed_database_variable_is_refused_before_anything_runs(self, tmp_path: Path) -> None:
        with pytest.raises(CommandUnusable, match="PGHOST is set by drillbook"):
            _command(tmp_path, "env", env_names=("PGHOST",))


class TestCli:
    """`drillbook verify migrations DIR --command …` as a user runs it, in a subprocess."""

    def test_replay_round_trip_drift_and_history_pass_against_a_migrated_subject(
            self, project: Path, fresh: Fresh, sandbox_cache_env: dict[str, str]) -> None:
        subject = fresh("subject")
        CommandReplay(_command(project), subject, environ=ENVIRON).up()
        done = drillbook("verify", "migrations", str(project), "--command", "alembic upgrade head",
                         "--round-trip", "--down-command", "alembic downgrade base", "--against", subject.dsn,
                         "--json", env={**sandbox_cache_env, "PATH": ENVIRON["PATH"],
                                        "PROD_PG_DSN": PRODUCTION_DSN})
        assert done.returncode == 0, done.stdout + done.stderr
        verdicts = {v["id"]: v for v in json.loads(done.stdout)["verdicts"]}
        assert {k: v["outcome"] for k, v in verdicts.items()} == {
            "migrations.replay": "passed", "migrations.round_trip": "passed", "migrations.drift": "passed",
            "migrations.history": "passed"}
        assert "Pr0d-s3cret-pw" not in done.stdout

    def test_a_subject_behind_the_head_drifts_and_its_history_says_so(
            self, tmp_path: Path, fresh: Fresh, sandbox_cache_env: dict[str, str]) -> None:
        """Subject at revision 2 of 3: drift names the missing column; alembic_version differs (warning)."""
        behind = write_alembic_project(tmp_path / "old", revisions=2)
        subject = fresh("subject-behind")
        CommandReplay(_command(behind), subject, environ=ENVIRON).up()
        project = write_alembic_project(tmp_path / "app")
        done = drillbook("verify", "migrations", str(project), "--command", "alembic upgrade head",
                         "--against", subject.dsn, "--json",
                         env={**sandbox_cache_env, "PATH": ENVIRON["PATH"]})
        assert done.returncode == 1, done.stdout + done.stderr
        verdicts = {v["id"]: v for v in json.loads(done.stdout)["verdicts"]}
        assert verdicts["migrations.drift"]["outcome"] == "failed"
        assert "accounts.created_at" in verdicts["migrations.drift"]["message"]
        history = verdicts["migrations.history"]
        assert history["outcome"] == "warning"
        assert REVISIONS[1] in history["message"] and HEAD in history["message"]

    def test_a_hanging_command_fails_and_a_missing_one_is_usage(self, tmp_path: Path,
                                                               sandbox_cache_env: dict[str, str]) -> None:
        hang = drillbook("verify", "migrations", str(tmp_path), "--command", "sleep 30", "--timeout", "1s",
                         env=sandbox_cache_env)
        assert hang.returncode == 1, hang.stdout + hang.stderr
        assert "past its deadline of 1.0s (--timeout)" in hang.stdout
        missing = drillbook("verify", "migrations", str(tmp_path), "--command", "no-such-migrator up",
                            env=sandbox_cache_env)
        assert missing.returncode == 2, missing.stdout + missing.stderr
        assert "command not found: no-such-migrator" in missing.stdout

    def test_a_prelude_runs_before_the_command_and_is_the_round_trips_start(
            self, tmp_path: Path, sandbox_cache_env: dict[str, str]) -> None:
        """--prelude makes a schema the migrations use; down must give back that start, not an empty one."""
        project = write_alembic_project(tmp_path / "app")
        prelude = tmp_path / "init.sql"
        prelude.write_text("CREATE SCHEMA audit;\nCREATE TABLE audit.events (id bigint PRIMARY KEY);\n",
                           encoding="utf-8")
        done = drillbook("verify", "migrations", str(project), "--command", "alembic upgrade head",
                         "--round-trip", "--down-command", "alembic downgrade base",
                         "--prelude", str(prelude), "--json",
                         env={**sandbox_cache_env, "PATH": ENVIRON["PATH"]})
        assert done.returncode == 0, done.stdout + done.stderr
        verdicts = {v["id"]: v for v in json.loads(done.stdout)["verdicts"]}
        assert [verdicts[k]["outcome"] for k in ("migrations.prelude", "migrations.replay",
                                                 "migrations.round_trip")] == ["passed"] * 3

    def test_round_trip_without_a_down_command_is_usage(self, tmp_path: Path) -> None:
        done = drillbook("verify", "migrations", str(tmp_path), "--command", "true", "--round-trip")
        assert done.returncode == 2
        assert "needs --down-command" in done.stdout


def test_deadline_default_is_the_migration_timeout(tmp_path: Path) -> None:
    """Without a limit the command gets [run] migration_timeout's default (30 min)."""
    command = MigrateCommand.parse("true", workdir=tmp_path)
    assert command.limit.seconds == timedelta(minutes=30).total_seconds()
    assert "migration_timeout" in command.limit.source


class TestFeature:
    """The same through a feature and drillbook.toml: `drillbook run --config … --features …`."""

    def test_alembic_project_by_step_sentence_and_by_config(self, tmp_path: Path, fresh: Fresh,
                                                            sandbox_cache_env: dict[str, str]) -> None:
        """CMD-01 names the command in the feature (round trip, drift, history); CMD-02 takes the
        configured one; CMD-03's downgrade forgets a table and fails naming it."""
        features = tmp_path / "features"
        project = write_alembic_project(features / "app")
        write_alembic_project(features / "forgetful", forgetful_down=True)
        subject = fresh("feature-subject")
        CommandReplay(_command(project), subject, environ=ENVIRON).up()
        config = tmp_path / "drillbook.toml"
        config.write_text('[targets.app]\nkind = "postgres"\ndsn = "${APP_DSN}"\n\n'
                          '[migrations]\ncommand = "alembic upgrade head"\nworkdir = "features/app"\n'
                          'command_timeout = "2m"\n', encoding="utf-8")
        (features / "app.feature").write_text(
            "Feature: the app's Alembic migrations\n\n"
            "  @id:CMD-01 @monthly\n  Scenario: they roll back and production matches them\n"
            '    Given the migrations are applied by the command "alembic upgrade head" in "app"\n'
            '    And the migrations are rolled back by the command "alembic downgrade base"\n'
            '    And the subject database "app"\n'
            "    When the migrations are replayed up, down and up again\n"
            "    Then the round trip leaves an identical schema at every version\n"
            "    And the replayed schema matches the subject database\n"
            "    And the migration history of the subject matches the migration files\n\n"
            "  @id:CMD-02 @monthly\n  Scenario: the configured command replays from empty\n"
            "    Given the migrations are applied by the configured command\n"
            "    When the migrations are replayed into a scratch database\n"
            "    Then the replay completes within 2 minutes\n\n"
            "  @id:CMD-03 @monthly\n  Scenario: a downgrade that forgets a table\n"
            '    Given the migrations are applied by the command "alembic upgrade head" in "forgetful"\n'
            '    And the migrations are rolled back by the command "alembic downgrade base"\n'
            "    When the migrations are replayed up, down and up again\n"
            "    Then the round trip leaves an identical schema at every version\n",
            encoding="utf-8")
        out = tmp_path / "out"
        done = drillbook("run", "--config", str(config), "--features", str(features), "--out", str(out),
                         env={**sandbox_cache_env, "APP_DSN": subject.dsn, "PATH": ENVIRON["PATH"],
                              "PROD_PG_DSN": PRODUCTION_DSN}, timeout=300)
        results = json.loads((out / "latest" / "results.json").read_text())
        outcomes = {s["id"]: s["outcome"] for s in results["scenarios"]}
        assert outcomes == {"CMD-01": "passed", "CMD-02": "passed", "CMD-03": "failed"}, done.stdout
        assert done.returncode == 1
        failed = next(s for s in results["scenarios"] if s["id"] == "CMD-03")
        assert "table public.accounts" in json.dumps(failed["verdicts"])
        assert "Pr0d-s3cret-pw" not in json.dumps(results)
