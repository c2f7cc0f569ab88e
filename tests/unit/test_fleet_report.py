"""The fleet overview of the HTML report: matrix, counts, worst-first order, and the charts' scaling."""

from __future__ import annotations

import dataclasses
import math
import os
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from checks.verdict import Outcome, Verdict, format_duration
from drillbook.history import recent_runs
from reports.html import build_view, render_html_report
from reports.html.fleet import fleet_view
from reports.html.sparkline import scale
from reports.html.trends import (
    Measurement,
    Metric,
    chronological,
    limit_from_expected,
    measure,
    member_of,
    trends_of,
)
from reports.results import RunResult, ScenarioResult
from tests.support.fleet_runs import fleet_history, fleet_run
from tests.unit.test_html_report import every_outcome_run, parse

DRILLS = ["BKP-01", "BKP-02", "HLT-01"]


def _scenario(tags: list[str], verdicts: list[Verdict]) -> ScenarioResult:
    return ScenarioResult(nodeid="f.feature::t", feature="F", feature_path="features/backup/f.feature",
                          scenario="S", tags=tags, verdicts=verdicts)


class TestMember:
    def test_the_member_tag_names_the_member(self) -> None:
        """Until ScenarioResult.member exists, the merge's `member:<name>` tag says which member."""
        assert member_of(_scenario(["id:BKP-01", "member:orders-eu"], [])) == "orders-eu"

    def test_no_tag_is_no_member(self) -> None:
        """A scenario of an ordinary run belongs to no member (an empty name neither)."""
        assert member_of(_scenario(["id:BKP-01", "member:"], [])) is None


class TestWhereTheNumbersLive:
    def test_rto_from_measured_seconds_and_the_limit_in_evidence(self) -> None:
        """restore.rto: measured is the duration in seconds, evidence.limit_s the limit."""
        verdict = Verdict.passed("restore.rto", "ok", measured=600.0, expected="<= 30m 00s",
                                 evidence={"limit_s": 1800.0})
        assert measure(_scenario([], [verdict]), Metric.RESTORE) == Measurement(600.0, 1800.0)

    def test_rto_limit_read_back_from_expected_in_older_results(self) -> None:
        """Results written before limit_s existed still give the limit, from `expected`."""
        verdict = Verdict.failed("restore.rto", "slow", measured=2000.0, expected="<= 30m 00s")
        assert measure(_scenario([], [verdict]), Metric.RESTORE) == Measurement(2000.0, 1800.0)

    def test_a_timed_out_restore_is_at_least_its_elapsed_time(self) -> None:
        """A restore cut off at its deadline is plotted as at least as long as it ran."""
        verdict = Verdict.failed("restore.completed", "cancelled",
                                 evidence={"error": "RestoreTimedOut", "elapsed_s": 2100.5})
        assert measure(_scenario([], [verdict]), Metric.RESTORE) == Measurement(2100.5, None, at_least=True)

    def test_an_errored_restore_measured_nothing(self) -> None:
        """A restore that could not run is a gap, not a zero."""
        verdict = Verdict.error("restore.completed", "unreachable", measured=0.2)
        assert measure(_scenario([], [verdict]), Metric.RESTORE) is None

    def test_backup_age_from_freshness(self) -> None:
        """backup.freshness: measured is the age in seconds, evidence.max_age_s the limit."""
        verdict = Verdict.passed("backup.freshness", "ok", measured=timedelta(hours=7),
                                 evidence={"max_age_s": 93600.0})
        assert measure(_scenario([], [verdict]), Metric.BACKUP_AGE) == Measurement(25200.0, 93600.0)

    def test_a_bool_or_text_is_no_measurement(self) -> None:
        """Hand-edited or foreign results never turn True into one second."""
        for value in (True, "600", None, float("nan")):
            verdict = Verdict.passed("backup.freshness", "ok", measured=value)
            assert measure(_scenario([], [verdict]), Metric.BACKUP_AGE) is None


class TestLimitFromExpected:
    # No per-example deadline: what is tested is the parse, not the speed of a loaded machine.
    @settings(deadline=None)
    @given(st.integers(min_value=0, max_value=10**7))
    def test_reads_back_what_format_duration_wrote(self, seconds: int) -> None:
        """`<= format_duration(limit)` parses back to the limit (whole seconds)."""
        assert limit_from_expected(f"<= {format_duration(timedelta(seconds=seconds))}") == seconds

    @settings(deadline=None)
    @given(st.text(max_size=40))
    def test_any_text_is_a_number_or_none(self, text: str) -> None:
        """Outside input never raises: a finite non-negative number of seconds, or None."""
        found = limit_from_expected(text)
        assert found is None or (math.isfinite(found) and found >= 0)

    def test_not_an_upper_bound(self) -> None:
        """Only an upper bound is a limit a chart can draw."""
        assert limit_from_expected(">= 35 days") is None
        assert limit_from_expected("restores without error") is None
        assert limit_from_expected(1800) is None


finite_or_missing = st.one_of(
    st.none(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-1e6, max_value=1e7),
)


