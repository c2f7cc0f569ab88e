"""WAL archive arithmetic and point-in-time proofs (pure; drills/ and steps/physical.py do the I/O).

- segment names and numbers, the first missing segment of a range;
- ``pg_waldump`` output (untrusted: it echoes what a WAL file says) → commit times;
- an archived ``.backup`` history file → where a base backup started and when it ended;
- the sampled moments of ``Then the database can be recovered to N random moments …`` (seeded);
- the verdicts: one recovered moment against its target and the RPO, and the archive's continuity.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from .verdict import Verdict, format_duration

# A WAL segment file name: timeline, log file and segment, 8 upper-case hex digits each.
SEGMENT = re.compile(r"[0-9A-F]{24}")
# An archived backup history file: <start segment>.<start offset>.backup (A4).
BACKUP_HISTORY = re.compile(r"([0-9A-F]{24})\.[0-9A-F]{8}\.backup")
# pg_waldump -r Transaction, run with TZ=UTC (its frontend prints local time, A4):
# "rmgr: Transaction len (rec/tot): 34/34, tx: 735, lsn: 0/0301A2B0, prev 0/0301A278,
#  desc: COMMIT 2026-12-03 17:29:59.165010 UTC[; …]"  — COMMIT_PREPARED adds "<xid>: ".
_COMMIT = re.compile(r"^rmgr: Transaction\b.*?\bdesc: COMMIT(?:_PREPARED \d+:)? "
                     r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)\.(\d{6}) UTC(?:;|$)")
# A line longer than this is no record pg_waldump prints for a commit worth reading.
MAX_LINE = 65536


def segment_number(name: str, segment_bytes: int) -> int:
    """The segment's position in its timeline's WAL (log file × segments per log + segment)."""
    return int(name[8:16], 16) * (0x100000000 // segment_bytes) + int(name[16:24], 16)


def segment_name(timeline: str, number: int, segment_bytes: int) -> str:
    """The inverse of :func:`segment_number` for one timeline (8 hex digits)."""
    per_log = 0x100000000 // segment_bytes
    return f"{timeline}{number // per_log:08X}{number % per_log:08X}"


def first_missing(names: list[str], first: str, last: str, segment_bytes: int) -> str | None:
    """The first segment absent from ``names`` between ``first`` and ``last`` (one timeline)."""
    present = set(names)
    for n in range(segment_number(first, segment_bytes), segment_number(last, segment_bytes) + 1):
        name = segment_name(first[:8], n, segment_bytes)
        if name not in present:
            return name
    return None


def commit_time(line: str) -> datetime | None:
    """The commit time of one ``pg_waldump`` line, or None (another record, or not a line we trust)."""
    if len(line) > MAX_LINE:
        return None
    found = _COMMIT.match(line.rstrip("\n"))
    if found is None:
        return None
    try:
        moment = datetime.strptime(found.group(1), "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    except ValueError:  # 2026-13-45: the digits matched, the calendar does not
        return None
    return moment.replace(microsecond=int(found.group(2)))


def last_commit(lines: Iterable[str]) -> datetime | None:
    """The newest commit time among ``pg_waldump`` lines (WAL order is commit order, but be safe)."""
    newest: datetime | None = None
    for line in lines:
        moment = commit_time(line)
        if moment is not None and (newest is None or moment > newest):
            newest = moment
    return newest


@dataclass(frozen=True)
class BackupHistory:
    """One archived ``.backup`` file: a base backup's start segment and its end (STOP TIME)."""

    name: str
    start_segment: str
    stop_time: datetime
    start_time: datetime | None = None

    @property
    def ended_by(self) -> datetime:
        """When the backup had surely ended: STOP TIME has whole seconds, the true end is within the next."""
        return self.stop_time + timedelta(seconds=1)


def parse_backup_history(name: str, text: str) -> BackupHistory | None:
    """``<seg>.<offset>.backup`` content → :class:`BackupHistory`, or None when it says no STOP TIME."""
    named = BACKUP_HISTORY.fullmatch(name)
    if named is None:
        return None
    times: dict[str, datetime] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in ("START TIME", "STOP TIME") and key not in times:
            moment = history_time(value)
            if moment is not None:
                times[key] = moment
    if "STOP TIME" not in times:
        return None
    return BackupHistory(name=name, start_segment=named.group(1), stop_time=times["STOP TIME"],
                         start_time=times.get("START TIME"))


_HISTORY_TIME = re.compile(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) (UTC|GMT|[+-]\d\d(?::?\d\d)?)")


def history_time(value: str) -> datetime | None:
    """A backup history time (``2026-12-03 21:03:47 UTC``, or ``+03`` / ``-03:30``) in UTC, else None.

    PostgreSQL prints it in the server's log_timezone; an abbreviation other than UTC/GMT (CET,
    IST, …) is ambiguous and not read.
    """
    found = _HISTORY_TIME.fullmatch(value.strip())
    if found is None:
        return None
    zone = found.group(2)
    offset = "+0000" if zone in ("UTC", "GMT") else (zone + "00" if len(zone) == 3 else zone.replace(":", ""))
    try:
        return datetime.strptime(f"{found.group(1)} {offset}", "%Y-%m-%d %H:%M:%S %z").astimezone(UTC)
    except ValueError:
        return None


@dataclass(frozen=True)
class Sample:
    """The moments of one sampling step and how they were drawn (recorded in the evidence)."""

    seed: str
    low: datetime
    high: datetime
    moments: list[datetime]

    def evidence(self) -> dict[str, object]:
        return {"seed": self.seed, "window_start": self.low.isoformat(), "window_end": self.high.isoformat(),
                "moments": [m.isoformat() for m in self.moments]}


