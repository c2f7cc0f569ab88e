"""The cadence step's ledger view counts a drill that finished earlier in the same run."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from checks.cadence import DrillHistory, within_cadence
from checks.verdict import Outcome, Verdict
from drillbook.audit import LedgerView
from reports.ledger import LocalLedger
from reports.results import ScenarioResult

NOW = datetime(2026, 11, 26, 5, 0, tzinfo=UTC)


def _scenario(ident: str, outcome: Outcome, *, started: datetime, duration: float = 1.0) -> ScenarioResult:
    return ScenarioResult(nodeid=ident, feature="f", feature_path="features/backup/x.feature", scenario=ident,
                          tags=[f"id:{ident}", "monthly"], verdicts=[Verdict("c", outcome, "m")],
                          started_at=started.isoformat(timespec="seconds"), duration_s=duration)


class TestLedgerViewThisRun:
    def test_a_pass_earlier_in_this_run_counts(self, tmp_path: Path) -> None:
        """An empty ledger, BKP-01 passed minutes ago in this run: within cadence, run id named."""
        done = [_scenario("BKP-01", Outcome.PASSED, started=NOW - timedelta(minutes=3))]
        view = LedgerView(LocalLedger(tmp_path / "ledger.jsonl"), lambda: ("run-1", done))
        history = view.history("BKP-01")
        assert history == DrillHistory("BKP-01", "monthly", NOW - timedelta(minutes=3), Outcome.PASSED,
                                       NOW - timedelta(minutes=3), "run-1")
        assert within_cadence(history, now=NOW).outcome is Outcome.PASSED

    def test_a_failure_in_this_run_is_the_last_run_not_a_pass(self, tmp_path: Path) -> None:
        """A failed BKP-01 in this run gives no pass: never passed, the run's outcome named."""
        done = [_scenario("BKP-01", Outcome.FAILED, started=NOW)]
        view = LedgerView(LocalLedger(tmp_path / "ledger.jsonl"), lambda: ("run-1", done))
        history = view.history("BKP-01")
        assert history.last_outcome is Outcome.FAILED and history.last_pass is None
        assert within_cadence(history, now=NOW).outcome is Outcome.FAILED

    def test_unfinished_and_other_scenarios_are_ignored(self, tmp_path: Path) -> None:
        """A scenario still running (no duration yet) and other ids leave the ledger's answer alone."""
        done = [_scenario("BKP-01", Outcome.PASSED, started=NOW, duration=0.0),
                _scenario("BKP-02", Outcome.PASSED, started=NOW)]
        view = LedgerView(LocalLedger(tmp_path / "ledger.jsonl"), lambda: ("run-1", done))
        history = view.history("BKP-01")
        assert history.last_run is None
        assert "has never run" in within_cadence(history, now=NOW).message
