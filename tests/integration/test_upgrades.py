"""The upgrade rehearsal and ``drillbook gate pre-upgrade`` against the real sandbox servers.

The rehearsal restores the sandbox's newest ``nightly-custom`` backup into the
local scratch cluster, applies features/migrations/sandbox-next's pending
migrations and runs health queries; the gate runs as a user runs it, in a
subprocess, on the embedded sandbox.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from checks.upgrades import rehearsed_downtime
from checks.verdict import Outcome
from drills.local import LocalEnvironment
from drills.migrations import load_migrations
from drills.upgrades import HealthQuery, UpgradeRehearsal, load_plan_file
from tests.support.cli import drillbook, private_tmpdir

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
PLAN = REPO / "features" / "upgrades" / "sandbox-upgrade.toml"
SANDBOX_NEXT = REPO / "features" / "migrations" / "sandbox-next"
HEALTH = [HealthQuery.parse("SELECT 1", "= 1"), HealthQuery.parse("SELECT count(*) FROM signatures", "> 0")]


def _rehearse(
    env: LocalEnvironment,
    *,
    migrations: Path = SANDBOX_NEXT,
    health: list[HealthQuery] = HEALTH,
    plan: Any = None,
) -> tuple[Any, list[str]]:
    """Run a rehearsal to the end; return its result and the scratch databases left after close()."""
    rehearsal = UpgradeRehearsal(
        plan or load_plan_file(PLAN),
        store=env.store("nightly-custom"),
        scratch=env.scratch_postgres(),
        migrations=load_migrations(migrations),
        health=health,
    )
    with rehearsal:
        result = rehearsal.run()
    return result, env.scratch_postgres().databases()


class TestRehearsal:
    def test_restores_migrates_and_checks_health_each_timed(self, local_env: LocalEnvironment) -> None:
        """The plan's three database steps run for real in plan order; the scratch database is dropped."""
        before = set(local_env.scratch_postgres().databases())
        result, after = _rehearse(local_env)
        assert result.ok, result.evidence()
        assert [(s.step, s.action) for s in result.steps] == [
            ("verify the backup", "restore"),
            ("migrate the database", "migrate"),
            ("health check", "health"),
        ]
        assert all(s.duration_s > 0 for s in result.steps)
        # The nightly backup predates the next release: its pending migrations were applied.
        assert result.pending == ["000006", "000007"]
        assert "2 pending migration(s) applied (000006, 000007)" in result.steps[1].detail
        assert "SELECT count(*) FROM signatures returned" in result.steps[2].detail
        assert [s.name for s in result.not_rehearsed] == [
            "verify the release",
            "back up the database",
            "enter maintenance mode",
            "upgrade the application",
            "leave maintenance mode",
        ]
        assert set(after) == before
        assert any(e["phase"] == "cleanup: drop scratch database" for e in result.journal.entries)

    def test_measured_downtime_is_compared_with_the_window(self, local_env: LocalEnvironment) -> None:
        """Migrate + health measured, the application's downtime steps at their estimates (5m)."""
        result, _ = _rehearse(local_env)
        verdict = rehearsed_downtime(
            result.steps, timedelta(minutes=15), estimated=result.estimated_downtime_not_rehearsed()
        )
        assert verdict.outcome is Outcome.PASSED, verdict.message
        measured = verdict.evidence["measured_downtime_s"]
        assert 0 < measured < 60
        assert verdict.measured == timedelta(minutes=5, seconds=measured)
        tight = rehearsed_downtime(
            result.steps, timedelta(minutes=5), estimated=result.estimated_downtime_not_rehearsed()
        )
        assert tight.outcome is Outcome.FAILED and "over by" in tight.message

    def test_a_failing_health_query_stops_the_rehearsal_naming_the_step(
        self, local_env: LocalEnvironment
    ) -> None:
        """The documented count query against a table the restore lacks: the health step fails, named."""
        result, _ = _rehearse(
            local_env, health=[HealthQuery.parse("SELECT count(*) FROM no_such_table", "> 0")]
        )
        failed = [s for s in result.steps if not s.ok]
        assert [s.step for s in failed] == ["health check"]
        assert "no_such_table" in failed[0].detail
        verdict = rehearsed_downtime(result.steps, timedelta(minutes=15))
        assert verdict.outcome is Outcome.FAILED
        assert "rehearsal stopped at step `health check` (health)" in verdict.message

    def test_a_failing_migration_names_step_file_and_line(
        self, local_env: LocalEnvironment, tmp_path: Path
    ) -> None:
        """A pending migration breaking half-way: the migrate step fails naming the file; no health step."""
        broken = tmp_path / "next"
        shutil.copytree(SANDBOX_NEXT, broken)
        (broken / "000007_scans_by_account.up.sql").write_text(
            "CREATE TABLE ok_so_far (id int);\nALTER TABLE scans ADD COLUMN x no_such_type;\n",
            encoding="utf-8",
        )
        result, _ = _rehearse(local_env, migrations=broken)
        assert [(s.step, s.ok) for s in result.steps] == [
            ("verify the backup", True),
            ("migrate the database", False),
        ]
        assert "000007_scans_by_account.up.sql:2" in result.steps[1].detail
        assert "no_such_type" in result.steps[1].detail
        assert "health check" in [s.name for s in result.not_rehearsed]

    def test_a_second_restore_step_drops_the_first_copy(self, local_env: LocalEnvironment) -> None:
        """Restore, migrate, restore again (a rollback rehearsal): the first copy is dropped, none is left."""
        before = set(local_env.scratch_postgres().databases())
        plan = load_plan_file(PLAN)
        again = replace(plan.steps[2], position=9, name="roll back by restore")
        result, after = _rehearse(local_env, plan=replace(plan, steps=(*plan.steps, again)))
        assert result.ok, result.evidence()
        assert [s.action for s in result.steps] == ["restore", "migrate", "health", "restore"]
        assert set(after) == before

    def test_migrating_before_any_restore_is_named(self, local_env: LocalEnvironment) -> None:
        """A plan whose migrate step comes before its restore step cannot be rehearsed: said plainly."""
        plan = load_plan_file(PLAN)
        steps = [s for s in plan.steps if s.rehearse != "restore"]
        result, _ = _rehearse(local_env, plan=replace(plan, steps=tuple(steps)))
        assert not result.ok
        assert "step 5 `migrate the database` needs a restored database" in result.steps[0].detail


