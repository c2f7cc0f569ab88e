"""Fleet runs built in memory: members x drills with RTO and backup-age verdicts, and their history.

Shared by the fleet report's unit tests, its Chromium test and ``bench/fleet_report.py``. Values
are deterministic: member ``db-000`` restores slower each run (creeping towards its RTO),
every seventh member's drill fails, and every eleventh errors.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from checks.verdict import Outcome, Verdict, format_duration
from reports.results import RunResult, ScenarioResult, StepResult

T0 = datetime(2026, 11, 1, 2, 0, tzinfo=UTC)
RTO = timedelta(minutes=30)
MAX_AGE = timedelta(hours=26)
DRILL_NAMES = {
    "BKP-01": "Yesterday's backup restores into a scratch database",
    "BKP-02": "Nightly backups are fresh",
    "BKP-03": "Backups are kept for 35 days",
    "HLT-01": "Replication lag stays within the warning band",
    "MIG-01": "Schema migrations replay cleanly",
    "UPG-01": "The upgrade rehearsal restores and migrates",
}


def member_name(index: int) -> str:
    return f"db-{index:03d}"


def restore_seconds(member: int, run: int) -> float:
    """db-000 climbs from 40% to over 100% of its RTO over 12 runs; the others wobble around 20%."""
    if member == 0:
        return RTO.total_seconds() * (0.4 + 0.055 * run)
    return RTO.total_seconds() * (0.18 + 0.02 * ((member + run) % 5))


def restore_evidence(member: int, run: int, took: timedelta) -> dict[str, object]:
    """What drills/restore.py records for a restore (RestoreResult.evidence), journal included."""
    name = member_name(member)
    at = T0 + timedelta(days=run)
    phases = {"download": 0.1, "restore": 0.8, "first_query": 0.05, "cleanup": 0.05}
    return {
        "store": f"s3://backups/{name}/", "key": f"{name}/{at:%Y%m%d}.dump", "size_bytes": 734_003_200,
        "backup_time": (at - timedelta(hours=7)).isoformat(), "format": "custom", "sha256": "ab" * 32,
        "scratch": f"postgres scratch drill_{name.replace('-', '_')}_{run} on 127.0.0.1:5433",
        "timings_s": {k: round(took.total_seconds() * v, 3) for k, v in phases.items()},
        "rto_s": took.total_seconds(),
        "journal": [{"phase": k, "status": "passed", "started_at": at.isoformat(),
                     "duration_s": round(took.total_seconds() * v, 6)} for k, v in phases.items()],
    }


def drill_verdicts(drill: str, member: int, run: int) -> list[Verdict]:
    """The verdicts one drill recorded for one member in one run."""
    at = T0 + timedelta(days=run)
    if drill in ("BKP-01", "UPG-01"):
        took = timedelta(seconds=restore_seconds(member, run))
        if member % 11 == 5:
            return [Verdict.error("restore.completed", "scratch server unreachable",
                                  evidence={"error": "TargetUnreachable"}, started_at=at)]
        return [
            Verdict.passed("restore.completed", f"restored in {format_duration(took)}",
                           measured=round(took.total_seconds(), 3), expected="restores without error",
                           evidence=restore_evidence(member, run, took), started_at=at),
            Verdict.compare("restore.rto", measured=took, expected=f"<= {format_duration(RTO)}",
                            ok=took <= RTO, message=f"restore took {format_duration(took)}",
                            evidence={"limit_s": RTO.total_seconds()}).with_timing(at, 0.0),
        ]
    if drill == "BKP-02":
        age = timedelta(hours=6 + (member + run) % 7)
        if member % 7 == 3:
            age = timedelta(hours=30)
        return [Verdict.compare("backup.freshness", measured=age, expected="<= 26h", ok=age <= MAX_AGE,
                                message=f"newest backup is {format_duration(age)} old",
                                evidence={"max_age_s": MAX_AGE.total_seconds()}).with_timing(at, 0.0)]
    if drill == "HLT-01" and member % 5 == 2:
        return [Verdict.warning("postgres.replication_lag", "lag 4s in the warning band", measured=4.0,
                                started_at=at)]
    return [Verdict.passed(f"{drill.lower()}.check", "holds", started_at=at)]


def fleet_run(members: int, drills: list[str], *, run: int = 11, run_id: str | None = None) -> RunResult:
    """One merged fleet run: every member x drill, with ``member`` and its ``member:<name>`` tag."""
    scenarios = []
    for m in range(members):
        name = member_name(m)
        for drill in drills:
            verdicts = drill_verdicts(drill, m, run)
            scenarios.append(ScenarioResult(
                nodeid=f"features/fleet.feature::test_{drill.lower().replace('-', '_')}[{name}]",
                feature="Fleet drills", feature_path="features/backup/fleet.feature",
                scenario=DRILL_NAMES.get(drill, drill), description="An unrestorable backup is no backup.",
                tags=[f"id:{drill}", "monthly", "postgres", f"member:{name}"], verdicts=verdicts,
                steps=[StepResult("Given", 'the backups in "nightly"', "passed", 0.1),
                       StepResult("Then", "it holds", "failed" if any(v.counts_as_fail() for v in verdicts)
                                  else "passed", 0.1)],
                started_at=(T0 + timedelta(days=run)).isoformat(), duration_s=12.0, member=name,
            ))
    start = T0 + timedelta(days=run)
    return RunResult(run_id=run_id or f"fleet-{run:02d}", started_at=start.isoformat(),
                     finished_at=(start + timedelta(hours=1)).isoformat(), drillbook_version="0.1.0",
                     environment="live", command="drillbook report merge runs/", scenarios=scenarios)


def fleet_history(members: int, drills: list[str], *, runs: int = 11) -> list[RunResult]:
    """The ``runs`` earlier merged runs before :func:`fleet_run`'s default run (index ``runs``)."""
    return [fleet_run(members, drills, run=i) for i in range(runs)]


def every_outcome(verdict_outcome: Outcome) -> Verdict:
    """A verdict with the given outcome, for matrix cells of every colour."""
    return Verdict(f"check.{verdict_outcome.value}", verdict_outcome, verdict_outcome.value, started_at=T0)
