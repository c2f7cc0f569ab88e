"""The fleet sandbox's member plan, backup dates and row timeline (drills/sandbox/members.py): pure parts."""

from __future__ import annotations

import itertools
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from checks.backups import compile_key_pattern
from checks.errors import ConfigError
from drillbook.fleet.sandbox import MAX_MEMBERS, check_member_count
from drillbook.packs import without_packs
from drills.sandbox import members
from drills.sandbox.members import Fault, _Timeline, backup_times, plan_members

REPO = Path(__file__).resolve().parents[2]
# No per-example deadline: the machine is shared, and the properties are what is tested, not speed.
relaxed = settings(deadline=None, max_examples=60)
moments = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC))


class TestPlanMembers:
    @relaxed
    @given(n=st.integers(1, 600), canary=st.booleans())
    def test_names_hosts_and_tiers(self, n: int, canary: bool) -> None:
        """n members named member-01…, spread evenly over the fake hosts, the first third tier 1."""
        plans = plan_members(n, canary=canary)
        assert [p.name for p in plans] == [members.member_name(i) for i in range(1, n + 1)]
        assert len({p.name for p in plans}) == n
        if n < 100:  # two digits: names sort as their indexes do
            assert sorted(p.name for p in plans) == [p.name for p in plans]
        per_host = Counter(p.host for p in plans)
        assert set(per_host) <= set(members.HOSTS)
        assert len(per_host) == min(n, len(members.HOSTS))
        assert max(per_host.values()) - min(per_host.values()) <= 1
        tier1 = [p for p in plans if p.tier == "1"]
        assert len(tier1) == -(-n // 3)
        assert all(p.tier == "2" for p in plans[len(tier1):])

    @relaxed
    @given(n=st.integers(1, 600))
    def test_sizes_vary_within_bounds_and_are_stable(self, n: int) -> None:
        """Sizes stay within the documented bounds, repeat exactly, and differ between members."""
        plans = plan_members(n, canary=False)
        assert all(300 <= p.orders <= 30_000 and p.events == max(1, p.orders // 2) for p in plans)
        assert [p.orders for p in plans] == [p.orders for p in plan_members(n, canary=True)]
        if n >= 8:
            sizes = sorted(p.orders for p in plans)
            assert sizes[-1] >= 3 * sizes[0], "a plan needs members of different sizes to balance"

    @relaxed
    @given(n=st.integers(1, 600))
    def test_canary_breaks_distinct_members_in_distinct_ways(self, n: int) -> None:
        """Under canary each fault is used at most once, at the documented positions; without it, none."""
        assert all(p.fault is None for p in plan_members(n, canary=False))
        broken = {p.index: p.fault for p in plan_members(n, canary=True) if p.fault is not None}
        assert broken, "a canary fleet always has a broken member"
        assert len(set(broken.values())) == len(broken)
        if n == 1:
            assert broken == {1: Fault.STALE}
        else:
            expected = dict(zip((2, 3, 5, 6, 8), Fault, strict=True))
            assert broken == {i: f for i, f in expected.items() if i <= n}

    def test_all_five_faults_at_eight_members(self) -> None:
        """The README's `--sandbox-members 8 --canary` shows every fault once."""
        broken = [p.fault for p in plan_members(8, canary=True) if p.fault is not None]
        assert sorted(f.name for f in broken) == sorted(f.name for f in Fault)

    @pytest.mark.parametrize("n", [0, -1])
    def test_no_members_is_refused(self, n: int) -> None:
        with pytest.raises(ValueError, match="at least one member"):
            plan_members(n, canary=False)


class TestMemberCount:
    @pytest.mark.parametrize("n", [0, MAX_MEMBERS + 1, True, -3])
    def test_out_of_range_is_a_usage_error(self, n: int) -> None:
        """--sandbox-members outside 1…500 is a ConfigError (exit 2) naming the option, with a hint."""
        with pytest.raises(ConfigError, match="--sandbox-members must be a number from 1 to 500") as err:
            check_member_count(n)
        assert err.value.hint

    @pytest.mark.parametrize("n", [1, 24, MAX_MEMBERS])
    def test_in_range_is_accepted(self, n: int) -> None:
        check_member_count(n)


class TestBackupTimes:
    @relaxed
    @given(now=moments)
    def test_newest_is_last_nights_and_one_per_day(self, now: datetime) -> None:
        """Oldest first, a day apart, each at 02:02 UTC; the newest already taken and under 26 h old."""
        times = backup_times(now)
        assert len(times) == members.BACKUP_DAYS
        assert all(later - earlier == timedelta(days=1) for earlier, later in itertools.pairwise(times))
        assert all((t.hour, t.minute, t.second) == (2, 2, 0) for t in times)
        assert times[-1] <= now < times[-1] + timedelta(days=1)

    @relaxed
    @given(now=moments)
    def test_key_pattern_reads_back_the_time_taken(self, now: datetime) -> None:
        """The key names the time as well as the date: freshness dates the backup by it."""
        plan = plan_members(1, canary=False)[0]
        pattern = compile_key_pattern(plan.key_pattern)
        for taken in backup_times(now):
            assert pattern.parse(taken.strftime(plan.key_pattern)) == taken


class TestTimeline:
    @relaxed
    @given(start=moments, span_s=st.integers(1, 90 * 86400), rows=st.integers(1, 300),
           cut=st.floats(-0.1, 1.1))
    def test_rows_before_a_moment_are_counted_exactly(self, start: datetime, span_s: int, rows: int,
                                                      cut: float) -> None:
        """before(m) is exactly the number of rows g (1…rows) created at start + g·step < m."""
        timeline = _Timeline(start, start + timedelta(seconds=span_s), rows)
        moment = start + timedelta(seconds=span_s * cut)
        expected = sum(1 for g in range(1, rows + 1) if start + g * timeline.step < moment)
        assert timeline.before(moment) == expected

    @relaxed
    @given(start=moments, span_s=st.integers(86400, 90 * 86400), rows=st.integers(1, 50_000))
    def test_every_row_is_created_before_the_end(self, start: datetime, span_s: int, rows: int) -> None:
        end = start + timedelta(seconds=span_s)
        timeline = _Timeline(start, end, rows)
        assert start + rows * timeline.step < end
        assert timeline.before(end) == rows


class TestPlainRun:
    def test_fleet_features_are_left_out_like_the_packs(self) -> None:
        """A plain `drillbook run` takes every folder of features/ but packs/ and fleet/."""
        chosen = without_packs(REPO / "features")
        names = {path.name for path in chosen}
        assert "fleet" not in names and "packs" not in names
        assert "backup" in names
        assert (REPO / "features" / "fleet" / "restore_from_yesterday.feature").is_file()
