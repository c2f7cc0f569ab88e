"""Database growth: the arithmetic, the verdict, and which earlier run's size it is measured against."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from checks.pg_health import EarlierSize, SizeMeasurement, growth_per_day, growth_within
from checks.verdict import Outcome, Verdict
from drillbook.history import ScenarioHistory, load_earlier_runs, previous_size
from reports.results import RunResult, ScenarioResult

NOW = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)
LABEL = "`sark` (sark on 10.0.0.5:5432)"
GB = 1024**3
MB = 1024**2

SIZES = st.integers(min_value=0, max_value=10 * 1024**4)
ELAPSED = st.integers(min_value=1, max_value=400 * 86_400).map(lambda s: timedelta(seconds=s))


def _size_verdict(size: int, at: datetime, *, target: str = LABEL, check: str = "postgres.size") -> Verdict:
    return Verdict.passed(check, "size", evidence={"target": target, "database": "sark", "bytes": size},
                          started_at=at)


def _run(run_id: str, *scenarios: tuple[str, list[Verdict]]) -> RunResult:
    return RunResult(run_id=run_id, started_at=NOW.isoformat(), scenarios=[
        ScenarioResult(nodeid=f"n::{ident}", feature="f", feature_path="features/f.feature", scenario=ident,
                       tags=[f"id:{ident}"], verdicts=verdicts) for ident, verdicts in scenarios])


class TestGrowthPerDay:
    @given(before=SIZES, after=SIZES, elapsed=ELAPSED)
    def test_the_change_over_the_elapsed_days(self, before: int, after: int, elapsed: timedelta) -> None:
        """(size now - size then) / elapsed days: multiplied back by the days, it is the change."""
        rate = growth_per_day(before, after, elapsed)
        assert rate * (elapsed.total_seconds() / 86_400) == pytest.approx(after - before, rel=1e-9, abs=1e-3)

    @given(size=SIZES, delta=st.integers(min_value=0, max_value=GB),
           days=st.integers(min_value=1, max_value=90))
    def test_whole_days_divide_exactly(self, size: int, delta: int, days: int) -> None:
        """Growth of `delta` over `days` whole days is delta / days per day; shrinking is negative."""
        assert growth_per_day(size, size + delta, timedelta(days=days)) == pytest.approx(delta / days)
        assert growth_per_day(size + delta, size, timedelta(days=days)) == pytest.approx(-delta / days)

    @pytest.mark.parametrize("elapsed", [timedelta(0), timedelta(seconds=-5)])
    def test_an_earlier_size_must_be_earlier(self, elapsed: timedelta) -> None:
        with pytest.raises(ValueError, match="must be earlier"):
            growth_per_day(1, 2, elapsed)


class TestGrowthVerdict:
    @given(before=SIZES, after=SIZES, elapsed=ELAPSED, limit=st.integers(min_value=0, max_value=100 * GB))
    def test_passes_exactly_when_growth_is_within_the_limit(
            self, before: int, after: int, elapsed: timedelta, limit: int) -> None:
        """Passed iff growth per day <= limit; evidence keeps both sizes, the elapsed time and the rate."""
        previous = SizeMeasurement(bytes=before, measured_at=NOW - elapsed, run_id="r1")
        verdict = growth_within(after, database="sark", earlier=EarlierSize(previous), now=NOW,
                                max_bytes_per_day=limit, label=LABEL)
        rate = growth_per_day(before, after, elapsed)
        assert verdict.outcome is (Outcome.PASSED if rate <= limit else Outcome.FAILED)
        assert verdict.evidence["bytes"] == after
        assert verdict.evidence["previous"]["bytes"] == before
        assert verdict.evidence["elapsed_s"] == elapsed.total_seconds()
        assert verdict.measured == round(rate)

    def test_a_failure_names_database_growth_and_limit(self) -> None:
        previous = SizeMeasurement(bytes=10 * GB, measured_at=NOW - timedelta(days=2),
                                   run_id="20260313T1200Z-a")
        verdict = growth_within(14 * GB, database="sark", earlier=EarlierSize(previous), now=NOW,
                                max_bytes_per_day=GB, label=LABEL)
        assert verdict.outcome is Outcome.FAILED
        assert verdict.message == (
            f"{LABEL}: database sark grew by 2.0 GB per day (10 GB → 14 GB in 48h 00m 00s since run "
            "20260313T1200Z-a), limit 1.0 GB per day")

    def test_a_shrinking_database_passes_and_says_so(self) -> None:
        previous = SizeMeasurement(bytes=20 * MB, measured_at=NOW - timedelta(days=1), run_id="r")
        verdict = growth_within(10 * MB, database="sark", earlier=EarlierSize(previous), now=NOW,
                                max_bytes_per_day=0, label=LABEL)
        assert verdict.outcome is Outcome.PASSED
        assert "shrank by 10 MB per day" in verdict.message

    def test_the_first_measurement_is_not_applicable_and_keeps_the_size(self) -> None:
        """No earlier size: not applicable with the reason, and the size now recorded for the next run."""
        earlier = EarlierSize(None, searched="2 earlier run(s) in out",
                              unreadable=("out/x/results.json: JSONDecodeError: ...",))
        verdict = growth_within(123_456, database="sark", earlier=earlier, now=NOW, max_bytes_per_day=GB,
                                label=LABEL)
        assert verdict.outcome is Outcome.NOT_APPLICABLE
        assert "first measurement: recorded 123,456 bytes" in verdict.message
        assert "growth is checked from the next run" in verdict.message
        assert verdict.evidence["bytes"] == 123_456
        assert verdict.evidence["target"] == LABEL
        assert verdict.evidence["measured_at"] == NOW
        assert verdict.evidence["unreadable_results"] == ["out/x/results.json: JSONDecodeError: ..."]

    def test_an_earlier_size_from_the_future_is_an_error(self) -> None:
        previous = SizeMeasurement(bytes=1, measured_at=NOW + timedelta(minutes=1), run_id="r")
        verdict = growth_within(2, database="sark", earlier=EarlierSize(previous), now=NOW,
                                max_bytes_per_day=GB, label=LABEL)
        assert verdict.outcome is Outcome.ERROR and "check the clocks" in verdict.message

    def test_a_first_measurement_names_the_targets_measured_before(self) -> None:
        """Earlier runs that measured another server or database are said, not silently ignored."""
        earlier = EarlierSize(None, other_targets=("`sark` (sark on 10.0.0.9:5432)",))
        verdict = growth_within(5, database="sark", earlier=earlier, now=NOW, max_bytes_per_day=GB,
                                label=LABEL)
        assert verdict.outcome is Outcome.NOT_APPLICABLE
        assert "measured another server or database: `sark` (sark on 10.0.0.9:5432)" in verdict.message
        assert verdict.evidence["other_targets"] == ["`sark` (sark on 10.0.0.9:5432)"]


MEASUREMENTS = st.lists(st.tuples(
    st.sampled_from(["SARK-03", "SARK-25"]),          # scenario
    st.sampled_from([LABEL, "`other` (x on h:1)"]),   # target
    st.sampled_from(["postgres.size", "postgres.growth", "postgres.connections"]),
    st.integers(min_value=-5 * 86_400, max_value=5 * 86_400),  # seconds from NOW
    SIZES,
), max_size=12)


class TestPreviousSize:
    @given(found=MEASUREMENTS)
    def test_the_most_recent_earlier_size_of_the_same_scenario_and_target(
            self, found: list[tuple[str, str, str, int, int]]) -> None:
        """Of every size recorded, the latest one before now from the same scenario id and target."""
        runs = [_run(f"run-{i}", (ident, [_size_verdict(size, NOW + timedelta(seconds=offset), target=target,
                                                          check=check)]))
                for i, (ident, target, check, offset, size) in enumerate(found)]
        chosen = previous_size(runs, scenario="SARK-03", target=LABEL, before=NOW)
        eligible = [(NOW + timedelta(seconds=offset), size)
                    for ident, target, check, offset, size in found
                    if ident == "SARK-03" and target == LABEL and check != "postgres.connections"
                    and offset < 0]
        if not eligible:
            assert chosen is None
        else:
            assert chosen is not None
            latest = max(at for at, _ in eligible)
            assert chosen.measured_at == latest
            assert (latest, chosen.bytes) in eligible

    def test_measured_at_in_evidence_wins_over_the_verdict_start(self) -> None:
        verdict = Verdict.not_applicable("postgres.growth", "first", started_at=NOW - timedelta(days=9),
                                         evidence={"target": LABEL, "bytes": 7,
                                                   "measured_at": (NOW - timedelta(days=1)).isoformat()})
        chosen = previous_size([_run("r", ("SARK-03", [verdict]))], scenario="SARK-03", target=LABEL,
                               before=NOW)
        assert chosen == SizeMeasurement(bytes=7, measured_at=NOW - timedelta(days=1), run_id="r")

    def test_evidence_without_a_whole_number_of_bytes_is_not_a_size(self) -> None:
        verdicts = [Verdict.error("postgres.size", "unreachable", evidence={"target": LABEL}),
                    _size_verdict(True, NOW - timedelta(hours=1)),  # type: ignore[arg-type]
                    Verdict.passed("postgres.size", "odd", evidence={"target": LABEL, "bytes": "12"})]
        assert previous_size([_run("r", ("SARK-03", verdicts))], scenario="SARK-03", target=LABEL,
                             before=NOW) is None


class TestEarlierRuns:
    def _write(self, out: Path, run_id: str, run: RunResult) -> Path:
        (out / run_id).mkdir(parents=True)
        run.write(out / run_id / "results.json")
        return out / run_id

    def test_siblings_are_read_and_this_run_and_latest_are_not(self, tmp_path: Path) -> None:
        out = tmp_path / "out"
        self._write(out, "r1", _run("r1", ("SARK-03", [_size_verdict(1, NOW - timedelta(days=2))])))
        self._write(out, "r2", _run("r2", ("SARK-03", [_size_verdict(2, NOW - timedelta(days=1))])))
        (out / "latest").symlink_to("r2")
        (out / "r3").mkdir()  # an unfinished run: no results.json
        (out / "ledger.jsonl").write_text("{}\n")
        here = self._write(out, "now", _run("now", ("SARK-03", [_size_verdict(3, NOW - timedelta(hours=1))])))
        earlier = load_earlier_runs(here)
        assert sorted(r.run_id for r in earlier.runs) == ["r1", "r2"]
        assert earlier.unreadable == ()
        lookup = ScenarioHistory(scenario="SARK-03", earlier=earlier).previous_size(LABEL, before=NOW)
        assert lookup.previous == SizeMeasurement(bytes=2, measured_at=NOW - timedelta(days=1), run_id="r2")
        assert "2 earlier run(s)" in lookup.searched and lookup.other_targets == ()

    def test_sizes_of_other_targets_are_named_not_used(self, tmp_path: Path) -> None:
        out = tmp_path / "out"
        moved = "`sark` (sark on 10.0.0.9:5432)"
        measured = _size_verdict(1, NOW - timedelta(days=1), target=moved)
        self._write(out, "r1", _run("r1", ("SARK-03", [measured])))
        lookup = ScenarioHistory(scenario="SARK-03", earlier=load_earlier_runs(out / "now")).previous_size(
            LABEL, before=NOW)
        assert lookup.previous is None and lookup.other_targets == (moved,)

    def test_other_targets_come_most_recent_first_and_the_message_names_three(self, tmp_path: Path) -> None:
        out = tmp_path / "out"
        for day in range(1, 6):
            ported = f"`sark` (sark on 127.0.0.1:{5000 + day})"
            self._write(out, f"r{day}", _run(f"r{day}", ("SARK-03", [
                _size_verdict(1, NOW - timedelta(days=day), target=ported)])))
        earlier = ScenarioHistory(scenario="SARK-03", earlier=load_earlier_runs(out / "now")).previous_size(
            LABEL, before=NOW)
        assert [t[-5:-1] for t in earlier.other_targets] == ["5001", "5002", "5003", "5004", "5005"]
        verdict = growth_within(5, database="sark", earlier=earlier, now=NOW, max_bytes_per_day=GB,
                                label=LABEL)
        assert "127.0.0.1:5003) and 2 more)" in verdict.message and "5004" not in verdict.message
        assert len(verdict.evidence["other_targets"]) == 5

    @pytest.mark.parametrize("content", ["{not json", json.dumps({"run_id": "x"}), json.dumps([1, 2]),
                                         json.dumps({"run_id": "x", "started_at": "t", "scenarios": [{}]})])
    def test_an_unreadable_results_file_is_named_and_skipped(self, tmp_path: Path, content: str) -> None:
        """A corrupt results.json never stops the check: it is listed with the reason, the others count."""
        out = tmp_path / "out"
        self._write(out, "good", _run("good", ("SARK-03", [_size_verdict(5, NOW - timedelta(days=1))])))
        (out / "bad").mkdir()
        (out / "bad" / "results.json").write_text(content)
        earlier = load_earlier_runs(out / "now")
        assert [r.run_id for r in earlier.runs] == ["good"]
        assert len(earlier.unreadable) == 1 and str(out / "bad" / "results.json") in earlier.unreadable[0]

    def test_no_run_directory_means_no_earlier_runs(self) -> None:
        earlier = load_earlier_runs(None)
        lookup = ScenarioHistory(scenario="SARK-03", earlier=earlier).previous_size(LABEL, before=NOW)
        assert lookup.previous is None and "no run directory" in lookup.searched