@pytest.fixture(scope="module")
def gate_out(
    tmp_path_factory: pytest.TempPathFactory, sandbox_cache_env: dict[str, str]
) -> Iterator[dict[str, Any]]:
    """An out dir whose ledger holds a BKP-01 pass (the monthly restore drill just ran)."""
    out = tmp_path_factory.mktemp("gate-out")
    tmpdir = private_tmpdir("drillbook-gate-tmp-")
    env = {**sandbox_cache_env, "TMPDIR": str(tmpdir)}
    proc = drillbook(
        "run",
        "--features",
        "features/backup/restore_from_yesterday.feature",
        "--cadence",
        "monthly",
        "--out",
        str(out),
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    yield {"out": out, "env": env}
    shutil.rmtree(tmpdir, ignore_errors=True)


def _gate(gate_out: dict[str, Any], *args: str) -> tuple[Any, float]:
    started = time.monotonic()
    proc = drillbook(
        "gate", "pre-upgrade", *args, "--out", str(gate_out["out"]), env=gate_out["env"], timeout=400
    )
    return proc, time.monotonic() - started


class TestGatePreUpgrade:
    def test_passes_on_the_sandbox(self, gate_out: dict[str, Any]) -> None:
        """Every @pre-upgrade scenario runs (backup, migrations, supply chain, plan, rehearsal) and passes."""
        proc, seconds = _gate(gate_out, "--to", "2.0.0")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        for ident in (
            "MIG-02",
            "MIG-03",
            "MIG-04",
            "MIG-05",
            "SUP-01",
            "SUP-04",
            "UPG-01",
            "UPG-02",
            "UPG-03",
            "UPG-04",
            "UPG-05",
        ):
            assert ident in proc.stdout, ident
        assert "BKP-10" not in proc.stdout  # not a pre-upgrade scenario
        assert "drillbook gate pre-upgrade: PASS" in proc.stdout
        assert "nothing blocks the upgrade to 2.0.0" in proc.stdout
        print(f"gate run: {seconds:.1f}s")

    def test_a_skipped_major_blocks_naming_the_scenario_and_rule(self, gate_out: dict[str, Any]) -> None:
        """--to 3.0.0 from the plan's 1.4.0: exit 1, UPG-03 and the skipped major named at the end."""
        proc, _ = _gate(gate_out, "--to", "3.0.0")
        assert proc.returncode == 1, proc.stdout + proc.stderr
        tail = proc.stdout[proc.stdout.index("drillbook gate pre-upgrade: BLOCKED") :]
        assert "the upgrade to 3.0.0 is blocked by 1 of" in tail
        assert "UPG-03" in tail
        assert "1.4.0 → 3.0.0 skips major version(s) 2" in tail

    def test_from_overrides_the_plan_and_a_downgrade_is_an_error(self, gate_out: dict[str, Any]) -> None:
        """--from 2.1.0 --to 2.0.0: the version path is an error naming both versions."""
        proc, _ = _gate(gate_out, "--to", "2.0.0", "--from", "2.1.0")
        assert proc.returncode == 1, proc.stdout + proc.stderr
        tail = proc.stdout[proc.stdout.index("BLOCKED") :]
        assert "the upgrade to 2.1.0 → 2.0.0" in tail
        assert (
            "error: upgrade.version_path: target version 2.0.0 is lower than the installed version 2.1.0"
            in tail
        )

    def test_canary_blocks_on_the_broken_artifact(self, gate_out: dict[str, Any]) -> None:
        """--canary breaks one artifact of the release after signing: the supply-chain scenarios block."""
        proc, _ = _gate(gate_out, "--to", "2.0.0", "--canary")
        assert proc.returncode == 1, proc.stdout + proc.stderr
        tail = proc.stdout[proc.stdout.index("BLOCKED") :]
        assert "SUP-0" in tail
        assert "UPG-" not in tail and "MIG-" not in tail

    def test_without_a_verified_backup_it_blocks_on_the_cadence(
        self, tmp_path: Path, gate_out: dict[str, Any]
    ) -> None:
        """A fresh out dir: the ledger never saw BKP-01, so UPG-05 blocks, naming the drill."""
        proc = drillbook(
            "gate", "pre-upgrade", "--to", "2.0.0", "--out", str(tmp_path), env=gate_out["env"], timeout=400
        )
        assert proc.returncode == 1, proc.stdout + proc.stderr
        tail = proc.stdout[proc.stdout.index("BLOCKED") :]
        assert "UPG-05" in tail and "drill BKP-01 has never run" in tail

    @pytest.mark.parametrize(
        ("args", "message"),
        [
            ((), "the following arguments are required: --to"),
            (("--to", "banana"), "--to 'banana': not a version"),
            (("--to", "2.0.0", "--from", "1.x"), "--from '1.x': not a version"),
        ],
    )
    def test_usage_errors_exit_2_before_anything_runs(
        self, tmp_path: Path, args: tuple[str, ...], message: str
    ) -> None:
        """No --to, or a malformed version: exit 2, the option named, no run directory written."""
        proc = drillbook("gate", "pre-upgrade", *args, "--out", str(tmp_path))
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert message in proc.stderr
        assert list(tmp_path.iterdir()) == []


BAD_PLANS = f"""Feature: Upgrade plans with mistakes in them

  @id:BAD-01
  Scenario: Rules with a cycle
    Given the upgrade plan "cyclic":
      | step    | component |
      | backup  | postgres  |
      | migrate | postgres  |
      | verify  | postgres  |
    And the ordering rules:
      | before  | after   |
      | backup  | migrate |
      | migrate | verify  |
      | verify  | backup  |
    Then the upgrade steps respect every ordering rule

  @id:BAD-02
  Scenario: A step naming an unknown component
    Given the upgrade plan "warehouse":
      | step              | component |
      | migrate           | postgres  |
      | upgrade warehouse | starrocks |
    And the product's components are "postgres, app"
    Then the upgrade plan is well formed

  @id:BAD-03
  Scenario: A target lower than the installed version
    Given the upgrade plan in "{PLAN}"
    And the target version is "1.3.0"
    Then the version path to the target version is allowed

  @id:BAD-04
  Scenario: A bad cell in the plan table
    Given the upgrade plan "typo":
      | step    | component | downtime |
      | migrate | postgres  | maybe    |
    Then the planned downtime fits in the window

  @id:BAD-05
  Scenario: Migrating before the backup is verified
    Given the upgrade plan "rushed":
      | step          | component |
      | migrate       | postgres  |
      | verify backup | postgres  |
    And the ordering rules:
      | before        | after   | because                                         |
      | verify backup | migrate | a backup must be verified before maintenance    |
    Then the upgrade steps respect every ordering rule

  @id:BAD-06
  Scenario: A major upgrade from below the runbook's minimum, stated in the feature
    Given the upgrade plan "major":
      | step    | component |
      | migrate | postgres  |
    And the installed version is "4.7.0"
    And the target version is "5.0.0"
    And an upgrade to 5.x requires at least version "4.8.0" installed
    Then the version path to the target version is allowed

  @id:BAD-07
  Scenario: Two majors at a time allowed, three asked for
    Given the upgrade plan "jump":
      | step    | component |
      | migrate | postgres  |
    And the installed version is "3.1.0"
    And the target version is "6.0.0"
    And upgrades go at most 2 major versions at a time
    Then the version path to the target version is allowed
"""


class TestBadPlansInFeatures:
    def test_each_mistake_is_a_verdict_naming_the_step(
        self, tmp_path: Path, sandbox_cache_env: dict[str, str]
    ) -> None:
        """`drillbook run` on plans with mistakes: failed or error verdicts that name steps and rules."""
        features = tmp_path / "features"
        features.mkdir()
        (features / "bad_plans.feature").write_text(BAD_PLANS, encoding="utf-8")
        proc = drillbook(
            "run",
            "--features",
            str(features),
            "--out",
            str(tmp_path / "out"),
            env=sandbox_cache_env,
            timeout=300,
        )
        assert proc.returncode == 1, proc.stdout + proc.stderr
        results = json.loads((tmp_path / "out" / "latest" / "results.json").read_text())
        by_id = {
            next(t.split(":", 1)[1] for t in s["tags"] if t.startswith("id:")): s
            for s in results["scenarios"]
        }
        # The checks that failed; steps after a failed one are listed apart as "not checked".
        failing = {
            ident: [
                (v["outcome"], v["message"]) for v in s["verdicts"]
                if v["outcome"] in ("failed", "error") and v["id"] != "step.not_checked"
            ]
            for ident, s in by_id.items()
        }
        not_checked = {
            ident: [v["message"] for v in s["verdicts"] if v["id"] == "step.not_checked"]
            for ident, s in by_id.items()
        }
        assert not_checked["BAD-04"] == ['not checked: Given the upgrade plan "typo": did not pass, '
                                         "so Then the planned downtime fits in the window never ran"]
        assert failing["BAD-01"] == [
            (
                "error",
                "the ordering rules of `cyclic` contain a cycle: `backup` → `migrate` → `verify` → `backup`; "
                "no order can satisfy them",
            )
        ]
        [(outcome, message)] = failing["BAD-02"]
        assert outcome == "error"
        assert (
            "step 2 `upgrade warehouse` names unknown component `starrocks` (known: app, postgres)" in message
        )
        [(outcome, message)] = failing["BAD-03"]
        assert outcome == "error"
        assert message.startswith("target version 1.3.0 is lower than the installed version 1.4.0")
        [(outcome, message)] = failing["BAD-04"]
        assert outcome == "error"
        assert "plan `typo`, step 1 `migrate`, downtime: 'maybe' is not yes or no" in message
        [(outcome, message)] = failing["BAD-05"]
        assert outcome == "failed"
        assert message == (
            "step 1 `migrate` comes before step 2 `verify backup`, but the rule says `verify backup` "
            "before `migrate` (a backup must be verified before maintenance)"
        )
        assert failing["BAD-06"] == [
            (
                "failed",
                "4.7.0 → 5.0.0: an upgrade to 5.x requires at least 4.8.0 installed first (installed 4.7.0)",
            )
        ]
        [(outcome, message)] = failing["BAD-07"]
        assert outcome == "failed"
        assert message.startswith(
            "3.1.0 → 6.0.0 skips major version(s) 4, 5: upgrade one major version at a time"
        )
        assert "(at most 2 per upgrade)" in message
