"""Point in time on a real archive: sampled moments, the single-target proof, WAL continuity, gaps.

One source cluster per module with a history whose times the test controls: base backup B1, then
one committed order a second, each in its own WAL segment (pg_switch_wal), base backup B2 half-way,
more orders. ``track_commit_timestamp`` gives every commit's exact time, which is what pg_waldump and
``pg_last_xact_replay_timestamp()`` report. A copy of the archive with one segment removed between
B1 and B2 is the gap.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from checks.errors import RestoreFailed
from checks.pitr import sample_moments
from checks.verdict import Outcome
from drills.deadlines import Limit
from drills.pitr_sample import find_gap, list_wal, recoverable_window
from drills.processes import hand_to_server_user
from drills.targets import StoreSpec
from steps.physical import draw_moments, moment_verdicts, sample_verdicts, with_gap_range

sys.path.insert(0, str(Path(__file__).parent))
from test_basebackup_restore import PATTERN, _basebackup

from tests.support.archiving import (
    archiving_source,
    copy_into,
    readable_copy,
    server_bindir,
    temp_root,
    wait_archived,
    wal_dir,
)

ORDERS = 6  # SPACING apart; B2 after the 3rd
SPACING_S = 0.4
COLUMN = ("public", "orders", "created_at")


@dataclass
class History:
    root: Path
    wal: Path
    store: Path
    commits: list[tuple[datetime, str]]  # (exact commit time, the segment its commit record is in)
    b2_taken: datetime


@pytest.fixture(scope="module")
def history() -> Iterator[History]:
    """B1, 3 orders 0.4 s apart, B2, 3 more; the archive complete; the server stopped."""
    bindir = server_bindir()
    root = temp_root("drillbook-test-pitr-")
    wal = wal_dir(root)
    server = archiving_source(root, "pitr-source", bindir=bindir, archive_command=copy_into(wal),
                              track_commit_timestamp="on")
    server.start()
    commits: list[tuple[datetime, str]] = []
    try:
        with psycopg.connect(server.dsn(), autocommit=True) as conn:
            conn.execute("CREATE TABLE orders (id serial PRIMARY KEY, created_at timestamptz "
                         "DEFAULT clock_timestamp())")
            b1 = time.strftime(PATTERN, time.gmtime())
            _basebackup(server, root / "store" / b1)
            b2_taken = datetime.now(UTC)
            for n in range(ORDERS):
                if n == ORDERS // 2:
                    time.sleep(1.0)  # B2's STOP TIME (whole seconds) after the 2nd order's second
                    b2_taken = datetime.now(UTC)
                    while time.strftime(PATTERN, time.gmtime()) == b1:  # whole seconds in the key pattern
                        time.sleep(0.05)
                    _basebackup(server, root / "store" / time.strftime(PATTERN, time.gmtime()))
                time.sleep(SPACING_S)
                row = conn.execute("INSERT INTO orders DEFAULT VALUES RETURNING xmin::text").fetchone()
                assert row is not None
                when = conn.execute("SELECT pg_xact_commit_timestamp(%s::xid), "
                                    "pg_walfile_name(pg_current_wal_insert_lsn())", (row[0],)).fetchone()
                assert when is not None
                commits.append((when[0], when[1]))
                conn.execute("SELECT pg_switch_wal()")
            conn.execute("CHECKPOINT")
            conn.execute("SELECT pg_switch_wal()")
            wait_archived(conn)
    finally:
        server.stop()
    yield History(root=root, wal=wal, store=root / "store", commits=commits, b2_taken=b2_taken)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def gappy(history: History) -> Iterator[tuple[Path, str]]:
    """A copy of the archive without the segment after the 2nd order's (between B1 and B2)."""
    root = temp_root("drillbook-test-pitrgap-")
    shutil.copytree(history.wal, root / "wal")
    for path in (root / "wal").iterdir():  # readable by drillbook only: pg_waldump reads copies in scratch
        path.chmod(0o600)
    second = history.commits[1][1]
    missing = f"{second[:16]}{int(second[16:], 16) + 1:08X}"
    (root / "wal" / missing).unlink()
    yield root / "wal", missing
    shutil.rmtree(root, ignore_errors=True)


def _spec(history: History, *, wal: Path | None = None, rpo: timedelta | None = timedelta(seconds=3),
          column: tuple[str, str, str] | None = COLUMN) -> StoreSpec:
    return StoreSpec(name="pitr", url=str(history.store), key_pattern=PATTERN, kind="basebackup",
                     wal=str(wal or history.wal), rpo=rpo, pitr_column=column)


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root``: size and modification time (ns)."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in root.rglob("*") if p.is_file()}


def _limit() -> Limit:
    return Limit.configured(None, key="restore_timeout", default_s=120)