def sample_moments(seed: str, n: int, low: datetime, high: datetime) -> Sample:
    """``n`` moments drawn uniformly in [low, high) by a generator seeded with ``seed``, oldest first.

    ``high`` (the archive's newest commit) is excluded: PostgreSQL ends a time-target recovery only at
    a commit after the target, so the newest commit itself is never a provable target.

    The same seed draws the same fractions of the interval: over the same bounds, the same moments.
    Raises ValueError when there is nothing to sample (``n`` < 1 or an empty interval).
    """
    if n < 1:
        raise ValueError(f"cannot sample {n} moments: ask for at least 1")
    if high <= low:
        raise ValueError(f"nothing to sample: the recoverable window is empty ({low.isoformat()} to "
                         f"{high.isoformat()})")
    rng = random.Random(seed)  # noqa: S311 - reproducible sampling, not a secret
    span_us = (high - low) // timedelta(microseconds=1)
    moments = sorted(low + timedelta(microseconds=rng.randrange(span_us)) for _ in range(n))
    return Sample(seed=seed, low=low, high=high, moments=moments)


def recovered_point(*, target: datetime, replayed: datetime | None, started_by: datetime | None,
                    newest_row: datetime | None, column: str | None, rpo: timedelta,
                    check_id: str = "pitr.recovered_point", label: str = "",
                    evidence: dict[str, object] | None = None) -> Verdict:
    """A recovery to ``target`` proven with the data (B3 step 8), every finding in one verdict.

    ``replayed`` is ``pg_last_xact_replay_timestamp()``: the last commit (or abort) applied since the
    backup's start checkpoint. None means none was: no transaction ended between the backup's start
    and the target (recovery applies every one up to the target), so the data is the state at the
    target — provided the backup had started by then (``started_by``: START TIME + 1 s, whole
    seconds). ``newest_row`` is the newest value of the store's ``pitr_column`` (None when the
    column is not configured or the table is empty).
    """
    head = f"{label}target {target.isoformat()}: "
    facts: dict[str, object] = {**(evidence or {}), "target": target.isoformat(),
                                "replayed_to": replayed.isoformat() if replayed else None,
                                "backup_started_by": started_by.isoformat() if started_by else None,
                                "rpo_s": rpo.total_seconds()}
    problems = []
    if replayed is not None:
        lag = target - replayed
        if replayed > target:
            problems.append(f"the last replayed commit {replayed.isoformat()} is AFTER the target")
        elif lag > rpo:
            problems.append(f"the last replayed commit {replayed.isoformat()} is {format_duration(lag)} "
                            f"before the target, more than the RPO of {format_duration(rpo)}")
        found = (f"recovered to the last replayed commit {replayed.isoformat()}, "
                 f"{format_duration(lag)} before it")
    elif started_by is None:
        return Verdict.error(check_id, head + "no transaction was replayed and the backup's start is "
                             "unknown (no `.backup` history file for it): the recovered point cannot be told",
                             evidence=facts)
    elif started_by > target:
        lag = timedelta(0)
        problems.append(f"no transaction was replayed and the backup may have started after the target "
                        f"(by {started_by.isoformat()}): the recovered point cannot be proven at or before "
                        "it")
    else:
        lag = timedelta(0)
        found = (f"no transaction ended between the backup's start (by {started_by.isoformat()}) and the "
                 "target: the data is the state at the target")
    facts["behind_s"] = lag.total_seconds()
    if column is not None:
        facts.update(column=column, newest_row=newest_row.isoformat() if newest_row else None)
        if newest_row is not None and newest_row > target:
            problems.append(f"the newest {column} is {newest_row.isoformat()}, AFTER the target")
    row = (f"; newest {column} {newest_row.isoformat() if newest_row else 'none'}" if column else "")
    if problems:
        return Verdict.failed(check_id, head + "; ".join(problems), measured=lag, expected=f"<= {rpo}",
                              evidence=facts)
    return Verdict.passed(check_id, f"{head}{found} (RPO {format_duration(rpo)}){row}",
                          measured=lag, expected=f"<= {rpo}", evidence=facts)


def unrecoverable(since: datetime | None, until: datetime | None) -> str:
    """The time range a WAL gap makes unrecoverable, as a verdict says it."""
    start = since.isoformat() if since else "the start of the backup before it (no commit found before it)"
    if until is None:
        return f"moments from {start} on cannot be recovered (no later base backup: everything after the gap)"
    return f"moments from {start} to {until.isoformat()} (the end of the next base backup after the gap) " \
        "cannot be recovered"


def next_backup_end(backups: list[BackupHistory], gap: str, segment_bytes: int) -> datetime | None:
    """The end of the first base backup that started after the missing segment ``gap``."""
    after = [b.ended_by for b in backups if b.start_segment[:8] == gap[:8]
             and segment_number(b.start_segment, segment_bytes) > segment_number(gap, segment_bytes)]
    return min(after) if after else None


def continuity(*, where: str, first: str, last: str, missing: str | None, count: int,
               range_text: str = "", check_id: str = "pitr.wal_continuity",
               evidence: dict[str, object] | None = None) -> Verdict:
    """The archive holds every segment from ``first`` to ``last``, or fails naming the first missing."""
    facts = {**(evidence or {}), "first": first, "last": last, "segments": count, "first_missing": missing}
    if missing is None:
        return Verdict.passed(check_id, f"the WAL archive {where} has no gap: {count} segments from {first} "
                              f"to {last}", measured=0, expected="no missing segment", evidence=facts)
    return Verdict.failed(check_id, f"WAL segment {missing} is missing from the archive {where} (between "
                          f"{first} and {last}): {range_text}", measured=missing,
                          expected="no missing segment", evidence=facts)
