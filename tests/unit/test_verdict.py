"""The verdict model: outcomes, the no-boolean rule, and the one recording function."""

from __future__ import annotations

import contextvars
from datetime import timedelta

import pytest

from checks.errors import BackupUnreadable, StoreUnreachable
from checks.verdict import (
    ChecksFailed,
    Outcome,
    Verdict,
    VerdictFailed,
    format_duration,
    record,
    recording,
    soft_checks,
    verdict_from_error,
    worst,
)


class TestOutcome:
    def test_failed_and_error_count_as_fail(self) -> None:
        """Failed and error fail a run; passed, n/a and waived never do."""
        assert Outcome.FAILED.counts_as_fail()
        assert Outcome.ERROR.counts_as_fail()
        for outcome in (Outcome.PASSED, Outcome.NOT_APPLICABLE, Outcome.WAIVED):
            assert not outcome.counts_as_fail(strict=True)

    def test_warning_fails_only_when_strict(self) -> None:
        """A warning band passes unless the run is strict."""
        assert not Outcome.WARNING.counts_as_fail()
        assert Outcome.WARNING.counts_as_fail(strict=True)

    def test_worst_picks_error_over_failed(self) -> None:
        """A scenario's outcome is the most severe of its verdicts."""
        assert worst([Outcome.PASSED, Outcome.FAILED, Outcome.ERROR]) is Outcome.ERROR
        assert worst([Outcome.PASSED, Outcome.WARNING]) is Outcome.WARNING
        assert worst([]) is None


class TestVerdict:
    def test_is_not_a_boolean(self) -> None:
        """`if verdict:` is a bug waiting to happen, so it raises."""
        verdict = Verdict.passed("x", "fine")
        with pytest.raises(TypeError, match="not a boolean"):
            bool(verdict)

    def test_compare_names_measured_and_expected(self) -> None:
        """A failed comparison says what was measured and what was expected."""
        verdict = Verdict.compare("backup.freshness", measured=timedelta(hours=30),
                                  expected="<= 26h", ok=False)
        assert verdict.outcome is Outcome.FAILED
        assert "30m" not in verdict.message and "30h 00m 00s" in verdict.message
        assert "<= 26h" in verdict.message

    def test_round_trips_through_json_form(self) -> None:
        """Evidence logs are read back by the reports unchanged."""
        verdict = Verdict.failed("a.b", "msg", measured=timedelta(seconds=90), expected=5,
                                 evidence={"k": [1, "two"]})
        again = Verdict.from_dict(verdict.to_dict())
        assert again.outcome is Outcome.FAILED
        assert again.measured == 90.0
        assert again.evidence == {"k": [1, "two"]}


class TestRecord:
    def test_records_then_raises_on_fail(self) -> None:
        """record() logs every verdict and raises VerdictFailed with the message for a fail."""
        seen: list[Verdict] = []
        with recording(seen.append):
            record(Verdict.passed("ok", "fine"))
            with pytest.raises(VerdictFailed, match=r"\[failed\] broken"):
                record(Verdict.failed("bad", "broken"))
        assert [v.id for v in seen] == ["ok", "bad"]

    def test_strict_turns_warnings_into_failures(self) -> None:
        """Under --strict a warning fails the scenario."""
        with recording(lambda v: None, strict=True), pytest.raises(VerdictFailed):
            record(Verdict.warning("queue", "in the warning band"))
        with recording(lambda v: None, strict=False):
            record(Verdict.warning("queue", "in the warning band"))


class TestSoftChecks:
    def test_a_soft_failure_is_recorded_and_returned_not_raised(self) -> None:
        """Inside soft_checks() (the plugin's Then steps) the scenario goes on to its next check."""
        seen: list[Verdict] = []
        with recording(seen.append), soft_checks():
            verdict = record(Verdict.failed("bad", "broken"))
        assert verdict.outcome is Outcome.FAILED
        assert [v.id for v in seen] == ["bad"]

    def test_without_a_recorder_a_failure_still_raises(self) -> None:
        """Nobody would fail the scenario later: soft needs a recorder to be safe."""

        def unrecorded() -> None:
            with soft_checks(), pytest.raises(VerdictFailed):
                record(Verdict.failed("bad", "broken"))

        # A fresh context: this test itself runs under the plugin's recorder.
        contextvars.Context().run(unrecorded)

    def test_disabled_soft_checks_raise(self) -> None:
        """soft_checks(False) is how a Given, a When or a @stop-on-failure Then records."""
        with recording(lambda v: None), soft_checks(False), pytest.raises(VerdictFailed):
            record(Verdict.error("gone", "unreachable"))

    def test_checks_failed_lists_every_failing_verdict(self) -> None:
        failure = ChecksFailed([Verdict.failed("a", "late"), Verdict.error("b", "unreachable")])
        assert str(failure) == "2 checks did not pass:\n  [failed] late\n  [error] unreachable"


class TestFromError:
    def test_damaged_backup_is_failed_not_error(self) -> None:
        """A backup that was checked and is damaged is a failed verdict, with the hint kept."""
        verdict = verdict_from_error("restore", BackupUnreadable("x.gz: truncated", key="x.gz"))
        assert verdict.outcome is Outcome.FAILED
        assert verdict.evidence["hint"]
        assert verdict.evidence["key"] == "x.gz"

    def test_unreachable_store_is_error(self) -> None:
        """Could not check is `error`, never a skip and never a pass."""
        verdict = verdict_from_error("restore", StoreUnreachable("s3://b/: connection refused"))
        assert verdict.outcome is Outcome.ERROR


class TestFormatDuration:
    @pytest.mark.parametrize(("seconds", "text"), [(5, "5.0s"), (90, "1m 30s"), (3725, "1h 02m 05s")])
    def test_reads_like_a_person_writes(self, seconds: float, text: str) -> None:
        """Durations in messages are for people."""
        assert format_duration(timedelta(seconds=seconds)) == text