def test_the_same_seed_draws_the_same_moments(history: History) -> None:
    """A rerun with the seed of the evidence draws the same moments; another seed, others."""
    spec = _spec(history)
    now = datetime.now(UTC)
    first = draw_moments(spec, n=5, window=timedelta(days=1), seed="run-a", draw="run-a/x/pitr", now=now)
    again = draw_moments(spec, n=5, window=timedelta(days=1), seed="run-a", draw="run-a/x/pitr",
                         now=now + timedelta(minutes=5))
    other = draw_moments(spec, n=5, window=timedelta(days=1), seed="run-b", draw="run-b/x/pitr", now=now)
    assert not isinstance(first, Outcome) and isinstance(first, tuple)
    assert isinstance(again, tuple) and isinstance(other, tuple)
    assert first[0].moments == again[0].moments
    assert first[0].moments != other[0].moments
    assert first[1]["seed"] == "run-a" and first[1]["draw"] == "run-a/x/pitr"


def test_a_window_with_nothing_to_sample_is_an_error_verdict(history: History) -> None:
    """now − window after the newest commit: one clear error, no restore, no crash."""
    spec = _spec(history)
    later = history.commits[-1][0] + timedelta(hours=2)
    [verdict] = list(sample_verdicts(spec, n=3, window=timedelta(hours=1), rpo=None, seed="s", draw="s",
                                     limit=_limit, now=later))
    assert verdict.outcome is Outcome.ERROR
    assert "nothing to sample" in verdict.message and "last 1h 00m 00s" in verdict.message
    [no_rpo] = list(sample_verdicts(_spec(history, rpo=None), n=1, window=timedelta(days=1), rpo=None,
                                    seed="s", draw="s", limit=_limit))
    assert no_rpo.outcome is Outcome.ERROR and "set `rpo` on store `pitr`" in no_rpo.message


def test_a_gap_fails_the_moments_it_makes_unrecoverable_and_only_those(history: History,
                                                                       gappy: tuple[Path, str]) -> None:
    """Before the gap: passed; between it and B2's end: failed naming the segment and the range;
    after B2's end: passed (B2 recovers). Every verdict is present."""
    wal, missing = gappy
    spec = _spec(history, wal=wal)
    c = [t for t, _ in history.commits]
    listing = list_wal(wal)
    b2_end = max(b.ended_by for b in listing.backups)
    moments = [c[0] + timedelta(milliseconds=200), c[1] + timedelta(milliseconds=200),
               c[-2] + timedelta(milliseconds=200)]
    assert moments[1] < b2_end < moments[2]
    verdicts = list(moment_verdicts(spec, moments, rpo=timedelta(seconds=3), limit=_limit, database=None,
                                    evidence={}))
    assert [v.outcome for v in verdicts] == [Outcome.PASSED, Outcome.FAILED, Outcome.PASSED], \
        [v.message for v in verdicts]
    failed = verdicts[1]
    assert missing in failed.message and failed.message.startswith("moment 2/3, ")
    # The range: from the last commit before the gap (the 2nd order's) to the end of B2.
    assert f"moments from {c[1].isoformat()} to {b2_end.isoformat()}" in failed.message
    assert failed.evidence["unrecoverable_from"] == c[1].isoformat()

    # The same, from the listing alone (no restore).
    gap = find_gap(listing)
    assert gap.missing == missing and gap.last_commit_before == c[1] and gap.next_backup_end == b2_end
    clean = find_gap(list_wal(history.wal))
    assert clean.missing is None and clean.count >= ORDERS


def test_a_restore_failing_on_a_missing_segment_names_the_range(history: History,
                                                                gappy: tuple[Path, str]) -> None:
    """No target: the restore of B2 passes the gap (it starts after it); forced through B1 it fails."""
    wal, missing = gappy
    exc = RestoreFailed("WAL segment … is missing", segment=missing)
    extended = with_gap_range(exc, _spec(history, wal=wal))
    assert missing == extended.context["segment"]
    assert history.commits[1][0].isoformat() in extended.message
    assert "the end of the next base backup after the gap" in extended.message
    # The segment after the newest one is "missing" with no later backup: everything after is lost.
    newest = sorted(p.name for p in wal.iterdir() if len(p.name) == 24)[-1]
    after = f"{newest[:16]}{int(newest[16:], 16) + 1:08X}"
    tail = with_gap_range(RestoreFailed("x", segment=after), _spec(history, wal=wal))
    assert "no later base backup" in tail.message