class TestSparklineScaling:
    @settings(max_examples=300, deadline=None)
    @given(st.lists(finite_or_missing, max_size=30), st.one_of(st.none(), st.floats()))
    def test_everything_drawn_is_inside_the_box(self, values: list[float | None],
                                                 limit: float | None) -> None:
        """Any durations, limits and missing points: every coordinate is finite and inside the box."""
        chart = scale(values, limit)
        coords = [(p.x, p.y) for p in chart.points]
        if chart.limit_y is not None:
            coords.append((0.0, chart.limit_y))
        for x, y in coords:
            assert math.isfinite(x) and math.isfinite(y)
            assert 0 <= x <= chart.width and 0 <= y <= chart.height

    @settings(max_examples=300, deadline=None)
    @given(st.lists(finite_or_missing, max_size=30), st.one_of(st.none(), st.floats()))
    def test_one_point_per_measurement_and_gaps_stay_gaps(self, values: list[float | None],
                                                           limit: float | None) -> None:
        """Each finite value gets its own slot; a missing one splits the line; none is invented."""
        chart = scale(values, limit)
        measured = [i for i, v in enumerate(values) if v is not None and math.isfinite(v)]
        assert [p.slot for p in chart.points] == measured
        for segment in chart.segments:
            slots = [p.slot for p in segment]
            assert slots == list(range(slots[0], slots[0] + len(slots)))
        if chart.points:
            assert chart.points[-1] in chart.markers

    @settings(max_examples=300, deadline=None)
    @given(st.lists(st.floats(min_value=0, max_value=1e9), min_size=1, max_size=20),
           st.floats(min_value=1e-3, max_value=1e9))
    def test_higher_values_sit_higher_and_over_means_above_the_limit(self, values: list[float],
                                                                       limit: float) -> None:
        """y falls as the value rises; a point is `over` exactly when its value exceeds the limit,
        and then it is drawn at or above the limit line."""
        chart = scale(values, limit)
        assert chart.limit_y is not None
        for a in chart.points:
            assert a.over == (a.value > limit)
            if a.over:
                assert a.y <= chart.limit_y
                assert a in chart.markers
            for b in chart.points:
                if a.value < b.value:
                    assert a.y >= b.y

    def test_all_missing_is_an_empty_chart(self) -> None:
        """Nothing measured: no line, no marker, still a limit line to read the box by."""
        chart = scale([None, None, float("nan")], 1800.0)
        assert chart.empty and not chart.segments and not chart.markers
        assert chart.limit_y is not None


