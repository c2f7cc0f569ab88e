"""checks/pitr.py: pg_waldump lines, backup history files, segment arithmetic, sampling, the verdicts;
and the store keys ``rpo`` / ``pitr_column``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from checks.errors import ConfigError
from checks.pitr import (
    BackupHistory,
    commit_time,
    continuity,
    first_missing,
    history_time,
    last_commit,
    next_backup_end,
    parse_backup_history,
    recovered_point,
    sample_moments,
    segment_name,
    segment_number,
    unrecoverable,
)
from checks.verdict import Outcome
from drills.config import load_config

# Real pg_waldump 15 output (-r Transaction, TZ=UTC), from the study's archive and this module's tests.
COMMIT = ("rmgr: Transaction len (rec/tot):     34/    34, tx:        735, lsn: 0/0301A2B0, prev 0/0301A278, "
          "desc: COMMIT 2026-12-03 17:29:59.165010 UTC")
COMMIT_INVAL = ("rmgr: Transaction len (rec/tot):    469/   469, tx:        731, lsn: 0/01734DB8, prev "
                "0/01734D80, desc: COMMIT 2026-12-03 21:08:56.302351 UTC; inval msgs: catcache 80 "
                "catcache 79")
PREPARED = ("rmgr: Transaction len (rec/tot):     50/    50, tx:          0, lsn: 0/0301A300, "
            "prev 0/0301A2B0, desc: COMMIT_PREPARED 740: 2026-12-03 17:30:01.000001 UTC")
ABORT = ("rmgr: Transaction len (rec/tot):     34/    34, tx:        736, lsn: 0/0301A2F0, prev 0/0301A2B0, "
         "desc: ABORT 2026-12-03 17:30:00.000000 UTC")
HISTORY = """START WAL LOCATION: 0/7000028 (file 000000010000000000000007)
STOP WAL LOCATION: 0/7000138 (file 000000010000000000000007)
CHECKPOINT LOCATION: 0/7000060
BACKUP METHOD: streamed
BACKUP FROM: primary
START TIME: 2026-12-03 21:08:57 UTC
LABEL: pg_basebackup base backup
START TIMELINE: 1
STOP TIME: 2026-12-03 21:08:58 UTC
STOP TIMELINE: 1
"""
T0 = datetime(2026, 12, 3, 17, 0, tzinfo=UTC)
MB = 1024 * 1024


class TestWaldumpLines:
    def test_a_commit_line_gives_its_exact_time(self) -> None:
        assert commit_time(COMMIT) == datetime(2026, 12, 3, 17, 29, 59, 165010, tzinfo=UTC)
        assert commit_time(COMMIT_INVAL) == datetime(2026, 12, 3, 21, 8, 56, 302351, tzinfo=UTC)
        assert commit_time(PREPARED) == datetime(2026, 12, 3, 17, 30, 1, 1, tzinfo=UTC)

    def test_other_records_and_other_zones_are_not_commits(self) -> None:
        assert commit_time(ABORT) is None
        assert commit_time(COMMIT.replace(" UTC", " CET")) is None  # pg_waldump runs with TZ=UTC
        assert commit_time(COMMIT.replace("rmgr: Transaction", "rmgr: Heap")) is None
        assert commit_time(COMMIT.replace("17:29:59", "25:29:59")) is None
        assert commit_time("x" * 70000 + COMMIT) is None

    def test_the_newest_commit_of_several_lines(self) -> None:
        assert last_commit([PREPARED, COMMIT, ABORT, "garbage"]) == commit_time(PREPARED)
        assert last_commit([ABORT, ""]) is None

    @given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2999, 12, 31)))
    def test_any_printed_commit_time_reads_back(self, moment: datetime) -> None:
        line = COMMIT.replace("2026-12-03 17:29:59.165010", moment.strftime("%Y-%m-%d %H:%M:%S.%f"))
        assert commit_time(line) == moment.replace(tzinfo=UTC)

    @given(st.text())
    def test_any_text_reads_without_raising(self, text: str) -> None:
        found = commit_time(text)
        assert found is None or found.tzinfo is UTC

    @given(st.lists(st.sampled_from([COMMIT, COMMIT_INVAL, PREPARED, ABORT, "", "rmgr: Transaction desc:"])))
    def test_the_newest_is_the_maximum(self, lines: list[str]) -> None:
        times = [t for t in map(commit_time, lines) if t is not None]
        assert last_commit(lines) == (max(times) if times else None)


class TestBackupHistory:
    def test_a_history_file_gives_start_segment_and_stop_time(self) -> None:
        found = parse_backup_history("000000010000000000000007.00000028.backup", HISTORY)
        assert found == BackupHistory("000000010000000000000007.00000028.backup", "000000010000000000000007",
                                      datetime(2026, 12, 3, 21, 8, 58, tzinfo=UTC),
                                      datetime(2026, 12, 3, 21, 8, 57, tzinfo=UTC))
        assert found.ended_by == datetime(2026, 12, 3, 21, 8, 59, tzinfo=UTC)  # whole seconds: round up

    def test_a_wrong_name_or_no_stop_time_is_none(self) -> None:
        assert parse_backup_history("000000010000000000000007.backup", HISTORY) is None
        assert parse_backup_history("000000010000000000000007.00000028.backup", "START TIME: x\n") is None
        assert parse_backup_history("000000010000000000000007.00000028.backup", "STOP TIME: soon\n") is None

    @pytest.mark.parametrize(("text", "expected"), [
        ("2026-12-03 21:08:58 UTC", datetime(2026, 12, 3, 21, 8, 58, tzinfo=UTC)),
        ("2026-12-03 21:08:58 GMT", datetime(2026, 12, 3, 21, 8, 58, tzinfo=UTC)),
        ("2026-12-03 23:08:58 +02", datetime(2026, 12, 3, 21, 8, 58, tzinfo=UTC)),
        ("2026-12-03 17:38:58 -03:30", datetime(2026, 12, 3, 21, 8, 58, tzinfo=UTC)),
        ("2026-12-03 22:08:58 CET", None),  # an abbreviation is ambiguous: not read
        ("2026-02-30 21:08:58 UTC", None),
    ])
    def test_history_times_in_utc_or_an_offset(self, text: str, expected: datetime | None) -> None:
        assert history_time(text) == expected

    @given(st.text())
    def test_any_content_reads_without_raising(self, text: str) -> None:
        found = parse_backup_history("000000010000000000000007.00000028.backup", text)
        assert found is None or found.stop_time.tzinfo is UTC

    def test_the_next_backup_after_a_gap(self) -> None:
        b1 = BackupHistory("a", "000000010000000000000002", T0)
        b2 = BackupHistory("b", "000000010000000000000009", T0 + timedelta(minutes=5))
        b3 = BackupHistory("c", "00000001000000000000000C", T0 + timedelta(minutes=9))
        assert next_backup_end([b3, b1, b2], "000000010000000000000005", MB) == b2.ended_by
        assert next_backup_end([b1, b2], "00000001000000000000000A", MB) is None
        assert next_backup_end([b1], "000000020000000000000001", MB) is None  # another timeline


class TestSegments:
    @given(st.sampled_from([MB << k for k in range(11)]), st.integers(min_value=0, max_value=2**40))
    def test_names_and_numbers_round_trip(self, size: int, number: int) -> None:
        number %= (0x100000000 // size) * 0xFFFFFFFF
        name = segment_name("00000001", number, size)
        assert len(name) == 24 and segment_number(name, size) == number

    def test_the_first_missing_crosses_a_log_file(self) -> None:
        names = ["000000010000000000000FFE", "000000010000000100000000"]
        assert first_missing(names, names[0], names[1], MB) == "000000010000000000000FFF"
        assert first_missing(names[:1], names[0], names[0], MB) is None


class TestSampling:
    @given(st.text(max_size=30), st.integers(min_value=1, max_value=20),
           st.timedeltas(min_value=timedelta(microseconds=1), max_value=timedelta(days=60)))
    def test_the_same_seed_draws_the_same_moments_inside_the_window(self, seed: str, n: int,
                                                                    span: timedelta) -> None:
        first = sample_moments(seed, n, T0, T0 + span)
        assert first.moments == sample_moments(seed, n, T0, T0 + span).moments
        assert len(first.moments) == n and first.moments == sorted(first.moments)
        assert all(T0 <= m < T0 + span for m in first.moments)
        assert first.evidence()["seed"] == seed and len(first.evidence()["moments"]) == n  # type: ignore[arg-type]

    def test_another_seed_draws_other_moments(self) -> None:
        a = sample_moments("run-a", 5, T0, T0 + timedelta(days=7)).moments
        assert a != sample_moments("run-b", 5, T0, T0 + timedelta(days=7)).moments

    def test_nothing_to_sample_is_a_clear_error(self) -> None:
        with pytest.raises(ValueError, match="nothing to sample"):
            sample_moments("s", 3, T0, T0)
        with pytest.raises(ValueError, match="at least 1"):
            sample_moments("s", 0, T0, T0 + timedelta(days=1))


class TestRecoveredPoint:
    RPO = timedelta(minutes=5)

    def test_a_point_before_the_target_within_the_rpo_passes(self) -> None:
        v = recovered_point(target=T0, replayed=T0 - timedelta(minutes=1), started_by=None,
                            newest_row=T0 - timedelta(minutes=2), column="public.orders.created_at",
                            rpo=self.RPO)
        assert v.outcome is Outcome.PASSED and "1m 00s before it" in v.message
        assert v.evidence["newest_row"] == (T0 - timedelta(minutes=2)).isoformat()

    @pytest.mark.parametrize(("replayed", "newest", "said"), [
        (T0 + timedelta(seconds=1), None, "AFTER the target"),
        (T0 - timedelta(minutes=6), None, "more than the RPO of 5m 00s"),
        (T0 - timedelta(seconds=1), T0 + timedelta(seconds=1), "the newest public.orders.created_at is"),
    ])
    def test_each_broken_promise_fails_naming_it(self, replayed: datetime, newest: datetime | None,
                                                 said: str) -> None:
        v = recovered_point(target=T0, replayed=replayed, started_by=None, newest_row=newest,
                            column="public.orders.created_at", rpo=self.RPO, label="moment 2/3, ")
        assert v.outcome is Outcome.FAILED and said in v.message
        assert v.message.startswith("moment 2/3, target ")

    def test_no_replayed_transaction_is_the_state_at_the_target_if_the_backup_started_by_then(self) -> None:
        """Recovery applies every commit up to the target: none applied means none happened since the
        backup's start, so the data is exactly the target's — when the backup had started by then."""
        v = recovered_point(target=T0, replayed=None, started_by=T0 - timedelta(seconds=30), newest_row=None,
                            column=None, rpo=self.RPO)
        assert v.outcome is Outcome.PASSED and "the data is the state at the target" in v.message
        late = recovered_point(target=T0, replayed=None, started_by=T0 + timedelta(seconds=1),
                               newest_row=None, column=None, rpo=self.RPO)
        assert late.outcome is Outcome.FAILED and "may have started after the target" in late.message
        unknown = recovered_point(target=T0, replayed=None, started_by=None, newest_row=None, column=None,
                                  rpo=self.RPO)
        assert unknown.outcome is Outcome.ERROR and "cannot be told" in unknown.message


class TestContinuity:
    def test_no_gap_passes_and_a_gap_names_segment_and_range(self) -> None:
        ok = continuity(where="/wal", first="A", last="B", missing=None, count=12)
        assert ok.outcome is Outcome.PASSED and "12 segments" in ok.message
        text = unrecoverable(T0, T0 + timedelta(minutes=3))
        bad = continuity(where="/wal", first="A", last="B", missing="000000010000000000000017", count=9,
                         range_text=text)
        assert bad.outcome is Outcome.FAILED and "000000010000000000000017" in bad.message
        assert f"moments from {T0.isoformat()} to {(T0 + timedelta(minutes=3)).isoformat()}" in bad.message

    def test_no_later_backup_loses_everything_after(self) -> None:
        assert unrecoverable(T0, None) == (f"moments from {T0.isoformat()} on cannot be recovered (no later "
                                           "base backup: everything after the gap)")


class TestStoreKeys:
    def test_rpo_and_pitr_column_are_read(self, tmp_path: Path) -> None:
        path = tmp_path / "drillbook.toml"
        path.write_text('[targets.pitr]\nkind = "basebackup"\npath = "b"\nwal = "w"\nrpo = "5m"\n'
                        'pitr_column = "public.Orders.created at"\n', encoding="utf-8")
        store = load_config(path).stores["pitr"]
        assert store.rpo == timedelta(minutes=5)
        assert store.pitr_column == ("public", "Orders", "created at")  # quoted by drillbook, as stored

    @pytest.mark.parametrize(("line", "named"), [
        ('rpo = "soon"', "targets.pitr.rpo"),
        ('rpo = "0s"', "targets.pitr.rpo"),
        ('pitr_column = "orders.created_at"', "targets.pitr.pitr_column"),
        ('pitr_column = "a.b.c.d"', "targets.pitr.pitr_column"),
        ('pitr_column = "a..c"', "targets.pitr.pitr_column"),
    ])
    def test_bad_values_are_named(self, tmp_path: Path, line: str, named: str) -> None:
        path = tmp_path / "drillbook.toml"
        path.write_text(f'[targets.pitr]\nkind = "basebackup"\npath = "b"\nwal = "w"\n{line}\n',
                        encoding="utf-8")
        with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
            load_config(path)