def test_a_lost_archive_tail_stretches_the_window_to_now(history: History) -> None:
    """A segment missing after the newest readable commit: the moments after it must be sampled
    (they fail, naming it), so the window ends at now, not at that commit."""
    root = temp_root("drillbook-test-pitrtail-")
    try:
        readable_copy(history.wal, root)
        after = history.commits[-1][1]  # the last order's segment: c[-2] is the newest readable commit
        (root / "wal" / after).unlink()
        later = sorted(p.name for p in (root / "wal").iterdir() if len(p.name) == 24)[-1]
        assert later > after  # the archive goes on after the hole
        root.chmod(0o700)  # the server user cannot even reach the archive: pg_waldump reads copies
        now = history.commits[-1][0] + timedelta(minutes=1)
        assert recoverable_window(list_wal(root / "wal"), now=history.commits[-2][0] - timedelta(seconds=1),
                                  window=timedelta(days=1)).high == history.commits[-2][0]  # now before it
        bounds = recoverable_window(list_wal(root / "wal"), now=now, window=timedelta(days=1))
        assert bounds.high == now and f"segment {after} is missing" in bounds.high_from
        complete = recoverable_window(list_wal(history.wal), now=now, window=timedelta(days=1))
        assert complete.high == history.commits[-1][0]
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_window_bounds_follow_now_when_the_window_is_short(history: History) -> None:
    """A window shorter than the history starts at now − window, not at the oldest backup."""
    now = history.commits[-1][0] + timedelta(seconds=1)
    bounds = recoverable_window(list_wal(history.wal), now=now, window=timedelta(seconds=3))
    assert bounds.low == now - timedelta(seconds=3) and bounds.high == history.commits[-1][0]
    assert sample_moments("x", 2, bounds.low, bounds.high).moments[0] >= bounds.low