class TestFleetOverview:
    def test_a_run_without_members_has_no_overview(self) -> None:
        """The report of an ordinary run is the report it always was."""
        assert fleet_view(every_outcome_run()) is None
        assert 'id="fleet"' not in render_html_report(every_outcome_run())

    def test_history_never_changes_an_ordinary_report(self) -> None:
        """Earlier runs are read only for the fleet charts: an ordinary run renders byte for byte the same."""
        history = fleet_history(3, DRILLS, runs=2)
        assert render_html_report(every_outcome_run(), history=history) == render_html_report(
            every_outcome_run())

    def test_matrix_has_a_cell_per_member_and_drill(self) -> None:
        """12 members x 3 drills: 36 cells, each with a symbol and a word, linking to a card that exists."""
        page = parse(render_html_report(fleet_run(12, DRILLS), history=fleet_history(12, DRILLS)))
        matrix = page.by_id("fleet").find_all("table", cls="matrix")[0]
        rows = matrix.find_all("tbody")[0].find_all("tr")
        assert len(rows) == 12
        cards = {n.attrs["id"]: n for n in page.find_all("article")}
        for row in rows:
            cells = row.find_all("td", cls="cell")[1:]  # the first is the member's worst
            assert len(cells) == 3
            for cell in cells:
                assert cell.text().split()[1] in {"pass", "warn", "fail", "error", "n/a", "waived"}
                link = cell.find_all("a")[0].attrs["href"]
                member = row.find_all("th")[0].text()
                card = cards[link.removeprefix("#")]
                # The card the cell links to is that member's scenario, named BKP-01[db-000].
                assert card.find_all("span", cls="sid")[0].text().endswith(f"[{member}]")

    def test_members_are_sorted_worst_first_then_closest_to_a_limit(self) -> None:
        """Errors, then failures (most failing drills first), warnings, then passes by headroom."""
        view = fleet_view(fleet_run(12, DRILLS), fleet_history(12, DRILLS))
        assert view is not None
        order = [row.outcome for row in view.rows]
        severity = [Outcome.ERROR, Outcome.FAILED, Outcome.WARNING, Outcome.PASSED]
        assert order == sorted(order, key=severity.index)
        passing = [row for row in view.rows if row.outcome is Outcome.PASSED]
        ratios = [max(t.ratio or 0 for t in (*row.restore, *row.backup_age)) for row in passing]
        assert ratios == sorted(ratios, reverse=True)

    def test_a_fleet_without_restore_or_backup_drills_has_no_chart_columns(self) -> None:
        """Health-only drills measure no restore or backup age: no empty columns of dashes."""
        page = render_html_report(fleet_run(3, ["HLT-01", "MIG-01"]))
        assert "Restore duration (RTO)" not in page and "Backup age" not in page
        assert "Restore duration (RTO)" in render_html_report(fleet_run(3, ["BKP-01", "HLT-01"]))

    def test_a_cell_of_several_scenarios_shows_and_links_the_worst(self) -> None:
        """Two examples of one outline for a member: the cell says `fail` and links to the failed one."""
        run = fleet_run(1, ["HLT-01"])
        passed = run.scenarios[0]
        failed = dataclasses.replace(passed, verdicts=[Verdict.failed("x.check", "does not hold")])
        run.scenarios = [passed, failed]
        view = fleet_view(run)
        assert view is not None
        (cell,) = view.rows[0].cells
        assert cell.short == "fail" and cell.anchor == "scenario-2"

    def test_counts_add_up(self) -> None:
        """Cells and members per outcome add up to members x drills and to members."""
        view = fleet_view(fleet_run(12, DRILLS))
        assert view is not None
        assert sum(c.cells for c in view.counts) == 36
        assert sum(c.members for c in view.counts) == 12

    def test_a_restore_creeping_towards_its_rto_is_flagged_before_it_fails(self) -> None:
        """db-000 restores slower each run: at 84% of its RTO it is `near`, over it `over`."""
        near_run = fleet_run(12, DRILLS, run=8)  # 0.4 + 0.055 * 8 = 0.84 of the RTO
        view = fleet_view(near_run, fleet_history(12, DRILLS, runs=8))
        assert view is not None
        row = next(row for row in view.rows if row.name == "db-000")
        (trend,) = row.restore
        assert trend.near and not trend.over
        assert trend.ratio == pytest.approx(0.84)
        assert len(trend.chart.points) == 9
        assert "84%" in trend.last and "30m" in trend.last

    def test_the_chart_uses_only_earlier_runs(self) -> None:
        """History after this run, or this run again, is not drawn: oldest first, this run last."""
        run = fleet_run(2, DRILLS, run=5)
        later = fleet_run(2, DRILLS, run=9)
        history = [trends_of(h) for h in [later, run, *fleet_history(2, DRILLS, runs=5)]]
        runs = chronological(trends_of(run), history)
        assert [r.run_id for r in runs] == ["fleet-00", "fleet-01", "fleet-02", "fleet-03", "fleet-04",
                                            "fleet-05"]

    def test_runs_of_other_members_take_no_slot(self) -> None:
        """A sibling run of other members (another fleet, another member's run) is not history."""
        run = fleet_run(2, DRILLS, run=5)
        stranger = fleet_run(3, DRILLS, run=4)
        stranger.scenarios = [s for s in stranger.scenarios if s.member == "db-002"]
        runs = chronological(trends_of(run), [trends_of(stranger), trends_of(fleet_run(2, DRILLS, run=3))])
        assert [r.run_id for r in runs] == ["fleet-03", "fleet-05"]

    def test_the_view_is_redacted_and_deterministic(self) -> None:
        """Same inputs, same view (the overview sorts; it never depends on dict order of input)."""
        history = fleet_history(4, DRILLS, runs=3)
        assert build_view(fleet_run(4, DRILLS), history=history) == build_view(
            fleet_run(4, DRILLS), history=list(reversed(history)))


class TestRecentRuns:
    def test_reads_only_the_latest_siblings(self, tmp_path: Path) -> None:
        """A runs location with many runs: only the `limit` most recently written are read."""
        for index in range(5):
            run_dir = tmp_path / f"group-{index}"
            run_dir.mkdir()
            run = fleet_run(1, ["BKP-01"], run=index)
            run.write(run_dir / "results.json")
            os.utime(run_dir / "results.json", (1_000_000 + index, 1_000_000 + index))
        here = tmp_path / "group-9"
        here.mkdir()
        found = recent_runs(here, limit=2)
        assert sorted(r.run_id for r in found.runs) == ["fleet-03", "fleet-04"]

    def test_a_run_reads_earlier_runs_for_its_report_only_when_it_has_members(self, tmp_path: Path) -> None:
        """The plugin hands earlier runs to the report of a fleet run; an ordinary run reads none."""
        from drillbook.plugin import _report_history

        earlier = tmp_path / "fleet-00"
        earlier.mkdir()
        fleet_run(2, DRILLS, run=0).write(earlier / "results.json")
        here = tmp_path / "fleet-11"
        here.mkdir()
        assert [r.run_id for r in _report_history(fleet_run(2, DRILLS), here)] == ["fleet-00"]
        assert _report_history(every_outcome_run(), here) == ()

    def test_a_fleet_run_read_back_from_json_charts_the_same(self, tmp_path: Path) -> None:
        """Measured values survive results.json (timedelta -> seconds): same figures after a round trip."""
        run = fleet_run(2, DRILLS)
        run.write(tmp_path / "results.json")
        again = RunResult.read(tmp_path / "results.json")
        in_memory, read_back = fleet_view(run), fleet_view(again)
        assert in_memory is not None and read_back is not None
        assert [t.last for row in in_memory.rows for t in row.restore] == [
            t.last for row in read_back.rows for t in row.restore]