def test_drillbook_run_samples_proves_and_checks_continuity(history: History, tmp_path: Path) -> None:
    """A real ``drillbook run --seed``: the sentences, the seed and the window in the evidence, one verdict
    per moment, each proven against the commit times recorded when inserting."""
    config = tmp_path / "drillbook.toml"
    # rpo 30s: the quiet spell around B2 (a second's wait + the backup) can last seconds on a loaded
    # machine, and a moment after it is "that far" from the last commit; PITR-02 violates its own RPO.
    config.write_text(f'[targets.pitr]\nkind = "basebackup"\npath = "{history.store}"\n'
                      f'wal = "{history.wal}"\nkey_pattern = "{PATTERN}"\nrpo = "30s"\n'
                      'pitr_column = "public.orders.created_at"\n',
                      encoding="utf-8")
    features = tmp_path / "features"
    features.mkdir()
    target = history.commits[4][0] + timedelta(milliseconds=200)
    (features / "pitr.feature").write_text(
        "Feature: point in time\n\n"
        "  @id:PITR-01\n  Scenario: any moment of the last week\n"
        '    Given the backups in "pitr"\n'
        "    Then the database can be recovered to 2 random moments of the last 7 days\n"
        '    And the WAL archive of "pitr" has no gap since the oldest backup\n\n'
        "  @id:PITR-02\n  Scenario: one moment\n"
        '    Given the backups in "pitr"\n'
        f'    When the database is recovered to "{target.isoformat()}"\n'
        "    Then the recovered point is within 1 second of the target\n"
        "    And the recovered point is within 100 ms of the target\n", encoding="utf-8")
    out = tmp_path / "out"
    before = _snapshot(history.root)
    proc = subprocess.run(
        [sys.executable, "-m", "drillbook.cli", "run", "--config", str(config), "--features", str(features),
         "--out", str(out), "--seed", "audit-2026"], capture_output=True, text=True, timeout=300, check=False,
        cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == 1, proc.stdout + proc.stderr  # PITR-02's second RPO is violated
    assert _snapshot(history.root) == before  # the store and its archive are read, never written
    [run] = [p for p in out.iterdir() if p.is_dir() and not p.is_symlink()]
    scenarios = {s["id"]: s for s in json.loads((run / "results.json").read_text())["scenarios"]}
    verdicts = [v for v in scenarios["PITR-01"]["verdicts"] if v["id"] == "pitr.recovered_point"]
    assert [v["outcome"] for v in verdicts] == ["passed", "passed"], [v["message"] for v in verdicts]
    evidence = verdicts[0]["evidence"]
    assert {v["evidence"]["seed"] for v in verdicts} == {"audit-2026"}
    # The window: from the oldest backup's end to the newest commit, which pg_waldump read exactly.
    assert evidence["window_end"] == history.commits[-1][0].isoformat()
    assert evidence["window_start_from"].startswith("end of the oldest backup")
    moments = [datetime.fromisoformat(m) for m in evidence["moments"]]
    assert moments == sorted(moments) and len(moments) == 2
    for i, verdict in enumerate(verdicts, 1):
        assert verdict["evidence"]["moment"] == i and verdict["message"].startswith(f"moment {i}/2, ")
        # The proof read the data: the newest commit at or before the moment, exactly; or none
        # replayed, when no order was committed between the restored backup's start and the moment.
        expected = max((c for c, _ in history.commits if c <= moments[i - 1]), default=None)
        replayed = verdict["evidence"]["replayed_to"]
        if replayed is None:
            started_by = datetime.fromisoformat(verdict["evidence"]["backup_started_by"])
            assert not [c for c, _ in history.commits if started_by <= c <= moments[i - 1]]
        else:
            assert expected is not None and replayed == expected.isoformat()
        assert verdict["evidence"]["journal"][-1]["phase"] == "cleanup: remove scratch"
    # A rerun with the recorded seed draws the same moments.
    drawn = draw_moments(_spec(history), n=2, window=timedelta(days=7), seed="audit-2026",
                         draw=evidence["draw"])
    assert isinstance(drawn, tuple)
    assert [m.isoformat() for m in drawn[0].moments] == evidence["moments"]
    [cont] = [v for v in scenarios["PITR-01"]["verdicts"] if v["id"] == "pitr.wal_continuity"]
    assert cont["outcome"] == "passed"
    assert scenarios["PITR-01"]["outcome"] == "passed"
    # Half-way between two orders 0.4 s apart: within 1 s holds, within 100 ms does not.
    ok, late = [v for v in scenarios["PITR-02"]["verdicts"] if v["id"] == "pitr.recovered_point"]
    assert ok["outcome"] == "passed" and late["outcome"] == "failed"
    assert ok["evidence"]["replayed_to"] == history.commits[4][0].isoformat()
    assert "more than the RPO of 0.1s" in late["message"]
    newest_row = datetime.fromisoformat(ok["evidence"]["newest_row"])
    assert newest_row <= history.commits[4][0] and history.commits[4][0] - newest_row < timedelta(seconds=1)


def test_pg_waldump_on_files_that_are_no_wal_is_an_error_and_a_stalled_one_is_killed() -> None:
    """A short or random file is "cannot read", never "no commit"; a FIFO that never answers is killed."""
    from checks.errors import UnusableAnswer
    from drills.waldump import last_commit_in

    root = Path(tempfile.mkdtemp(prefix="drillbook-test-waldump-"))
    try:
        root.chmod(0o711)
        wal = root / "wal"
        wal.mkdir()
        hand_to_server_user(wal, mode=0o755)
        (wal / "000000010000000000000003").write_bytes(os.urandom(1 << 20))
        (wal / "000000010000000000000004").write_bytes(b"x")
        os.mkfifo(wal / "000000010000000000000005")
        for path in wal.iterdir():
            path.chmod(0o644)
        for name, said in (("000000010000000000000003", "WAL segment size must be"),
                           ("000000010000000000000004", "could not read file"),
                           ("000000010000000000000009", "could not locate WAL file")):
            with pytest.raises(UnusableAnswer, match=f"pg_waldump cannot read {name} .*{said}"):
                last_commit_in(wal, name)
        started = time.monotonic()
        with pytest.raises(UnusableAnswer, match="ran past 1 s"):
            last_commit_in(wal, "000000010000000000000005", timeout_s=1.0)
        assert time.monotonic() - started < 10
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_the_pitr_column_is_read_only_from_a_base_table_of_a_time_type(fresh: Any) -> None:
    """A view (it would run the backup's SQL as superuser), another type, a missing table: error; the
    names are quoted identifiers, never SQL."""
    from checks.errors import UnusableAnswer
    from drills.pitr_sample import measure_point

    target = fresh("pitr-column")
    with psycopg.connect(target.dsn, autocommit=True) as conn:
        conn.execute('CREATE TABLE "Orders" ("created at" timestamptz, note text, day timestamp)')
        conn.execute("INSERT INTO \"Orders\" VALUES ('2026-12-03 17:00:00+00', 'x', '2026-12-03 18:00:00')")
        conn.execute('CREATE VIEW recent AS SELECT * FROM "Orders"')
    replayed, newest = measure_point(target.dsn, ("public", "Orders", "created at"))
    assert replayed is None and newest == datetime(2026, 12, 3, 17, 0, tzinfo=UTC)
    # timestamp without time zone is read as UTC (documented)
    assert measure_point(target.dsn, ("public", "Orders", "day"))[1] == datetime(2026, 12, 3, 18, tzinfo=UTC)
    for column, said in ((("public", "recent", "created at"), "not a base table"),
                         (("public", "Orders", "note"), "built-in date/time type"),
                         (("public", "orders; DROP TABLE x", "created at"), "no such table")):
        with pytest.raises(UnusableAnswer, match=re.escape(said)):
            measure_point(target.dsn, column)
    with psycopg.connect(target.dsn, autocommit=True) as conn:
        assert conn.execute('SELECT count(*) FROM "Orders"').fetchone() == (1,)
